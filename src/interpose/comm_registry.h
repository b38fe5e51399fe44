// What the shim keeps per NCCL communicator: its place in the job, its
// forward thread, what it knows of each peer, the open dispatches of the
// pairing rule with their codec contexts, and its counters. Communicators
// the shim saw created get a creation index (LSHMOE_COMMS=index:); others
// are adopted on first use, without one.
#pragma once

#include <nccl.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "interpose/pairing.h"
#include "interpose/real_nccl.h"
#include "interpose/shim_settings.h"

namespace lshmoe::interpose {

// One end's half of an open dispatch.
struct PairContext {
  bool compressed = false;
  cpu::OriginContext origin;  // this rank sent the dispatch
  cpu::ExpertContext expert;  // this rank received it
};

struct ShimCounters {
  uint64_t calls = 0;
  uint64_t compressed = 0, raw = 0, passed = 0;  // messages sent to other ranks
  uint64_t logical_bytes = 0, wire_bytes = 0;    // of the compressed and raw ones
};

struct PeerState {
  bool met = false;         // settings compared at a first all-to-all-shaped call
  bool mismatched = false;  // they differed: every message travels raw, every call fails
  uint32_t host = 0;
};

struct CommState {
  CommState(ncclComm_t c, int r, int n, int64_t i, const ShimSettings& s)
      : comm(c),
        rank(r),
        size(n),
        index(i),
        selected(s.comms.selects(n, i)),
        peers(size_t(n)),
        pairs(n, size_t(s.config.max_open)) {}

  const ncclComm_t comm;
  const int rank, size;
  const int64_t index;  // -1: adopted
  const bool selected;  // by LSHMOE_COMMS

  std::mutex mu;  // one call at a time on this communicator's state
  std::thread::id forward_thread;
  bool has_forward_thread = false;
  std::vector<PeerState> peers;
  std::string mismatch;  // the first one found, repeated by later calls
  PairTable<PairContext> pairs;
  std::unique_ptr<cpu::CpuCodec> codec;       // created at the first compressed message
  std::vector<std::vector<uint8_t>> staging;  // wire buffers, reused call after call
  ShimCounters counters;
  bool said_compressing = false;  // LSHMOE_DEBUG=INFO names the first compressed message
};

class CommRegistry {
 public:
  // A communicator created through the shim (the next creation index).
  void add(ncclComm_t comm, const RealNccl& real, const ShimSettings& s);
  // Its state, adopting a communicator never seen created; NULL when NCCL
  // cannot say its rank and size.
  CommState* find(ncclComm_t comm, const RealNccl& real, const ShimSettings& s);
  // Forgets a communicator (destroy, abort), printing its counters with
  // LSHMOE_STATS=1.
  void remove(ncclComm_t comm, const ShimSettings& s);

 private:
  CommState* insert(ncclComm_t comm, int64_t index, const RealNccl& real, const ShimSettings& s);

  std::mutex mu_;
  std::unordered_map<ncclComm_t, std::unique_ptr<CommState>> comms_;
  int64_t next_index_ = 0;
};

}  // namespace lshmoe::interpose
