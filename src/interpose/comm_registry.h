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
#include "interpose/device_api.h"
#include "interpose/kept_pairs.h"
#include "interpose/pairing.h"
#include "interpose/real_nccl.h"
#include "interpose/row_sample.h"
#include "interpose/shim_settings.h"

namespace lshmoe::interpose {

// A communicator's device contexts (device_api.h) that no open pair holds:
// spares for the next pairs, and those that work captured in a CUDA graph
// used, kept until the communicator is destroyed (every replay writes and
// reads them; a pair opened between replays must not share them).
struct DeviceContexts {
  std::vector<void*> spare;
  std::vector<void*> in_graphs;
};

// One end's half of an open dispatch.
struct PairContext {
  PairContext() = default;
  PairContext(const PairContext&) = delete;
  PairContext& operator=(const PairContext&) = delete;
  ~PairContext();
  bool compressed = false;
  cpu::OriginContext origin;  // this rank sent the dispatch (host buffers)
  cpu::ExpertContext expert;  // this rank received it (host buffers)
  // LSHMOE_BACKWARD=exact, host buffers: the combine's grouping (the
  // regrouped combine's own, else the dispatch's), and the origin's sample
  // of the dispatch's rows (a replay sends them again).
  cpu::Grouping combine_groups;
  RowSample sample;
  void* device = nullptr;  // either end's, on device buffers (device_api.h)
  bool in_graph = false;   // a call of the pair was captured
  // Where `device` goes when the pair is over: a device context is reused,
  // never freed under queued work (freeing would wait for the device).
  DeviceContexts* owner = nullptr;
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
        pairs(n, size_t(s.config.max_open)),
        kept(n, size_t(s.config.max_open)) {}
  ~CommState();

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
  KeptPairs<PairContext> kept;  // LSHMOE_BACKWARD=exact: combined pairs awaiting their backward
  bool said_device_backward = false;     // exact backward on device buffers: said once
  std::unique_ptr<cpu::CpuCodec> codec;  // created at the first candidate call
  bool codec_failed = false;             // it could not be: everything travels raw
  // Device buffers (device_api.h): the CUDA codec and the wire buffers.
  void* device_codec = nullptr;
  bool device_codec_failed = false;
  void* device_pool = nullptr;
  DeviceContexts device_contexts;             // of pairs that are over
  std::vector<std::vector<uint8_t>> staging;  // wire buffers, reused call after call
  ShimCounters counters;
  bool said_compressing = false;  // LSHMOE_DEBUG=INFO names the first compressed message
};

class CommRegistry {
 public:
  // A communicator created through the shim (the next creation index). Its
  // rank and size are read at its first use: a non-blocking communicator
  // may still be initialising here.
  void add(ncclComm_t comm);
  // Its state, adopting a communicator never seen created; NULL when NCCL
  // cannot say its rank and size.
  std::shared_ptr<CommState> find(ncclComm_t comm, const RealNccl& real, const ShimSettings& s);
  // Forgets a communicator (destroyed or aborted: the real call is made
  // first), once a call running on it from another thread is over; prints
  // its counters with LSHMOE_STATS=1.
  void remove(ncclComm_t comm, const ShimSettings& s);

 private:
  std::mutex mu_;
  std::unordered_map<ncclComm_t, std::shared_ptr<CommState>> comms_;
  std::unordered_map<ncclComm_t, int64_t> created_;  // creation index, until first use
  int64_t next_index_ = 0;
};

}  // namespace lshmoe::interpose
