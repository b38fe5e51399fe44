#include "codec/cuda/cuda_codec.h"

#include <cuda_runtime.h>

#include <vector>

#include "codec/cuda/assign.h"
#include "codec/cuda/batch.h"
#include "codec/cuda/cuda_check.h"
#include "codec/cuda/messages.h"
#include "codec/cuda/slot_index.h"
#include "codec/plan.h"
#include "codec/projection_spec.h"
#include "codec/wire_format.h"

namespace lshmoe::cuda {

struct BatchContext::Impl {
  bool valid = false;
  Segments seg{};
  DeviceBuffer assignment;   // [rows]
  DeviceBuffer used;         // [messages]
  DeviceBuffer residual;     // [rows][row_elems] (origin)
  DeviceBuffer valid_flags;  // [messages] (expert: which dispatches decoded)
  // Origin: the residual buffer holds g - M (the combine's backward ran).
  bool holds_gradient = false;

  // A combine reads these without sizing them.
  void note_use(cudaStream_t stream) const {
    assignment.note_use(stream);
    used.note_use(stream);
    residual.note_use(stream);
    valid_flags.note_use(stream);
  }
};

BatchContext::BatchContext() : impl_(new Impl) {}
BatchContext::~BatchContext() = default;

class CodecState {
 public:
  Config config;
  uint32_t dtype_mask = 0;
  SlotAssigner assigner;
  SlotIndexer indexer;
  std::map<std::pair<size_t, DType>, std::unique_ptr<DeviceBuffer>> projections;
  DeviceBuffer scratch_valid;       // [messages]
  DeviceBuffer scratch_referenced;  // [slots + 1]
  DeviceBuffer row_energy;          // [rows] of double2
  // Regrouped combines: the outputs' own groups, which the statistics leave out.
  BatchContext regroup;
  DeviceBuffer regroup_energy;      // 2 doubles, never read
  DeviceBuffer regroup_assignment;  // [rows]
  DeviceBuffer regroup_used;        // [messages]
  uint64_t* error = nullptr;        // mapped host memory (decode_error.h)
  double* energy = nullptr;         // device: input and residual energy so far
  int device = 0;                   // where this codec's memory lives
};

namespace {

// The segment table of a batch, from host-known sizes; slots stay 0 for raw messages.
Status make_segments(const CodecState& st, const size_t* n_rows, size_t messages, size_t row_elems,
                     DType dtype, uint64_t seq, const size_t* wire_offsets, const uint8_t* keep_raw,
                     Segments* seg) {
  if (messages > size_t(kMaxSegments)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda: %zu messages in one batch, at most %d",
                messages, kMaxSegments);
  }
  for (size_t m = 0; wire_offsets != nullptr && m < messages; ++m) {
    if (wire_offsets[m] % wire::kAlign != 0) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "cuda: wire offset %zu of message %zu is not a "
                  "multiple of %zu",
                  wire_offsets[m], m, wire::kAlign);
    }
  }
  if (n_rows == nullptr || wire_offsets == nullptr || row_elems == 0 || row_elems > kMaxRowElems) {
    return fail(
        LSHMOE_ERR_INVALID_ARGUMENT,
        "cuda: a batch needs row counts, wire offsets and a row length in [1, %u] (got %zu)",
        kMaxRowElems, row_elems);
  }
  *seg = Segments{};
  seg->count = int(messages);
  seg->row_elems = uint32_t(row_elems);
  seg->dtype = uint32_t(dtype);
  seg->seq = seq;
  uint64_t rows = 0, slots = 0;
  for (size_t m = 0; m < messages; ++m) {
    lshmoe_plan_t p;
    LSHMOE_RETURN_IF_ERROR(plan_message(st.config, st.dtype_mask, n_rows[m], row_elems, dtype, &p));
    seg->row_begin[m] = uint32_t(rows);
    seg->slot_begin[m] = uint32_t(slots);
    seg->rows[m] = uint32_t(n_rows[m]);
    seg->slots[m] = p.compressed && !(keep_raw && keep_raw[m]) ? uint32_t(p.slots) : 0;
    seg->wire_offset[m] = wire_offsets[m];
    rows += n_rows[m];
    slots += seg->slots[m];
    if (rows > UINT32_MAX / 2) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda: a batch of more than 2^31 rows");
    }
  }
  seg->row_begin[messages] = uint32_t(rows);
  seg->slot_begin[messages] = uint32_t(slots);
  uint32_t expert = 0;
  for (size_t m = 0; m < messages; ++m) {
    seg->expert_begin[m] = expert;
    expert += seg->slots[m] > 0 ? seg->slots[m] : seg->rows[m];
  }
  seg->expert_begin[messages] = expert;
  return LSHMOE_SUCCESS;
}

