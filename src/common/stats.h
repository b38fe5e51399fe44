// LSHMOE_STATS: one line of counters, to stderr or LSHMOE_STATS_FILE.
#pragma once

#include "common/config.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe {

// `who` names the owner of the counters ("codec", "communicator rank 3").
void report_stats(const Config& config, const char* who, const lshmoe_stats_t& stats);

}  // namespace lshmoe
