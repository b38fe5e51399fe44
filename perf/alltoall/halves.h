// The two halves of lshmoe_alltoall_perf's rows behind one interface, so the
// timing loop is written once: an all-to-all pair (dispatch, then the
// combine through the identity expert) on buffers of the current size.
//   host (--backend ucx):  lshmoe communicators over UCX on host buffers; the
//                          raw half is one with LSHMOE_ENABLE=0;
//   device (--backend nccl): device buffers on one stream; the raw half is
//                          NCCL's own ncclAlltoAll, the lshmoe half a
//                          communicator made from the same ncclComm_t.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "alltoall/options.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::perf {

class Half {
 public:
  virtual ~Half() = default;
  // Buffers for counts[p] rows to and from every rank p; x: this rank's rows
  // (dtype bytes), copied in.
  virtual void resize(const std::vector<uint8_t>& x, const std::vector<size_t>& counts) = 0;
  // Operation `slot` of an iteration (at most -m in flight).
  virtual void dispatch(size_t slot) = 0;
  virtual void combine(size_t slot) = 0;  // of dispatch(slot), through the identity expert
  virtual void drop(size_t slot) = 0;     // dispatch(slot) not to be combined
  // Queued work done (device: the stream synchronised; host: nothing queues).
  virtual void wait() = 0;
  // After wait(): what the dispatch delivered, or what the combine returned.
  virtual std::vector<uint8_t> result(bool dispatched) = 0;
  // The compressed half's counters; false for a raw half.
  virtual bool stats(lshmoe_stats_t* s) const = 0;
  // -G: an iteration's work captured once in a CUDA graph, replayed n times.
  virtual bool can_capture() const { return false; }
  virtual void capture_begin() {}
  virtual void capture_end() {}
  virtual void replay(int n) { (void)n; }
};

// Fails the run on every rank that sees a failure: names the call and why.
[[noreturn]] void die(const char* what, const std::string& why);
void check(lshmoe_status_t s, const char* what);

// Host halves: *raw is also the communicator ranks meet through (barriers,
// the gathering of results).
void make_host_halves(const PerfOptions& o, lshmoe_comm_t* raw, lshmoe_comm_t* compressed,
                      std::unique_ptr<Half>* raw_half, std::unique_ptr<Half>* lshmoe_half);

// Device halves over one ncclComm_t made for them (its unique id travels
// over `meet`); *device_info names the GPU. Else the exit status, with *why:
// 77 without a CUDA device (nothing to run on: the tests' skip code), 2 in
// builds without CUDA or NCCL.
int make_device_halves(const PerfOptions& o, lshmoe_comm_t* meet, int rank, int world,
                       std::unique_ptr<Half>* raw_half, std::unique_ptr<Half>* lshmoe_half,
                       std::string* device_info, std::string* why);

// Every rank's bytes, rank by rank (over a raw host communicator).
std::vector<uint8_t> allgather(lshmoe_comm_t* raw, int world, const void* mine, size_t bytes);

}  // namespace lshmoe::perf
