// The steps of a pair the shim keeps after its combine for the exact
// backward (docs/shim.md "Exact backward"): the combine's backward under
// the combine's own grouping, and the replay of the forward that activation
// recomputation makes. Every message is K slot rows, laid out as a combine.
#include <cstring>

#include "codec/cpu/cpu_codec.h"
#include "common/status.h"

namespace lshmoe::cpu {
namespace {

// The pair is a compressed one and `combine` groups its rows into its slots.
Status check_pair(const char* what, const PairShape& s, const Grouping* combine) {
  if (!s.valid) return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the context holds no dispatch", what);
  if (!s.compressed) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the pair travelled raw: nothing was kept", what);
  }
  if (combine != nullptr && (combine->assignment.size() != s.n_rows || combine->used_slots == 0 ||
                             combine->used_slots > s.slots)) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "%s: the kept combine grouping has %zu rows and %u used slots, the pair %zu rows "
                "and %zu slots",
                what, combine->assignment.size(), combine->used_slots, s.n_rows, s.slots);
  }
  return LSHMOE_SUCCESS;
}

Status check_capacity(const char* what, size_t capacity, size_t bytes, const void* rows,
                      const void* wire) {
  if (rows == nullptr || wire == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: rows and wire are required", what);
  }
  if (capacity < bytes) {
    return fail(LSHMOE_ERR_BUFFER_TOO_SMALL, "%s: wire buffer holds %zu bytes, %zu needed", what,
                capacity, bytes);
  }
  return LSHMOE_SUCCESS;
}

const char* slots_of(const void* wire, const PairShape& s) {
  return static_cast<const char*>(wire) + s.layout(LSHMOE_COMBINE).slots_offset;
}

}  // namespace

void CpuCodec::write_slot_means(lshmoe_kind_t kind, uint8_t flags, const PairShape& s,
                                const uint32_t* assignment, uint32_t used, const void* rows,
                                uint64_t seq, char* out) {
  const wire::Layout layout = s.layout(LSHMOE_COMBINE);
  build_slot_index(assignment, s.n_rows, used, &slot_index_);
  slot_means(*kernels_, pool_, s.dtype, rows, s.row_elems, slot_index_, s.slots,
             out + layout.slots_offset);
  wire::zero_tail(out, layout, s.slots * s.row_elems * dtype_size(s.dtype));
  wire::Header header = wire::make_header(kind, s.dtype, s.n_rows, s.row_elems, s.slots, used, seq);
  header.flags |= flags;
  seal(header, out, layout);
}