// The kernels load rows as their dtype and wire fields as up to 16 bytes.
// Empty batches may come with NULL buffers (empty tensors).
Status check_buffers(const Segments& seg, const void* rows, const void* wire, const char* what) {
  const DType dtype = DType(seg.dtype);
  if (seg.row_begin[seg.count] > 0 && (rows == nullptr || wire == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda %s: NULL rows or wire", what);
  }
  if (reinterpret_cast<uintptr_t>(rows) % dtype_size(dtype) != 0) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda %s: rows at %p are not aligned to %zu bytes",
                what, rows, dtype_size(dtype));
  }
  if (reinterpret_cast<uintptr_t>(wire) % wire::kAlign != 0) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda %s: wire at %p is not aligned to %zu bytes",
                what, wire, wire::kAlign);
  }
  return LSHMOE_SUCCESS;
}

size_t row_bytes(const Segments& s) {
  return size_t(s.row_elems) * dtype_size(DType(s.dtype));
}

// Raw messages are copies of their rows; rows lie in the batch layout or,
// on the expert side in centroid mode, in the expert layout.
Status copy_raw(const Segments& s, bool to_wire, const void* from, void* to, cudaStream_t stream,
                bool expert_layout = false) {
  for (int m = 0; m < s.count; ++m) {
    if (s.slots[m] != 0 || s.rows[m] == 0) continue;
    const size_t bytes = size_t(s.rows[m]) * row_bytes(s);
    const size_t rows_at =
        size_t(expert_layout ? s.expert_begin[m] : s.row_begin[m]) * row_bytes(s);
    const char* src = static_cast<const char*>(from) + (to_wire ? rows_at : s.wire_offset[m]);
    char* dst = static_cast<char*>(to) + (to_wire ? s.wire_offset[m] : rows_at);
    LSHMOE_CUDA_RETURN(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream));
  }
  return LSHMOE_SUCCESS;
}

// The projection matrix of (row_elems, dtype), built on first use.
Status projection_for(CodecState& st, size_t row_elems, DType dtype, cudaStream_t stream,
                      const void** out) {
  auto found = st.projections.find({row_elems, dtype});
  if (found == st.projections.end()) {
    // Cached only once built.
    auto built = std::make_unique<DeviceBuffer>();
    const size_t bytes =
        size_t(st.config.hashes * st.config.proj_dim) * row_elems * dtype_size(dtype);
    LSHMOE_RETURN_IF_ERROR(built->ensure(bytes, stream));
    LSHMOE_RETURN_IF_ERROR(build_projection(projection_spec(st.config, row_elems),
                                            int(st.config.hashes), int(st.config.proj_dim), dtype,
                                            built->as<void>(), stream));
    found = st.projections.emplace(std::make_pair(row_elems, dtype), std::move(built)).first;
  }
  *out = found->second->as<void>();
  return LSHMOE_SUCCESS;
}

}  // namespace

CudaCodec::CudaCodec() : state_(new CodecState) {}

CudaCodec::~CudaCodec() {
  if (state_ && state_->error != nullptr) cudaFreeHost(state_->error);
  if (state_ && state_->energy != nullptr) cudaFree(state_->energy);
}

Status CudaCodec::create(const Config& config, std::unique_ptr<CudaCodec>* out) {
  LSHMOE_RETURN_IF_ERROR(config_validate(config));
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    return fail(LSHMOE_ERR_UNSUPPORTED, "cuda: no CUDA device");
  }
  if (config.verify) {
    return fail(LSHMOE_ERR_UNSUPPORTED,
                "cuda: LSHMOE_VERIFY=1: payload checksums are written by the CPU back end only");
  }
  std::unique_ptr<CudaCodec> c(new CudaCodec());
  CodecState& st = *c->state_;
  st.config = config;
  st.dtype_mask = dtype_mask(config);
  AssignParams p;
  p.tables = int(config.hashes);
  p.dim = int(config.proj_dim);
  p.key_bits = key_bits(config);
  p.center = config.center;
  p.spare_slots = config.spare_slots;
  p.refine = int(config.refine);
  LSHMOE_RETURN_IF_ERROR(st.assigner.init(p));
  // The device writes it through the same address (unified addressing).
  LSHMOE_CUDA_RETURN(cudaHostAlloc(&st.error, sizeof(uint64_t), cudaHostAllocMapped));
  *st.error = 0;
  LSHMOE_CUDA_RETURN(cudaGetDevice(&st.device));
  LSHMOE_CUDA_RETURN(cudaMalloc(&st.energy, 2 * sizeof(double)));
  LSHMOE_CUDA_RETURN(cudaMemset(st.energy, 0, 2 * sizeof(double)));
  *out = std::move(c);
  return LSHMOE_SUCCESS;
}

