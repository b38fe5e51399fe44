// Log lines on stderr, prefixed "lshmoe", filtered by LSHMOE_DEBUG
// (WARN, INFO, TRACE) read once per process, as NCCL does with NCCL_DEBUG.
#pragma once

namespace lshmoe {

enum class LogLevel { kWarn = 0, kInfo = 1, kTrace = 2 };

bool log_enabled(LogLevel level);

// Where lines go instead of stderr (the NCCL net plugin hands them to NCCL's
// logger). With a sink, INFO lines are passed on too: the sink filters.
using LogSink = void (*)(LogLevel level, const char* line);
void set_log_sink(LogSink sink);

void log(LogLevel level, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

}  // namespace lshmoe

#define LSHMOE_LOG(level, ...)                                           \
  do {                                                                   \
    if (::lshmoe::log_enabled(level)) ::lshmoe::log(level, __VA_ARGS__); \
  } while (0)
#define LSHMOE_WARN(...) LSHMOE_LOG(::lshmoe::LogLevel::kWarn, __VA_ARGS__)
#define LSHMOE_INFO(...) LSHMOE_LOG(::lshmoe::LogLevel::kInfo, __VA_ARGS__)
#define LSHMOE_TRACE(...) LSHMOE_LOG(::lshmoe::LogLevel::kTrace, __VA_ARGS__)
