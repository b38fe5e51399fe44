// The CUDA back end: the codec (docs/design.md "The codec") on device
// buffers, batched (one launch sequence encodes every message of an
// all-to-all: the segments of one send buffer), stream-ordered on the
// caller's stream with no host synchronisation and no device-to-host copy,
// so a warmed-up codec can be captured in a CUDA graph. Messages decode on
// either back end, and under the same assignment their bytes are the CPU
// back end's (the Lloyd search, and so the assignment, may differ). This
// header needs no CUDA headers: streams are void*.
//
// A codec keeps its scratch memory (and the contexts theirs) across calls:
// use one codec per stream, or order the streams. Scratch grows only for a
// batch larger than any before; run each batch shape once before capturing
// a graph.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <utility>

#include "common/config.h"
#include "common/dtype.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::cuda {

class CodecState;
struct Segments;

// What one end of a batch of pairs keeps on the device between dispatch and
// combine: shapes, assignments, used slots, residuals (origin side).
class BatchContext {
 public:
  BatchContext();
  ~BatchContext();
  BatchContext(const BatchContext&) = delete;
  BatchContext& operator=(const BatchContext&) = delete;

 private:
  friend class CudaCodec;
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

class CudaCodec {
 public:
  // LSHMOE_ERR_UNSUPPORTED without a CUDA device, or with LSHMOE_VERIFY=1
  // (payload checksums are written by the CPU back end only, for now).
  static Status create(const Config& config, std::unique_ptr<CudaCodec>* out);
  ~CudaCodec();

  Status plan(size_t n_rows, size_t row_elems, DType dtype, lshmoe_plan_t* plan) const;

  // Message m is n_rows[m] rows of `rows` (consecutive, device memory), to
  // be written at wire + wire_offsets[m] (plan().dispatch_bytes; raw
  // messages are copied). At most 64 messages per call. keep_raw (may be
  // NULL): messages sent raw whatever their plan (a rank's message to
  // itself); the decoding end must pass the same.
  Status dispatch_encode(const void* rows, const size_t* n_rows, size_t messages, size_t row_elems,
                         DType dtype, uint64_t seq, void* wire, const size_t* wire_offsets,
                         BatchContext* ctx, void* stream, const uint8_t* keep_raw = nullptr);
  // The reverse, into rows_out (same layout as the sender's rows). A message
  // that fails its checks leaves its rows untouched; the error is reported
  // by check_errors().
  Status dispatch_decode(const void* wire, const size_t* wire_offsets, const size_t* n_rows,
                         size_t messages, size_t row_elems, DType dtype, uint64_t expected_seq,
                         void* rows_out, BatchContext* ctx, void* stream,
                         const uint8_t* keep_raw = nullptr);
  // The bytes message m of a batch takes on the wire (after the keep_raw rule).
  Status message_bytes(size_t n_rows, size_t row_elems, DType dtype, bool keep_raw,
                       lshmoe_kind_t kind, size_t* bytes) const;
  // Centroid mode: the expert gets, per message, the used slots then zeros
  // (plan().slots rows) of a compressed message and the rows of a raw one,
  // back to back; combine_encode_slots takes one output per such row.
  Status dispatch_decode_slots(const void* wire, const size_t* wire_offsets, const size_t* n_rows,
                               size_t messages, size_t row_elems, DType dtype,
                               uint64_t expected_seq, void* slots_out, BatchContext* ctx,
                               void* stream, const uint8_t* keep_raw = nullptr);
  Status combine_encode_slots(const BatchContext& ctx, const void* slot_rows, uint64_t seq,
                              void* wire, const size_t* wire_offsets, void* stream);
  // Expert side: rows are the expert outputs, laid out as dispatch_decode's rows_out.
  Status combine_encode(const BatchContext& ctx, const void* rows, uint64_t seq, void* wire,
                        const size_t* wire_offsets, void* stream);
  // Origin side: rows_out gets y_i = Y[a(i)] + alpha * r_i.
  Status combine_decode(const BatchContext& ctx, const void* wire, const size_t* wire_offsets,
                        uint64_t expected_seq, void* rows_out, void* stream);
  // The regrouped combine (as CpuCodec's: right when a slot's rows went to
  // different experts): the expert outputs encoded as a dispatch of their
  // own, each message at its offset with the dispatch's size
  // (plan().dispatch_bytes); the origin rebuilds y_i = Yhat[b(i)] + alpha
  // * r_i with the outputs' own assignment b. Left out of read_energies().
  Status combine_encode_regrouped(const BatchContext& ctx, const void* rows, uint64_t seq,
                                  void* wire, const size_t* wire_offsets, void* stream);
  Status combine_decode_regrouped(const BatchContext& ctx, const void* wire,
                                  const size_t* wire_offsets, uint64_t expected_seq, void* rows_out,
                                  void* stream);