Status CudaCodec::plan(size_t n_rows, size_t row_elems, DType dtype, lshmoe_plan_t* plan) const {
  return plan_message(state_->config, state_->dtype_mask, n_rows, row_elems, dtype, plan);
}

Status CudaCodec::dispatch_encode(const void* rows, const size_t* n_rows, size_t messages,
                                  size_t row_elems, DType dtype, uint64_t seq, void* wire,
                                  const size_t* wire_offsets, BatchContext* ctx, void* stream_ptr,
                                  const uint8_t* keep_raw) {
  return encode_dispatch(rows, n_rows, messages, row_elems, dtype, seq, wire, wire_offsets, ctx,
                         stream_ptr, keep_raw, state_->energy);
}

Status CudaCodec::encode_dispatch(const void* rows, const size_t* n_rows, size_t messages,
                                  size_t row_elems, DType dtype, uint64_t seq, void* wire,
                                  const size_t* wire_offsets, BatchContext* ctx, void* stream_ptr,
                                  const uint8_t* keep_raw, double* energy) {
  if (ctx == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda: a context is required");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  CodecState& st = *state_;
  BatchContext::Impl& c = *ctx->impl_;
  c.valid = false;
  c.holds_gradient = false;
  LSHMOE_RETURN_IF_ERROR(
      make_segments(st, n_rows, messages, row_elems, dtype, seq, wire_offsets, keep_raw, &c.seg));
  LSHMOE_RETURN_IF_ERROR(check_buffers(c.seg, rows, wire, "dispatch encode"));
  const Segments& seg = c.seg;
  const uint32_t n = seg.row_begin[seg.count];
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, true, rows, wire, stream));
  if (seg.slot_begin[seg.count] > 0) {
    const void* proj = nullptr;
    LSHMOE_RETURN_IF_ERROR(projection_for(st, row_elems, dtype, stream, &proj));
    LSHMOE_RETURN_IF_ERROR(c.assignment.ensure(size_t(n) * sizeof(uint32_t), stream));
    LSHMOE_RETURN_IF_ERROR(c.used.ensure(size_t(kMaxSegments) * sizeof(uint32_t), stream));
    LSHMOE_RETURN_IF_ERROR(c.residual.ensure(size_t(n) * row_bytes(seg), stream));
    LSHMOE_RETURN_IF_ERROR(st.assigner.run(seg, rows, proj, c.assignment.as<uint32_t>(),
                                           c.used.as<uint32_t>(), stream));
    SlotIndex index;
    LSHMOE_RETURN_IF_ERROR(st.indexer.build(seg, c.assignment.as<uint32_t>(), stream, &index));
    LSHMOE_RETURN_IF_ERROR(st.row_energy.ensure(size_t(n) * sizeof(double2), stream));
    LSHMOE_RETURN_IF_ERROR(write_dispatch(seg, rows, c.assignment.as<uint32_t>(),
                                          c.used.as<uint32_t>(), index, wire, c.residual.as<void>(),
                                          st.row_energy.as<double2>(), energy, stream));
  }
  c.valid = true;
  return LSHMOE_SUCCESS;
}

Status CudaCodec::dispatch_decode(const void* wire, const size_t* wire_offsets,
                                  const size_t* n_rows, size_t messages, size_t row_elems,
                                  DType dtype, uint64_t expected_seq, void* rows_out,
                                  BatchContext* ctx, void* stream_ptr, const uint8_t* keep_raw) {
  return decode_dispatch(wire, wire_offsets, n_rows, messages, row_elems, dtype, expected_seq,
                         rows_out, ctx, stream_ptr, keep_raw, false);
}

