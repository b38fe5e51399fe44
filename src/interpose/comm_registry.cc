#include "interpose/comm_registry.h"

#include <unistd.h>

#include <cstdio>

#include "common/log.h"
#include "common/stats.h"

namespace lshmoe::interpose {
namespace {

void report(const CommState& c, const ShimSettings& s) {
  const ShimCounters& k = c.counters;
  const PairCounters& p = c.pairs.counters();
  char line[512];
  snprintf(line, sizeof(line),
           "lshmoe STATS [%d] shim communicator %lld (rank %d of %d): %llu calls; messages "
           "%llu compressed, %llu raw, %llu passed; %llu logical bytes, %llu wire bytes (%.4f); "
           "pairs %llu opened, %llu closed, %llu dropped\n",
           int(getpid()), static_cast<long long>(c.index), c.rank, c.size,
           static_cast<unsigned long long>(k.calls), static_cast<unsigned long long>(k.compressed),
           static_cast<unsigned long long>(k.raw), static_cast<unsigned long long>(k.passed),
           static_cast<unsigned long long>(k.logical_bytes),
           static_cast<unsigned long long>(k.wire_bytes),
           k.logical_bytes ? double(k.wire_bytes) / double(k.logical_bytes) : 0.0,
           static_cast<unsigned long long>(p.opened), static_cast<unsigned long long>(p.closed),
           static_cast<unsigned long long>(p.dropped));
  emit_stats_line(s.config, line);
}

}  // namespace

CommState* CommRegistry::insert(ncclComm_t comm, int64_t index, const RealNccl& real,
                                const ShimSettings& s) {
  int rank = -1, size = 0;
  if (real.ops.comm_user_rank(comm, &rank) != ncclSuccess ||
      real.ops.comm_count(comm, &size) != ncclSuccess || size < 1 || rank < 0 || rank >= size) {
    return nullptr;
  }
  auto state = std::make_unique<CommState>(comm, rank, size, index, s);
  LSHMOE_INFO("shim: communicator %lld (rank %d of %d) %s", static_cast<long long>(index), rank,
              size,
              !state->selected ? "not selected by LSHMOE_COMMS: passed through"
              : s.compress     ? "compressed"
                               : "passed through (LSHMOE_HIDDEN is not set)");
  CommState* raw = state.get();
  comms_[comm] = std::move(state);
  return raw;
}

void CommRegistry::add(ncclComm_t comm, const RealNccl& real, const ShimSettings& s) {
  std::lock_guard<std::mutex> lock(mu_);
  insert(comm, next_index_++, real, s);
}

CommState* CommRegistry::find(ncclComm_t comm, const RealNccl& real, const ShimSettings& s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = comms_.find(comm);
  if (it != comms_.end()) return it->second.get();
  return insert(comm, -1, real, s);
}

void CommRegistry::remove(ncclComm_t comm, const ShimSettings& s) {
  std::unique_ptr<CommState> state;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = comms_.find(comm);
    if (it == comms_.end()) return;
    state = std::move(it->second);
    comms_.erase(it);
  }
  if (s.config.stats) report(*state, s);
}

}  // namespace lshmoe::interpose