  // The backward of a batch of pairs, as CpuCodec's (docs/training.md), on
  // the forward's contexts, after its combine: the origin sends the slot
  // means M of the output gradient and keeps g - M (combine_backward_encode);
  // the expert's rows get M, or with `slots` each slot |k| M_k
  // (combine_backward_decode); the expert sends the slot means of the input
  // gradients, or each slot's gradient over |k| (dispatch_backward_encode);
  // the origin rebuilds dx_i = S_a(i) + alpha (g_i - M_a(i))
  // (dispatch_backward_decode). Wire offsets: plan().combine_bytes each.
  Status combine_backward_encode(BatchContext& ctx, const void* grad_out, uint64_t seq, void* wire,
                                 const size_t* wire_offsets, void* stream);
  Status combine_backward_decode(const BatchContext& ctx, const void* wire,
                                 const size_t* wire_offsets, uint64_t expected_seq, void* grad_rows,
                                 bool slots, void* stream);
  Status dispatch_backward_encode(const BatchContext& ctx, const void* grad_rows, uint64_t seq,
                                  void* wire, const size_t* wire_offsets, bool slots, void* stream);
  Status dispatch_backward_decode(const BatchContext& ctx, const void* wire,
                                  const size_t* wire_offsets, uint64_t expected_seq, void* grad_in,
                                  void* stream);

  // The first decode error since the last poll or check, naming the message
  // (LSHMOE_SUCCESS when there was none), of the work the device has
  // finished: it reads a mapped host word (decode_error.h), never waits and
  // copies nothing, so it may run on every call, also during a capture.
  Status poll_errors();
  // The same once `stream` has been synchronised: every decode queued on it.
  Status check_errors(void* stream);
  // The bucket key of every row of the compressed messages of a batch, as
  // dispatch_encode computes it (keys_out: device memory, [rows], 16-byte
  // aligned; raw messages' entries are left as they were). For tests.
  Status hash_keys(const void* rows, const size_t* n_rows, size_t messages, size_t row_elems,
                   DType dtype, uint64_t* keys_out, void* stream);
  // Sums of |x|^2 and |x - c|^2 (c and the residual rounded as sent) over
  // the finite compressed rows of every dispatch encoded so far: residual /
  // input is the squared dispatch error. Waits for the codec's device, so
  // not during a graph capture, and only once the work queued can finish.
  Status read_energies(double* input, double* residual);

 private:
  CudaCodec();
  // A combine's segment table: the dispatch's, with this sequence number and
  // these (checked) wire offsets. Marks the context's memory as used by a
  // graph when `stream` is capturing (a combine reads it without sizing it).
  static Status combine_segments(const BatchContext& ctx, uint64_t seq, const size_t* wire_offsets,
                                 const void* rows, const void* wire, void* stream, const char* what,
                                 Segments* seg);
  // Checks the slots messages of `kind` (a combine, or the dispatch's
  // gradient) against the origin's context, then y_i = Y[a(i)] + alpha *
  // residual_i.
  Status decode_compensated(lshmoe_kind_t kind, const BatchContext& ctx, const void* wire,
                            const size_t* wire_offsets, uint64_t expected_seq, void* rows_out,
                            void* stream);
  Status encode_dispatch(const void* rows, const size_t* n_rows, size_t messages, size_t row_elems,
                         DType dtype, uint64_t seq, void* wire, const size_t* wire_offsets,
                         BatchContext* ctx, void* stream, const uint8_t* keep_raw, double* energy);
  Status decode_dispatch(const void* wire, const size_t* wire_offsets, const size_t* n_rows,
                         size_t messages, size_t row_elems, DType dtype, uint64_t expected_seq,
                         void* out, BatchContext* ctx, void* stream, const uint8_t* keep_raw,
                         bool slots_only);
  std::unique_ptr<CodecState> state_;
};

}  // namespace lshmoe::cuda