Status CudaCodec::dispatch_decode_slots(const void* wire, const size_t* wire_offsets,
                                        const size_t* n_rows, size_t messages, size_t row_elems,
                                        DType dtype, uint64_t expected_seq, void* slots_out,
                                        BatchContext* ctx, void* stream_ptr,
                                        const uint8_t* keep_raw) {
  return decode_dispatch(wire, wire_offsets, n_rows, messages, row_elems, dtype, expected_seq,
                         slots_out, ctx, stream_ptr, keep_raw, true);
}

Status CudaCodec::decode_dispatch(const void* wire, const size_t* wire_offsets,
                                  const size_t* n_rows, size_t messages, size_t row_elems,
                                  DType dtype, uint64_t expected_seq, void* out, BatchContext* ctx,
                                  void* stream_ptr, const uint8_t* keep_raw, bool slots_only) {
  if (ctx == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda: a context is required");
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  CodecState& st = *state_;
  BatchContext::Impl& c = *ctx->impl_;
  c.valid = false;
  LSHMOE_RETURN_IF_ERROR(make_segments(st, n_rows, messages, row_elems, dtype, expected_seq,
                                       wire_offsets, keep_raw, &c.seg));
  LSHMOE_RETURN_IF_ERROR(check_buffers(c.seg, out, wire, "dispatch decode"));
  const Segments& seg = c.seg;
  const uint32_t n = seg.row_begin[seg.count], slots = seg.slot_begin[seg.count];
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, false, wire, out, stream, slots_only));
  if (slots > 0) {
    LSHMOE_RETURN_IF_ERROR(c.assignment.ensure(size_t(n) * sizeof(uint32_t), stream));
    LSHMOE_RETURN_IF_ERROR(c.used.ensure(size_t(kMaxSegments) * sizeof(uint32_t), stream));
    LSHMOE_RETURN_IF_ERROR(c.valid_flags.ensure(size_t(kMaxSegments) * sizeof(int), stream));
    LSHMOE_RETURN_IF_ERROR(st.scratch_referenced.ensure(size_t(slots) + 1, stream));
    LSHMOE_RETURN_IF_ERROR(check_messages(seg, LSHMOE_DISPATCH, wire, nullptr, st.config.verify,
                                          c.assignment.as<uint32_t>(), c.used.as<uint32_t>(),
                                          st.scratch_referenced.as<uint8_t>(),
                                          c.valid_flags.as<int>(), st.error, stream));
    LSHMOE_RETURN_IF_ERROR(
        slots_only
            ? copy_slots(seg, wire, c.used.as<uint32_t>(), c.valid_flags.as<int>(), out, stream)
            : expand(seg, LSHMOE_DISPATCH, wire, c.assignment.as<uint32_t>(),
                     c.valid_flags.as<int>(), out, stream));
  }
  c.valid = true;
  return LSHMOE_SUCCESS;
}

Status CudaCodec::combine_segments(const BatchContext& ctx, uint64_t seq,
                                   const size_t* wire_offsets, const void* rows, const void* wire,
                                   void* stream, const char* what, Segments* seg) {
  const BatchContext::Impl& c = *ctx.impl_;
  if (!c.valid) return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "cuda %s: no dispatch", what);
  c.note_use(static_cast<cudaStream_t>(stream));
  LSHMOE_RETURN_IF_ERROR(check_buffers(c.seg, rows, wire, what));
  if (wire_offsets == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda %s: wire offsets are required", what);
  }
  *seg = c.seg;
  seg->seq = seq;
  for (int m = 0; m < seg->count; ++m) {
    if (wire_offsets[m] % wire::kAlign != 0) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "cuda %s: wire offset %zu of message %d is not a multiple of %zu", what,
                  wire_offsets[m], m, wire::kAlign);
    }
    seg->wire_offset[m] = wire_offsets[m];
  }
  return LSHMOE_SUCCESS;
}

Status CudaCodec::combine_encode(const BatchContext& ctx, const void* rows, uint64_t seq,
                                 void* wire, const size_t* wire_offsets, void* stream_ptr) {
  const BatchContext::Impl& c = *ctx.impl_;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(
      combine_segments(ctx, seq, wire_offsets, rows, wire, stream, "combine encode", &seg));
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, true, rows, wire, stream));
  if (seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  SlotIndex index;
  LSHMOE_RETURN_IF_ERROR(state_->indexer.build(seg, c.assignment.as<uint32_t>(), stream, &index));
  return write_combine(seg, rows, c.used.as<uint32_t>(), index, wire, stream);
}