Status CpuCodec::check_kept(const char* what, const wire::Expected& want, uint32_t used,
                            const void* wire_in, size_t size) {
  if (wire_in == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: no wire", what);
  wire::Header h;
  LSHMOE_RETURN_IF_ERROR(check_message(wire_in, size, want, &h));
  if (h.used_slots != used) {
    return fail(LSHMOE_ERR_WIRE_BAD_SLOTS, "%s: message has %u used slots, the kept pair %u", what,
                h.used_slots, used);
  }
  return LSHMOE_SUCCESS;
}

Status CpuCodec::kept_combine_backward_encode(OriginContext* ctx, const Grouping& combine,
                                              const void* grad_out, uint64_t seq, void* wire_out,
                                              size_t capacity) {
  const char* what = "kept combine backward encode";
  if (ctx == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: no context", what);
  const PairShape& s = ctx->shape;
  LSHMOE_RETURN_IF_ERROR(check_pair(what, s, &combine));
  if (ctx->holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: this pair's combine backward already ran", what);
  }
  LSHMOE_RETURN_IF_ERROR(
      check_capacity(what, capacity, s.wire_bytes(LSHMOE_COMBINE_GRAD), grad_out, wire_out));
  if (config_.compensate != 0.0) {
    // g_i - M_a(i) under the dispatch's grouping (the residual path's
    // gradient); the means themselves are not sent, M' under b is.
    double gg = 0.0, mm = 0.0;
    backward_means_.resize(s.slots * s.row_elems * dtype_size(s.dtype));
    build_slot_index(ctx->assignment.data(), s.n_rows, s.used_slots, &slot_index_);
    ctx->residual.resize(s.logical_bytes());
    slot_means_and_residuals(*kernels_, pool_, s.dtype, grad_out, s.row_elems, slot_index_, s.slots,
                             backward_means_.data(), ctx->residual.data(), norms_, &gg, &mm);
  }
  write_slot_means(LSHMOE_COMBINE_GRAD, 0, s, combine.assignment.data(), combine.used_slots,
                   grad_out, seq, static_cast<char*>(wire_out));
  ctx->holds_gradient = true;
  stats_.logical_bytes += s.logical_bytes();
  stats_.wire_bytes += s.wire_bytes(LSHMOE_COMBINE_GRAD);
  return LSHMOE_SUCCESS;
}

Status CpuCodec::kept_combine_backward_decode(const ExpertContext& ctx, const Grouping& combine,
                                              const void* wire_in, size_t size,
                                              uint64_t expected_seq, void* grad_rows) {
  const char* what = "kept combine backward decode";
  const PairShape& s = ctx.shape;
  LSHMOE_RETURN_IF_ERROR(check_pair(what, s, &combine));
  if (grad_rows == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: no rows_out", what);
  const wire::Expected want{LSHMOE_COMBINE_GRAD, s.n_rows, s.row_elems, s.dtype, s.slots,
                            expected_seq};
  LSHMOE_RETURN_IF_ERROR(check_kept(what, want, combine.used_slots, wire_in, size));
  expand_rows(pool_, s.dtype, slots_of(wire_in, s), combine.assignment.data(), s.n_rows,
              s.row_elems, grad_rows);
  return LSHMOE_SUCCESS;
}

Status CpuCodec::replay_dispatch_encode(OriginContext* ctx, const void* rows, uint64_t seq,
                                        void* wire_out, size_t capacity) {
  const char* what = "replayed dispatch encode";
  if (ctx == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: no context", what);
  const PairShape& s = ctx->shape;
  LSHMOE_RETURN_IF_ERROR(check_pair(what, s, nullptr));
  if (ctx->holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "%s: the pair's backward has begun: its forward cannot be replayed", what);
  }
  const size_t bytes = s.wire_bytes(LSHMOE_COMBINE);
  LSHMOE_RETURN_IF_ERROR(check_capacity(what, capacity, bytes, rows, wire_out));
  // The kept grouping's centroids of the recomputed rows, and their
  // residuals: what the combine's replay and the backward then use.
  char* out = static_cast<char*>(wire_out);
  const wire::Layout layout = s.layout(LSHMOE_COMBINE);
  double rr = 0.0, xx = 0.0;
  build_slot_index(ctx->assignment.data(), s.n_rows, s.used_slots, &slot_index_);
  slot_means_and_residuals(*kernels_, pool_, s.dtype, rows, s.row_elems, slot_index_, s.slots,
                           out + layout.slots_offset, ctx->residual.data(), norms_, &rr, &xx);
  wire::zero_tail(out, layout, s.slots * s.row_elems * dtype_size(s.dtype));
  wire::Header header = wire::make_header(LSHMOE_DISPATCH, s.dtype, s.n_rows, s.row_elems, s.slots,
                                          s.used_slots, seq);
  header.flags |= wire::kFlagKeptGrouping;
  seal(header, out, layout);
  stats_.logical_bytes += s.logical_bytes();
  stats_.wire_bytes += bytes;
  return LSHMOE_SUCCESS;
}

Status CpuCodec::replay_dispatch_decode(const ExpertContext& ctx, const void* wire_in, size_t size,
                                        uint64_t expected_seq, void* rows_out) {
  const char* what = "replayed dispatch decode";
  const PairShape& s = ctx.shape;
  LSHMOE_RETURN_IF_ERROR(check_pair(what, s, nullptr));
  if (rows_out == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: no rows_out", what);
  wire::Expected want{LSHMOE_DISPATCH, s.n_rows, s.row_elems, s.dtype, s.slots, expected_seq};
  want.kept_grouping = true;
  LSHMOE_RETURN_IF_ERROR(check_kept(what, want, s.used_slots, wire_in, size));
  expand_rows(pool_, s.dtype, slots_of(wire_in, s), ctx.assignment.data(), s.n_rows, s.row_elems,
              rows_out);
  return LSHMOE_SUCCESS;
}

Status CpuCodec::replay_combine_encode(const ExpertContext& ctx, const Grouping& combine,
                                       const void* rows, uint64_t seq, void* wire_out,
                                       size_t capacity) {
  const char* what = "replayed combine encode";
  const PairShape& s = ctx.shape;
  LSHMOE_RETURN_IF_ERROR(check_pair(what, s, &combine));
  const size_t bytes = s.wire_bytes(LSHMOE_COMBINE);
  LSHMOE_RETURN_IF_ERROR(check_capacity(what, capacity, bytes, rows, wire_out));
  write_slot_means(LSHMOE_DISPATCH, wire::kFlagKeptGrouping, s, combine.assignment.data(),
                   combine.used_slots, rows, seq, static_cast<char*>(wire_out));
  stats_.logical_bytes += s.logical_bytes();
  stats_.wire_bytes += bytes;
  return LSHMOE_SUCCESS;
}

Status CpuCodec::replay_combine_decode(const OriginContext& ctx, const Grouping& combine,
                                       const void* wire_in, size_t size, uint64_t expected_seq,
                                       void* rows_out) {
  const char* what = "replayed combine decode";
  const PairShape& s = ctx.shape;
  LSHMOE_RETURN_IF_ERROR(check_pair(what, s, &combine));
  if (ctx.holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "%s: the pair's backward has begun (its residuals are gone)", what);
  }
  if (rows_out == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: no rows_out", what);
  wire::Expected want{LSHMOE_DISPATCH, s.n_rows, s.row_elems, s.dtype, s.slots, expected_seq};
  want.kept_grouping = true;
  LSHMOE_RETURN_IF_ERROR(check_kept(what, want, combine.used_slots, wire_in, size));
  compensate_rows(*kernels_, pool_, s.dtype, slots_of(wire_in, s), combine.assignment.data(),
                  ctx.residual.data(), float(config_.compensate), s.n_rows, s.row_elems, rows_out);
  return LSHMOE_SUCCESS;
}

bool CpuCodec::is_replay(const void* wire_in, size_t size) {
  if (wire_in == nullptr || size < sizeof(wire::Header)) return false;
  wire::Header h;
  memcpy(&h, wire_in, sizeof(h));
  return h.kind == LSHMOE_DISPATCH && (h.flags & wire::kFlagKeptGrouping) != 0;
}

}  // namespace lshmoe::cpu
