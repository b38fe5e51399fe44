// The backward of a compressed pair (docs/training.md): the gradient of the
// compressed forward, computed on the contexts the forward left. Each half
// is a forward step on other rows: the combine's backward is slot means of
// the output gradient with their residuals (as a dispatch encode, under the
// dispatch's assignment), the dispatch's backward is slot means of the input
// gradients decoded with compensation (as a combine).
#include <cstring>

#include "codec/cpu/cpu_codec.h"
#include "common/status.h"

namespace lshmoe::cpu {

Status CpuCodec::combine_backward_encode(OriginContext* ctx, const void* grad_out, uint64_t seq,
                                         void* wire_out, size_t capacity) {
  const char* what = "combine backward encode";
  if (ctx == nullptr || !ctx->shape.valid) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the context holds no dispatch", what);
  }
  if (ctx->holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: this pair's combine backward already ran", what);
  }
  const PairShape& s = ctx->shape;
  const size_t bytes = s.wire_bytes(LSHMOE_COMBINE_GRAD);
  if (bytes > 0 && (grad_out == nullptr || wire_out == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: gradient and wire are required", what);
  }
  if (capacity < bytes) {
    return fail(LSHMOE_ERR_BUFFER_TOO_SMALL, "%s: wire buffer holds %zu bytes, %zu needed", what,
                capacity, bytes);
  }
  char* out = static_cast<char*>(wire_out);
  if (!s.compressed) {
    if (bytes > 0) memcpy(out, grad_out, bytes);
  } else {
    const wire::Layout layout = s.layout(LSHMOE_COMBINE_GRAD);
    const size_t row_bytes = s.row_elems * dtype_size(s.dtype);
    build_slot_index(ctx->assignment.data(), s.n_rows, s.used_slots, &slot_index_);
    if (config_.compensate != 0.0) {
      // g_i - M_a(i) replaces the residual (the combine consumed it).
      double gg = 0.0, mm = 0.0;
      ctx->residual.resize(s.logical_bytes());
      slot_means_and_residuals(*kernels_, pool_, s.dtype, grad_out, s.row_elems, slot_index_,
                               s.slots, out + layout.slots_offset, ctx->residual.data(), norms_,
                               &gg, &mm);
    } else {
      slot_means(*kernels_, pool_, s.dtype, grad_out, s.row_elems, slot_index_, s.slots,
                 out + layout.slots_offset);
    }
    wire::zero_tail(out, layout, s.slots * row_bytes);
    seal(wire::make_header(LSHMOE_COMBINE_GRAD, s.dtype, s.n_rows, s.row_elems, s.slots,
                           s.used_slots, seq),
         out, layout);
  }
  ctx->holds_gradient = true;
  stats_.logical_bytes += s.logical_bytes();
  stats_.wire_bytes += bytes;
  return LSHMOE_SUCCESS;
}

Status CpuCodec::combine_backward_decode(const ExpertContext& ctx, const void* wire_in, size_t size,
                                         uint64_t expected_seq, void* grad_rows, bool slots) {
  const char* what = "combine backward decode";
  const PairShape& s = ctx.shape;
  if (!s.valid) return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the context holds no dispatch", what);
  if (s.logical_bytes() > 0 && (wire_in == nullptr || grad_rows == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: wire and gradient rows are required", what);
  }
  if (!s.compressed) return copy_raw(what, wire_in, size, s.logical_bytes(), grad_rows);
  const wire::Expected want{LSHMOE_COMBINE_GRAD, s.n_rows, s.row_elems, s.dtype, s.slots,
                            expected_seq};
  wire::Header h;
  LSHMOE_RETURN_IF_ERROR(check_message(wire_in, size, want, &h));
  if (h.used_slots != s.used_slots) {
    return fail(LSHMOE_ERR_WIRE_BAD_SLOTS, "%s: message has %u used slots, the dispatch had %u",
                what, h.used_slots, s.used_slots);
  }
  const char* means =
      static_cast<const char*>(wire_in) + s.layout(LSHMOE_COMBINE_GRAD).slots_offset;
  if (slots) {
    // A slot's output stood for |k| rows: its gradient is their sum.
    build_slot_index(ctx.assignment.data(), s.n_rows, s.used_slots, &slot_index_);
    scale_slots(*kernels_, pool_, s.dtype, means, s.row_elems, slot_index_, s.slots,
                SlotScale::kByCount, grad_rows);
  } else {
    expand_rows(pool_, s.dtype, means, ctx.assignment.data(), s.n_rows, s.row_elems, grad_rows);
  }
  return LSHMOE_SUCCESS;
}

Status CpuCodec::dispatch_backward_encode(const ExpertContext& ctx, const void* grad_rows,
                                          uint64_t seq, void* wire_out, size_t capacity,
                                          bool slots) {
  // The mean of the slot's input gradients (rows mode), or the slot's
  // gradient over its row count (centroid mode): the gradient of c_k = the
  // mean of the slot's inputs, before the residual path.
  return encode_slots(LSHMOE_DISPATCH_GRAD, ctx, grad_rows,
                      slots ? SlotSource::kSlotsOverCount : SlotSource::kMeansOfRows, seq, wire_out,
                      capacity);
}

Status CpuCodec::dispatch_backward_decode(const OriginContext& ctx, const void* wire_in,
                                          size_t size, uint64_t expected_seq, void* grad_in) {
  return decode_compensated(LSHMOE_DISPATCH_GRAD, ctx, wire_in, size, expected_seq, grad_in);
}

}  // namespace lshmoe::cpu