Status CudaCodec::combine_encode_slots(const BatchContext& ctx, const void* slot_rows, uint64_t seq,
                                       void* wire, const size_t* wire_offsets, void* stream_ptr) {
  const BatchContext::Impl& c = *ctx.impl_;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(
      combine_segments(ctx, seq, wire_offsets, slot_rows, wire, stream, "combine encode", &seg));
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, true, slot_rows, wire, stream, true));
  if (seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  return write_combine_slots(seg, slot_rows, c.used.as<uint32_t>(), wire, stream);
}

Status CudaCodec::combine_decode(const BatchContext& ctx, const void* wire,
                                 const size_t* wire_offsets, uint64_t expected_seq, void* rows_out,
                                 void* stream_ptr) {
  return decode_compensated(LSHMOE_COMBINE, ctx, wire, wire_offsets, expected_seq, rows_out,
                            stream_ptr);
}

Status CudaCodec::decode_compensated(lshmoe_kind_t kind, const BatchContext& ctx, const void* wire,
                                     const size_t* wire_offsets, uint64_t expected_seq,
                                     void* rows_out, void* stream_ptr) {
  const BatchContext::Impl& c = *ctx.impl_;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  CodecState& st = *state_;
  const bool forward = kind == LSHMOE_COMBINE;
  const char* what = forward ? "combine decode" : "dispatch backward decode";
  const float alpha = float(st.config.compensate);
  // The residual buffer holds the dispatch's residuals until the combine's
  // backward replaces them with g - M.
  if (forward && c.holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "cuda %s: the combine's backward already ran on these pairs", what);
  }
  if (!forward && alpha != 0.0f && !c.holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "cuda %s: the combine's backward has not run on these pairs", what);
  }
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(
      combine_segments(ctx, expected_seq, wire_offsets, rows_out, wire, stream, what, &seg));
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, false, wire, rows_out, stream));
  if (seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  LSHMOE_RETURN_IF_ERROR(st.scratch_valid.ensure(size_t(kMaxSegments) * sizeof(int), stream));
  LSHMOE_RETURN_IF_ERROR(check_messages(seg, kind, wire, c.used.as<uint32_t>(), st.config.verify,
                                        nullptr, nullptr, nullptr, st.scratch_valid.as<int>(),
                                        st.error, stream));
  return compensate(seg, kind, wire, c.assignment.as<uint32_t>(), c.residual.as<void>(), alpha,
                    st.scratch_valid.as<int>(), rows_out, stream);
}

Status CudaCodec::combine_backward_encode(BatchContext& ctx, const void* grad_out, uint64_t seq,
                                          void* wire, const size_t* wire_offsets,
                                          void* stream_ptr) {
  BatchContext::Impl& c = *ctx.impl_;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  CodecState& st = *state_;
  if (c.holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "cuda combine backward encode: these pairs' combine backward already ran");
  }
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(combine_segments(ctx, seq, wire_offsets, grad_out, wire, stream,
                                          "combine backward encode", &seg));
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, true, grad_out, wire, stream));
  c.holds_gradient = true;
  if (seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  SlotIndex index;
  LSHMOE_RETURN_IF_ERROR(st.indexer.build(seg, c.assignment.as<uint32_t>(), stream, &index));
  // g - M replaces the residual, which the combine consumed.
  void* residual = st.config.compensate != 0.0 ? c.residual.as<void>() : nullptr;
  return write_gradient_means(seg, grad_out, c.assignment.as<uint32_t>(), c.used.as<uint32_t>(),
                              index, wire, residual, stream);
}

