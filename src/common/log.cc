#include "common/log.h"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "common/config.h"

namespace lshmoe {
namespace {

LogLevel level_from_env() {
  Config config;
  const char* text = getenv("LSHMOE_DEBUG");
  if (text == nullptr) return LogLevel::kWarn;
  if (config_set(config, "LSHMOE_DEBUG", text) != LSHMOE_SUCCESS) {
    fprintf(stderr, "lshmoe WARN %s; logging at WARN\n", last_error());
    clear_error();
    return LogLevel::kWarn;
  }
  if (config.debug == "TRACE") return LogLevel::kTrace;
  return config.debug == "INFO" ? LogLevel::kInfo : LogLevel::kWarn;
}

const char* level_name(LogLevel level) {
  switch (level) {
    case LogLevel::kWarn:
      return "WARN";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kTrace:
      return "TRACE";
  }
  return "?";
}

std::atomic<LogSink> g_sink{nullptr};

}  // namespace

void set_log_sink(LogSink sink) {
  g_sink.store(sink);
}

bool log_enabled(LogLevel level) {
  static const LogLevel threshold = level_from_env();
  if (g_sink.load() != nullptr && level == LogLevel::kInfo) return true;
  return level <= threshold;
}

void log(LogLevel level, const char* fmt, ...) {
  char line[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(line, sizeof(line), fmt, args);
  va_end(args);
  if (LogSink sink = g_sink.load()) {
    sink(level, line);
    return;
  }
  // One write per line, so lines of several ranks or threads do not interleave.
  fprintf(stderr, "lshmoe %s [%d] %s\n", level_name(level), int(getpid()), line);
}

}  // namespace lshmoe
