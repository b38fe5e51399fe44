// LSHMOE_STATS: one line of counters, to stderr or LSHMOE_STATS_FILE.
#pragma once

#include "common/config.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe {

// `who` names the owner of the counters ("codec", "communicator rank 3").
void report_stats(const Config& config, const char* who, const lshmoe_stats_t& stats);

// One line of counters (ending in a newline) to stderr or LSHMOE_STATS_FILE.
void emit_stats_line(const Config& config, const char* line);

// A message a communicator sent to another rank: its bytes, and for a
// dispatch whether it was compressed.
inline void count_sent(lshmoe_stats_t* stats, size_t logical, size_t wire, bool dispatch,
                       bool compressed) {
  if (dispatch) ++(compressed ? stats->messages_compressed : stats->messages_raw);
  stats->logical_bytes += logical;
  stats->wire_bytes += wire;
}

}  // namespace lshmoe