Status CudaCodec::combine_backward_decode(const BatchContext& ctx, const void* wire,
                                          const size_t* wire_offsets, uint64_t expected_seq,
                                          void* grad_rows, bool slots, void* stream_ptr) {
  const BatchContext::Impl& c = *ctx.impl_;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  CodecState& st = *state_;
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(combine_segments(ctx, expected_seq, wire_offsets, grad_rows, wire, stream,
                                          "combine backward decode", &seg));
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, false, wire, grad_rows, stream, slots));
  if (seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  LSHMOE_RETURN_IF_ERROR(st.scratch_valid.ensure(size_t(kMaxSegments) * sizeof(int), stream));
  LSHMOE_RETURN_IF_ERROR(check_messages(seg, LSHMOE_COMBINE_GRAD, wire, c.used.as<uint32_t>(),
                                        st.config.verify, nullptr, nullptr, nullptr,
                                        st.scratch_valid.as<int>(), st.error, stream));
  if (!slots) {
    return expand(seg, LSHMOE_COMBINE_GRAD, wire, c.assignment.as<uint32_t>(),
                  st.scratch_valid.as<int>(), grad_rows, stream);
  }
  SlotIndex index;
  LSHMOE_RETURN_IF_ERROR(st.indexer.build(seg, c.assignment.as<uint32_t>(), stream, &index));
  return read_scaled_slots(seg, wire, c.used.as<uint32_t>(), st.scratch_valid.as<int>(), index,
                           grad_rows, stream);
}

Status CudaCodec::dispatch_backward_encode(const BatchContext& ctx, const void* grad_rows,
                                           uint64_t seq, void* wire, const size_t* wire_offsets,
                                           bool slots, void* stream_ptr) {
  const BatchContext::Impl& c = *ctx.impl_;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(combine_segments(ctx, seq, wire_offsets, grad_rows, wire, stream,
                                          "dispatch backward encode", &seg));
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, true, grad_rows, wire, stream, slots));
  if (seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  SlotIndex index;
  LSHMOE_RETURN_IF_ERROR(state_->indexer.build(seg, c.assignment.as<uint32_t>(), stream, &index));
  return slots ? write_scaled_slots(seg, grad_rows, c.used.as<uint32_t>(), index, wire, stream)
               : write_input_gradient_means(seg, grad_rows, c.used.as<uint32_t>(), index, wire,
                                            stream);
}

Status CudaCodec::dispatch_backward_decode(const BatchContext& ctx, const void* wire,
                                           const size_t* wire_offsets, uint64_t expected_seq,
                                           void* grad_in, void* stream_ptr) {
  return decode_compensated(LSHMOE_DISPATCH_GRAD, ctx, wire, wire_offsets, expected_seq, grad_in,
                            stream_ptr);
}

Status CudaCodec::combine_encode_regrouped(const BatchContext& ctx, const void* rows, uint64_t seq,
                                           void* wire, const size_t* wire_offsets,
                                           void* stream_ptr) {
  const BatchContext::Impl& c = *ctx.impl_;
  if (!c.valid)
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "cuda regrouped combine encode: no dispatch");
  if (wire_offsets == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "cuda regrouped combine encode: wire offsets are required");
  }
  c.note_use(static_cast<cudaStream_t>(stream_ptr));
  // The dispatch's messages, rows and raw ones alike: the outputs as a
  // dispatch of their own (their energies are not the inputs').
  const Segments& d = c.seg;
  size_t n_rows[kMaxSegments];
  uint8_t keep_raw[kMaxSegments];
  for (int m = 0; m < d.count; ++m) {
    n_rows[m] = d.rows[m];
    keep_raw[m] = d.slots[m] == 0 ? 1 : 0;
  }
  CodecState& st = *state_;
  LSHMOE_RETURN_IF_ERROR(
      st.regroup_energy.ensure(2 * sizeof(double), static_cast<cudaStream_t>(stream_ptr)));
  LSHMOE_RETURN_IF_ERROR(encode_dispatch(rows, n_rows, size_t(d.count), d.row_elems, DType(d.dtype),
                                         seq, wire, wire_offsets, &st.regroup, stream_ptr, keep_raw,
                                         st.regroup_energy.as<double>()));
  // The outputs of a rejected dispatch are no answer: their message is
  // rejected at the origin (a combine by slot means gets this from the
  // dispatch's used slots, zero).
  return reject_unanswered(st.regroup.impl_->seg, c.valid_flags.as<int>(), wire,
                           static_cast<cudaStream_t>(stream_ptr));
}

