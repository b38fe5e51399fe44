#include "interpose/comm_registry.h"

#include <unistd.h>

#include <cstdio>
#include <cstring>

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
  if (s.exact_backward) {
    // The line ends in a newline: the backward's counters go before it.
    const KeptCounters& b = c.kept.counters();
    const size_t end = strlen(line) - 1;
    snprintf(
        line + end, sizeof(line) - end,
        "; backward pairs %llu kept, %llu differentiated, %llu replayed, %llu dropped\n",
        static_cast<unsigned long long>(b.kept), static_cast<unsigned long long>(b.differentiated),
        static_cast<unsigned long long>(b.replayed), static_cast<unsigned long long>(b.dropped));
  }
  emit_stats_line(s.config, line);
}

}  // namespace

PairContext::~PairContext() {
  if (device == nullptr) return;
  if (owner != nullptr) {
    (in_graph ? owner->in_graphs : owner->spare).push_back(device);
  } else {
    device_api()->context_destroy(device);
  }
}

CommState::~CommState() {
  // The contexts first: they use the codec's memory.
  pairs = PairTable<PairContext>(size, 1);
  kept = KeptPairs<PairContext>(size, 1);
  const LshmoeShimDeviceApi* api = device_codec || device_pool ? device_api() : nullptr;
  if (api == nullptr) return;
  for (void* context : device_contexts.spare) api->context_destroy(context);
  for (void* context : device_contexts.in_graphs) api->context_destroy(context);
  if (device_codec != nullptr) {
    if (api->check(device_codec, nullptr) != LSHMOE_SUCCESS) {
      LSHMOE_WARN("shim: communicator %lld: a device decoder rejected a message: %s",
                  static_cast<long long>(index), api->last_error());
    }
    api->codec_destroy(device_codec);
  }
  if (device_pool != nullptr) api->pool_destroy(device_pool);
}

void CommRegistry::add(ncclComm_t comm) {
  std::lock_guard<std::mutex> lock(mu_);
  created_[comm] = next_index_++;
}

std::shared_ptr<CommState> CommRegistry::find(ncclComm_t comm, const RealNccl& real,
                                              const ShimSettings& s) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = comms_.find(comm);
  if (it != comms_.end()) return it->second;
  int rank = -1, size = 0;
  if (real.ops.comm_user_rank(comm, &rank) != ncclSuccess ||
      real.ops.comm_count(comm, &size) != ncclSuccess || size < 1 || rank < 0 || rank >= size) {
    return nullptr;
  }
  const auto index_it = created_.find(comm);
  const int64_t index = index_it == created_.end() ? -1 : index_it->second;
  if (index_it != created_.end()) created_.erase(index_it);
  auto state = std::make_shared<CommState>(comm, rank, size, index, s);
  LSHMOE_INFO("shim: communicator %lld (rank %d of %d) %s", static_cast<long long>(index), rank,
              size,
              !state->selected ? "not selected by LSHMOE_COMMS: passed through"
              : s.compress     ? "compressed"
                               : "passed through (LSHMOE_HIDDEN is not set)");
  comms_[comm] = state;
  return state;
}

void CommRegistry::remove(ncclComm_t comm, const ShimSettings& s) {
  std::shared_ptr<CommState> state;
  {
    std::lock_guard<std::mutex> lock(mu_);
    created_.erase(comm);
    auto it = comms_.find(comm);
    if (it == comms_.end()) return;
    state = std::move(it->second);
    comms_.erase(it);
  }
  std::lock_guard<std::mutex> running(state->mu);  // a call on another thread ends first
  if (s.config.stats) report(*state, s);
}

}  // namespace lshmoe::interpose
