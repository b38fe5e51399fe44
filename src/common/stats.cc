#include "common/stats.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/log.h"

namespace lshmoe {

void report_stats(const Config& config, const char* who, const lshmoe_stats_t& s) {
  char line[512];
  snprintf(line, sizeof(line),
           "lshmoe STATS [%d] %s: %llu compressed, %llu raw dispatch messages; %llu logical "
           "bytes, %llu wire bytes (%.4f); residual energy %.6f of the input\n",
           int(getpid()), who, static_cast<unsigned long long>(s.messages_compressed),
           static_cast<unsigned long long>(s.messages_raw),
           static_cast<unsigned long long>(s.logical_bytes),
           static_cast<unsigned long long>(s.wire_bytes),
           s.logical_bytes ? double(s.wire_bytes) / double(s.logical_bytes) : 0.0,
           s.input_energy > 0 ? s.residual_energy / s.input_energy : 0.0);
  emit_stats_line(config, line);
}

void emit_stats_line(const Config& config, const char* line) {
  FILE* out = config.stats_file.empty() ? stderr : fopen(config.stats_file.c_str(), "a");
  if (out == nullptr) {
    LSHMOE_WARN("LSHMOE_STATS_FILE=%s: cannot open (%s); counters: %s", config.stats_file.c_str(),
                strerror(errno), line);
    return;
  }
  fputs(line, out);
  if (out != stderr) fclose(out);
}

}  // namespace lshmoe