Status CudaCodec::combine_decode_regrouped(const BatchContext& ctx, const void* wire,
                                           const size_t* wire_offsets, uint64_t expected_seq,
                                           void* rows_out, void* stream_ptr) {
  const BatchContext::Impl& c = *ctx.impl_;
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  CodecState& st = *state_;
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(combine_segments(ctx, expected_seq, wire_offsets, rows_out, wire, stream,
                                          "regrouped combine decode", &seg));
  LSHMOE_RETURN_IF_ERROR(copy_raw(seg, false, wire, rows_out, stream));
  const uint32_t n = seg.row_begin[seg.count], slots = seg.slot_begin[seg.count];
  if (slots == 0) return LSHMOE_SUCCESS;
  // Dispatch-kind messages with their own assignment: checked whole on the
  // device (indices, used slots) before a row is written.
  LSHMOE_RETURN_IF_ERROR(st.scratch_valid.ensure(size_t(kMaxSegments) * sizeof(int), stream));
  LSHMOE_RETURN_IF_ERROR(st.regroup_assignment.ensure(size_t(n) * sizeof(uint32_t), stream));
  LSHMOE_RETURN_IF_ERROR(st.regroup_used.ensure(size_t(kMaxSegments) * sizeof(uint32_t), stream));
  LSHMOE_RETURN_IF_ERROR(st.scratch_referenced.ensure(size_t(slots) + 1, stream));
  LSHMOE_RETURN_IF_ERROR(check_messages(
      seg, LSHMOE_DISPATCH, wire, nullptr, st.config.verify, st.regroup_assignment.as<uint32_t>(),
      st.regroup_used.as<uint32_t>(), st.scratch_referenced.as<uint8_t>(),
      st.scratch_valid.as<int>(), st.error, stream));
  return compensate(seg, LSHMOE_DISPATCH, wire, st.regroup_assignment.as<uint32_t>(),
                    c.residual.as<void>(), float(st.config.compensate), st.scratch_valid.as<int>(),
                    rows_out, stream);
}

Status CudaCodec::message_bytes(size_t n_rows, size_t row_elems, DType dtype, bool keep_raw,
                                lshmoe_kind_t kind, size_t* bytes) const {
  lshmoe_plan_t p;
  LSHMOE_RETURN_IF_ERROR(plan(n_rows, row_elems, dtype, &p));
  *bytes = keep_raw || !p.compressed ? p.logical_bytes
           : kind == LSHMOE_DISPATCH ? p.dispatch_bytes
                                     : p.combine_bytes;
  return LSHMOE_SUCCESS;
}

Status CudaCodec::hash_keys(const void* rows, const size_t* n_rows, size_t messages,
                            size_t row_elems, DType dtype, uint64_t* keys_out, void* stream_ptr) {
  auto stream = static_cast<cudaStream_t>(stream_ptr);
  CodecState& st = *state_;
  const std::vector<size_t> offsets(messages, 0);
  Segments seg;
  LSHMOE_RETURN_IF_ERROR(
      make_segments(st, n_rows, messages, row_elems, dtype, 0, offsets.data(), nullptr, &seg));
  LSHMOE_RETURN_IF_ERROR(check_buffers(seg, rows, keys_out, "hash keys"));
  if (seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  const void* proj = nullptr;
  LSHMOE_RETURN_IF_ERROR(projection_for(st, row_elems, dtype, stream, &proj));
  return st.assigner.keys(seg, rows, proj, keys_out, stream);
}

Status CudaCodec::read_energies(double* input, double* residual) {
  double e[2] = {0.0, 0.0};
  int current = 0;
  LSHMOE_CUDA_RETURN(cudaGetDevice(&current));
  LSHMOE_CUDA_RETURN(cudaSetDevice(state_->device));
  cudaError_t err = cudaDeviceSynchronize();
  if (err == cudaSuccess) err = cudaMemcpy(e, state_->energy, sizeof(e), cudaMemcpyDeviceToHost);
  cudaSetDevice(current);
  if (err != cudaSuccess) {
    return fail(LSHMOE_ERR_INTERNAL, "cuda: reading the energies: %s", cudaGetErrorString(err));
  }
  *input = e[0];
  *residual = e[1];
  return LSHMOE_SUCCESS;
}

Status CudaCodec::poll_errors() {
  const DecodeError e = take_decode_error(state_->error);
  if (e.status == 0) return LSHMOE_SUCCESS;
  return fail(Status(e.status), "cuda decode: message %d: %s", e.message,
              status_string(Status(e.status)));
}

Status CudaCodec::check_errors(void* stream_ptr) {
  LSHMOE_CUDA_RETURN(cudaStreamSynchronize(static_cast<cudaStream_t>(stream_ptr)));
  return poll_errors();
}

}  // namespace lshmoe::cuda
