// The compressed all-to-all as its callers see it, whatever moves the bytes:
// the host engine (host buffers, UCX; a call completes before it returns)
// or the device engine (device buffers, NCCL; calls are ordered on the
// caller's stream). One surface, so that the C API and the shim never ask
// which engine they hold.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::exchange {

enum class DispatchMode {
  kRows,       // the expert gets every row (rebuilt from its slot)
  kCentroids,  // the expert gets the slots of compressed messages (the paper's mode)
};

enum class Memory { kHost, kDevice };

// A dispatch awaiting its combine; each engine keeps its pairs' contexts in
// its own kind of handle.
//
// Parts: with several experts per rank, the message to a peer is made of one
// part per expert of that peer (in expert order), each compressed on its own
// so that no slot holds rows of two experts. Counts are then per part,
// peer-major: [peer * experts + expert]. With one expert a part is a message.
// Where a pair stands: its forward, then its backward, each step once and
// in this order.
enum class PairStage { kDispatched, kCombined, kCombineBackward, kDone };

struct Handle {
  virtual ~Handle() = default;
  DispatchMode mode = DispatchMode::kRows;
  size_t row_elems = 0;
  DType dtype = DType::kFloat32;
  size_t experts = 1;  // parts per peer
  PairStage stage = PairStage::kDispatched;
  std::vector<size_t> send_rows;  // rows this rank sent to each part
  std::vector<size_t> recv_rows;  // rows each part of this rank got
};

// Moves a handle from `from` to the next stage, or says why it cannot.
inline Status advance_stage(Handle* h, PairStage from, const char* what) {
  static const char* const kDone[] = {"dispatched", "combined", "through the combine's backward",
                                      "through its backward"};
  if (h == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: the handle is NULL", what);
  if (h->stage != from) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the pair must be %s, and it is %s", what,
                kDone[int(from)], kDone[int(h->stage)]);
  }
  h->stage = PairStage(int(from) + 1);  // a step runs once, whatever happens next
  return LSHMOE_SUCCESS;
}

class Exchange {
 public:
  virtual ~Exchange() = default;

  virtual Memory memory() const = 0;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;

  // Rows the expert side gets from each part for these incoming row counts
  // (world_size * experts of them): recv_rows[i], or in centroid mode the
  // slot count of a compressed part.
  virtual Status expert_rows(const size_t* recv_rows, size_t experts, size_t row_elems, DType dtype,
                             DispatchMode mode, size_t* out) const = 0;
  // send holds sum(send_rows) rows grouped by destination part; recv gets
  // sum(expert_rows(recv_rows)) rows grouped by source part. `stream` is the
  // caller's CUDA stream on device memory, unused on host memory.
  virtual Status dispatch(const void* send, const size_t* send_rows, void* recv,
                          const size_t* recv_rows, size_t experts, size_t row_elems, DType dtype,
                          DispatchMode mode, void* stream, std::unique_ptr<Handle>* out) = 0;
  // expert_out is laid out as dispatch's recv, out as dispatch's send.
  virtual Status combine(Handle* handle, const void* expert_out, void* out, void* stream) = 0;
  // The backward of a combined pair, the exact gradient of its compressed
  // forward (docs/training.md). combine_backward: grad_out laid out as the
  // combine's out, grad_expert_out as the dispatch's recv (the gradient of
  // the expert's output); then dispatch_backward: grad_expert_in laid out as
  // the dispatch's recv (the gradient of the expert's input), grad_in as its
  // send. Raw messages carry their plain all-to-all gradient.
  virtual Status combine_backward(Handle* handle, const void* grad_out, void* grad_expert_out,
                                  void* stream) = 0;
  virtual Status dispatch_backward(Handle* handle, const void* grad_expert_in, void* grad_in,
                                   void* stream) = 0;
  // The slot of each row this rank sent to `part` (i for a raw part).
  virtual Status assignment(const Handle& handle, size_t part, uint32_t* slots) const = 0;
  // Per part, the expert rows that hold data (centroid mode leaves padding).
  virtual Status used_rows(const Handle& handle, size_t* out) const = 0;
  // Messages and bytes sent to other ranks, and the energies of the
  // compressed dispatch rows.
  virtual Status stats(lshmoe_stats_t* out) const = 0;
  // Waits for the work queued on `stream`; the first corrupt message found.
  virtual Status check(void* stream) = 0;
  // A handle the caller is done with; an engine may keep its memory for a
  // later dispatch.
  virtual void release(std::unique_ptr<Handle> handle) = 0;
};

}  // namespace lshmoe::exchange
