#include "codec/cpu/cpu_codec.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>

#include "codec/plan.h"
#include "codec/projection_spec.h"
#include "codec/wire_format.h"
#include "common/log.h"
#include "common/stats.h"
#include "common/status.h"

namespace lshmoe::cpu {
namespace {

int resolve_threads(int64_t configured) {
  if (configured > 0) return int(configured);
  const unsigned hw = std::thread::hardware_concurrency();
  return int(std::clamp(hw, 1u, 4u));
}

Status describe_wire_error(Status status, const char* what, const void* wire, size_t size,
                           const wire::Expected& want) {
  wire::Header h{};
  if (size >= sizeof(h)) memcpy(&h, wire, sizeof(h));
  return fail(status,
              "%s: %s (got %zu bytes, kind %u, dtype %u, n_rows %u, row_elems %u, slots %u, "
              "used_slots %u, seq %llu; expected kind %d, dtype %u, n_rows %llu, row_elems "
              "%llu, slots %llu)",
              what, status_string(status), size, h.kind, h.dtype, h.n_rows, h.row_elems, h.slots,
              h.used_slots, static_cast<unsigned long long>(h.seq), int(want.kind),
              unsigned(want.dtype), static_cast<unsigned long long>(want.n_rows),
              static_cast<unsigned long long>(want.row_elems),
              static_cast<unsigned long long>(want.slots));
}

// Slot index i of a wire assignment (any alignment).
template <typename Index>
uint32_t wire_index(const char* data, size_t i) {
  Index v;
  memcpy(&v, data + i * sizeof(Index), sizeof(Index));
  return v;
}

// Every index is below `used`, and every slot below `used` is referenced
// (an encoder never sends an empty slot); otherwise reports the problem.
template <typename Index>
Status check_assignment(const char* what, const char* data, size_t n, uint32_t used,
                        std::vector<uint8_t>& referenced) {
  referenced.assign(used, 0);
  for (size_t i = 0; i < n; ++i) {
    const uint32_t slot = wire_index<Index>(data, i);
    if (slot >= used) {
      return fail(LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE,
                  "%s: assignment of row %zu is slot %u, out of range (used_slots %u)", what, i,
                  slot, used);
    }
    referenced[slot] = 1;
  }
  for (uint32_t k = 0; k < used; ++k) {
    if (!referenced[k]) {
      return fail(LSHMOE_ERR_WIRE_BAD_SLOTS, "%s: slot %u of %u used slots has no row", what, k,
                  used);
    }
  }
  return LSHMOE_SUCCESS;
}

}  // namespace

Status CpuCodec::copy_raw(const char* what, const void* wire, size_t size, size_t expected,
                          void* out) {
  if (size != expected) {
    return fail(size < expected ? LSHMOE_ERR_WIRE_TRUNCATED : LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                "%s: raw message of %zu bytes, expected %zu", what, size, expected);
  }
  if (size > 0) memcpy(out, wire, size);
  return LSHMOE_SUCCESS;
}

CpuCodec::CpuCodec(const Config& config, const Kernels& kernels, int threads)
    : config_(config), dtype_mask_(dtype_mask(config)), kernels_(&kernels), pool_(threads) {}

Status CpuCodec::create(const Config& config, std::unique_ptr<CpuCodec>* out) {
  LSHMOE_RETURN_IF_ERROR(config_validate(config));
  const Kernels* kernels = select_kernels(config.cpu_isa.c_str());
  if (kernels == nullptr) {
    return fail(LSHMOE_ERR_UNSUPPORTED,
                "LSHMOE_CPU_ISA=%s: this processor or operating system does not support it "
                "(use auto or scalar)",
                config.cpu_isa.c_str());
  }
  out->reset(new CpuCodec(config, *kernels, resolve_threads(config.cpu_threads)));
  LSHMOE_INFO("cpu codec: %s kernels, %d threads, ratio %g, %lld hashes x %lld dims, refine %lld",
              kernels->isa, (*out)->pool_.size(), config.ratio,
              static_cast<long long>(config.hashes), static_cast<long long>(config.proj_dim),
              static_cast<long long>(config.refine));
  return LSHMOE_SUCCESS;
}

CpuCodec::~CpuCodec() {
  if (config_.stats) report_stats(config_, "codec", stats_);
}

Status CpuCodec::plan(size_t n_rows, size_t row_elems, DType dtype, lshmoe_plan_t* plan) const {
  return plan_message(config_, dtype_mask_, n_rows, row_elems, dtype, plan);
}

const Projection& CpuCodec::projection_for(size_t row_elems, DType dtype) {
  const auto key = std::make_pair(row_elems, dtype);
  auto it = projections_.find(key);
  if (it == projections_.end()) {
    if (projections_.size() >= kMaxProjections) projections_.clear();
    it = projections_.emplace(key, Projection{}).first;
    build_projection(projection_spec(config_, row_elems), int(config_.hashes),
                     int(config_.proj_dim), dtype, &it->second);
  }
  return it->second;
}

void CpuCodec::seal(wire::Header header, char* out, const wire::Layout& layout) const {
  if (config_.verify) {
    header.flags |= wire::kFlagPayloadChecksum;
    header.payload_checksum =
        wire::crc32c(0, out + wire::kHeaderBytes, layout.total_bytes - wire::kHeaderBytes);
  }
  wire::seal_header(&header);
  memcpy(out, &header, sizeof(header));
}

Status CpuCodec::dispatch_encode(const void* rows, size_t n_rows, size_t row_elems, DType dtype,
                                 uint64_t seq, void* wire_out, size_t capacity,
                                 OriginContext* ctx) {
  lshmoe_plan_t p;
  LSHMOE_RETURN_IF_ERROR(plan(n_rows, row_elems, dtype, &p));
  if (ctx == nullptr || (p.logical_bytes > 0 && (rows == nullptr || wire_out == nullptr))) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch encode: rows, wire and ctx are required");
  }
  if (capacity < p.dispatch_bytes) {
    return fail(LSHMOE_ERR_BUFFER_TOO_SMALL,
                "dispatch encode: wire buffer holds %zu bytes, %zu needed", capacity,
                p.dispatch_bytes);
  }
  ctx->shape.valid = false;  // until this encode is complete
  ctx->holds_gradient = false;
  PairShape shape{true, bool(p.compressed), n_rows, row_elems, dtype, p.slots, 0};
  double rr = 0.0, xx = 0.0;
  if (p.compressed) {
    shape.used_slots = assign_slots(rows, n_rows, row_elems, dtype, p.slots, ctx);
    write_dispatch(rows, shape, seq, wire_out, ctx, &rr, &xx);
  } else if (p.logical_bytes > 0) {
    memcpy(wire_out, rows, p.logical_bytes);
  }
  ctx->shape = shape;
  LSHMOE_TRACE("dispatch encode: %zu rows x %zu %s, %s, %zu slots (%u used), %zu bytes", n_rows,
               row_elems, dtype_name(dtype), p.compressed ? "compressed" : "raw", p.slots,
               shape.used_slots, p.dispatch_bytes);
  ++(p.compressed ? stats_.messages_compressed : stats_.messages_raw);
  stats_.logical_bytes += p.logical_bytes;
  stats_.wire_bytes += p.dispatch_bytes;
  stats_.residual_energy += rr;
  stats_.input_energy += xx;
  return LSHMOE_SUCCESS;
}

uint32_t CpuCodec::assign_slots(const void* rows, size_t n_rows, size_t row_elems, DType dtype,
                                size_t slots, OriginContext* ctx) {
  // 1. Hash centred rows.
  const Projection& proj = projection_for(row_elems, dtype);
  projected_.resize(n_rows * proj.cols);
  keys_.resize(n_rows);
  project_rows(*kernels_, pool_, proj, dtype, rows, n_rows, config_.center, projected_.data());
  pool_.parallel_for(n_rows, n_rows * proj.cols, [&](size_t r0, size_t r1) {
    hash_keys(projected_.data() + r0 * proj.cols, r1 - r0, proj.cols, proj.tables, proj.dim,
              keys_.data() + r0);
  });
  // Rows with a NaN or infinity share one slot of their own.
  nonfinite_.clear();
  for (size_t i = 0; i < n_rows; ++i) {
    if (!row_finite(&projected_[i * proj.cols], proj.cols)) nonfinite_.push_back(uint32_t(i));
  }

  // 2. Budgeted grouping, spare slots.
  ctx->assignment.resize(n_rows);
  uint32_t* assignment = ctx->assignment.data();
  uint32_t used = group_isolating(keys_.data(), n_rows, key_bits(config_), slots, nonfinite_,
                                  sorted_, assignment);
  if (config_.spare_slots) {
    used = add_spare_singletons(projected_.data(), n_rows, proj.cols, used, slots, assignment,
                                projected_scratch_, candidates_);
    used = compact_slots(assignment, n_rows, used, projected_scratch_.remap);
  }
  // 3. Refine.
  const RefineSearch search{int(config_.refine), int(config_.refine_probes), int(config_.proj_dim)};
  return refine_projected(*kernels_, pool_, projected_.data(), n_rows, proj.cols, used, search,
                          nonfinite_, assignment, projected_scratch_);
}

void CpuCodec::write_dispatch(const void* rows, const PairShape& s, uint64_t seq, void* wire_out,
                              OriginContext* ctx, double* rr, double* xx) {
  const wire::Layout layout = s.layout(LSHMOE_DISPATCH);
  char* out = static_cast<char*>(wire_out);
  const uint32_t* assignment = ctx->assignment.data();
  // 4. Centroids, straight into the wire, and residuals against the rounded
  // centroids, slot by slot; then the assignment.
  build_slot_index(assignment, s.n_rows, s.used_slots, &slot_index_);
  ctx->residual.resize(s.logical_bytes());
  slot_means_and_residuals(*kernels_, pool_, s.dtype, rows, s.row_elems, slot_index_, s.slots,
                           out + layout.slots_offset, ctx->residual.data(), norms_, rr, xx);
  wire::zero_tail(out, layout, s.slots * s.row_elems * dtype_size(s.dtype));
  wire::write_assignment(assignment, s.n_rows, s.slots, out, layout);
  seal(wire::make_header(LSHMOE_DISPATCH, s.dtype, s.n_rows, s.row_elems, s.slots, s.used_slots,
                         seq),
       out, layout);
}

Status CpuCodec::check_message(const void* wire_in, size_t size, const wire::Expected& want,
                               wire::Header* header) {
  static const char* const kDecoders[] = {"decode", "dispatch decode", "combine decode",
                                          "combine backward decode", "dispatch backward decode"};
  const char* what = kDecoders[want.kind <= LSHMOE_DISPATCH_GRAD ? want.kind : 0];
  Status s = wire::check_header(wire_in, size, want, header);
  if (s != LSHMOE_SUCCESS) return describe_wire_error(s, what, wire_in, size, want);
  const char* payload = static_cast<const char*>(wire_in) + wire::kHeaderBytes;
  if (header->flags & wire::kFlagPayloadChecksum) {
    const uint32_t crc = wire::crc32c(0, payload, size - wire::kHeaderBytes);
    if (crc != header->payload_checksum) {
      return fail(LSHMOE_ERR_WIRE_BAD_CHECKSUM, "%s: payload checksum %08x, header says %08x", what,
                  crc, header->payload_checksum);
    }
  } else if (config_.verify) {
    return fail(LSHMOE_ERR_WIRE_BAD_CHECKSUM,
                "%s: LSHMOE_VERIFY=1 but the sender wrote no payload checksum", what);
  }
  if (want.kind != LSHMOE_DISPATCH || want.kept_grouping) return LSHMOE_SUCCESS;
  return header->index_width == 2 ? check_assignment<uint16_t>(what, payload, want.n_rows,
                                                               header->used_slots, referenced_)
                                  : check_assignment<uint32_t>(what, payload, want.n_rows,
                                                               header->used_slots, referenced_);
}

Status CpuCodec::dispatch_decode(const void* wire_in, size_t size, size_t n_rows, size_t row_elems,
                                 DType dtype, uint64_t expected_seq, void* rows_out,
                                 ExpertContext* ctx) {
  return decode_dispatch(wire_in, size, n_rows, row_elems, dtype, expected_seq, rows_out, ctx,
                         /*slots_only=*/false);
}

Status CpuCodec::dispatch_decode_slots(const void* wire_in, size_t size, size_t n_rows,
                                       size_t row_elems, DType dtype, uint64_t expected_seq,
                                       void* slots_out, ExpertContext* ctx) {
  return decode_dispatch(wire_in, size, n_rows, row_elems, dtype, expected_seq, slots_out, ctx,
                         /*slots_only=*/true);
}

Status CpuCodec::read_assignment(const void* wire_in, size_t size, const PairShape& shape,
                                 uint64_t expected_seq, ExpertContext* ctx, wire::Header* h) {
  const wire::Expected want{LSHMOE_DISPATCH, shape.n_rows, shape.row_elems,
                            shape.dtype,     shape.slots,  expected_seq};
  LSHMOE_RETURN_IF_ERROR(check_message(wire_in, size, want, h));
  const wire::Layout layout = shape.layout(LSHMOE_DISPATCH);
  const char* in = static_cast<const char*>(wire_in);
  ctx->shape.valid = false;  // until the assignment is in place
  ctx->assignment.resize(shape.n_rows);
  for (size_t i = 0; i < shape.n_rows; ++i) {
    ctx->assignment[i] = h->index_width == 2
                             ? wire_index<uint16_t>(in + layout.assignment_offset, i)
                             : wire_index<uint32_t>(in + layout.assignment_offset, i);
  }
  return LSHMOE_SUCCESS;
}

Status CpuCodec::decode_dispatch(const void* wire_in, size_t size, size_t n_rows, size_t row_elems,
                                 DType dtype, uint64_t expected_seq, void* rows_out,
                                 ExpertContext* ctx, bool slots_only) {
  lshmoe_plan_t p;
  LSHMOE_RETURN_IF_ERROR(plan(n_rows, row_elems, dtype, &p));
  if (ctx == nullptr || (p.logical_bytes > 0 && (wire_in == nullptr || rows_out == nullptr))) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "dispatch decode: wire, rows_out and ctx are required");
  }
  PairShape shape{true, bool(p.compressed), n_rows, row_elems, dtype, p.slots, 0};
  if (!p.compressed) {
    LSHMOE_RETURN_IF_ERROR(copy_raw("dispatch decode", wire_in, size, p.logical_bytes, rows_out));
    ctx->shape = shape;
    return LSHMOE_SUCCESS;
  }
  wire::Header h;
  LSHMOE_RETURN_IF_ERROR(read_assignment(wire_in, size, shape, expected_seq, ctx, &h));
  shape.used_slots = h.used_slots;
  const wire::Layout layout = shape.layout(LSHMOE_DISPATCH);
  const char* in = static_cast<const char*>(wire_in);
  if (slots_only) {
    // The used slots, then zeros: padding slots hold no row's data.
    const size_t row_bytes = row_elems * dtype_size(dtype);
    memcpy(rows_out, in + layout.slots_offset, h.used_slots * row_bytes);
    memset(static_cast<char*>(rows_out) + h.used_slots * row_bytes, 0,
           (p.slots - h.used_slots) * row_bytes);
  } else {
    expand_rows(pool_, dtype, in + layout.slots_offset, ctx->assignment.data(), n_rows, row_elems,
                rows_out);
  }
  ctx->shape = shape;
  return LSHMOE_SUCCESS;
}

Status CpuCodec::combine_encode(const ExpertContext& ctx, const void* rows, uint64_t seq,
                                void* wire_out, size_t capacity) {
  return encode_combine(ctx, rows, seq, wire_out, capacity, /*slots_only=*/false);
}

Status CpuCodec::combine_encode_slots(const ExpertContext& ctx, const void* slot_rows, uint64_t seq,
                                      void* wire_out, size_t capacity) {
  return encode_combine(ctx, slot_rows, seq, wire_out, capacity, /*slots_only=*/true);
}

Status CpuCodec::encode_combine(const ExpertContext& ctx, const void* rows, uint64_t seq,
                                void* wire_out, size_t capacity, bool slots_only) {
  return encode_slots(LSHMOE_COMBINE, ctx, rows,
                      slots_only ? SlotSource::kSlots : SlotSource::kMeansOfRows, seq, wire_out,
                      capacity);
}

Status CpuCodec::encode_slots(lshmoe_kind_t kind, const ExpertContext& ctx, const void* rows,
                              SlotSource source, uint64_t seq, void* wire_out, size_t capacity) {
  const char* what = kind == LSHMOE_COMBINE ? "combine encode" : "dispatch backward encode";
  const PairShape& s = ctx.shape;
  if (!s.valid) return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the context holds no dispatch", what);
  lshmoe_plan_t p;
  LSHMOE_RETURN_IF_ERROR(plan(s.n_rows, s.row_elems, s.dtype, &p));
  if (bool(p.compressed) != s.compressed || p.slots != s.slots) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "%s: the dispatch was decoded under another configuration "
                "(compressed %d with %zu slots there, %d with %zu here)",
                what, int(s.compressed), s.slots, p.compressed, p.slots);
  }
  const size_t bytes = s.wire_bytes(kind);
  if (bytes > 0 && (rows == nullptr || wire_out == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: rows and wire are required", what);
  }
  if (capacity < bytes) {
    return fail(LSHMOE_ERR_BUFFER_TOO_SMALL, "%s: wire buffer holds %zu bytes, %zu needed", what,
                capacity, bytes);
  }
  char* out = static_cast<char*>(wire_out);
  if (!s.compressed) {
    if (bytes > 0) memcpy(out, rows, bytes);
  } else {
    const wire::Layout layout = s.layout(kind);
    const size_t row_bytes = s.row_elems * dtype_size(s.dtype);
    char* slots = out + layout.slots_offset;
    if (source == SlotSource::kSlots) {
      // The used slots, then zeros: equal messages are equal bytes.
      memcpy(slots, rows, s.used_slots * row_bytes);
      memset(slots + s.used_slots * row_bytes, 0, (s.slots - s.used_slots) * row_bytes);
    } else {
      build_slot_index(ctx.assignment.data(), s.n_rows, s.used_slots, &slot_index_);
      if (source == SlotSource::kMeansOfRows) {
        slot_means(*kernels_, pool_, s.dtype, rows, s.row_elems, slot_index_, s.slots, slots);
      } else {
        scale_slots(*kernels_, pool_, s.dtype, rows, s.row_elems, slot_index_, s.slots,
                    SlotScale::kOverCount, slots);
      }
    }
    wire::zero_tail(out, layout, s.slots * row_bytes);
    seal(wire::make_header(kind, s.dtype, s.n_rows, s.row_elems, s.slots, s.used_slots, seq), out,
         layout);
  }
  stats_.logical_bytes += s.logical_bytes();
  stats_.wire_bytes += bytes;
  return LSHMOE_SUCCESS;
}

Status CpuCodec::combine_decode(const OriginContext& ctx, const void* wire_in, size_t size,
                                uint64_t expected_seq, void* rows_out) {
  return decode_compensated(LSHMOE_COMBINE, ctx, wire_in, size, expected_seq, rows_out);
}

Status CpuCodec::decode_compensated(lshmoe_kind_t kind, const OriginContext& ctx,
                                    const void* wire_in, size_t size, uint64_t expected_seq,
                                    void* rows_out) {
  const bool forward = kind == LSHMOE_COMBINE;
  const char* what = forward ? "combine decode" : "dispatch backward decode";
  const PairShape& s = ctx.shape;
  if (!s.valid) return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the context holds no dispatch", what);
  if (s.logical_bytes() > 0 && (wire_in == nullptr || rows_out == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: wire and rows_out are required", what);
  }
  if (!s.compressed) return copy_raw(what, wire_in, size, s.logical_bytes(), rows_out);
  const float alpha = float(config_.compensate);
  // The residual buffer holds one of the two: the dispatch's residuals until
  // the combine backward replaces them with g - M.
  if (forward && ctx.holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "%s: the combine's backward already ran on this pair (its residuals are gone)",
                what);
  }
  if (!forward && alpha != 0.0f && !ctx.holds_gradient) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the combine's backward has not run on this pair",
                what);
  }
  const wire::Expected want{kind, s.n_rows, s.row_elems, s.dtype, s.slots, expected_seq};
  wire::Header h;
  LSHMOE_RETURN_IF_ERROR(check_message(wire_in, size, want, &h));
  if (h.used_slots != s.used_slots) {
    return fail(LSHMOE_ERR_WIRE_BAD_SLOTS, "%s: message has %u used slots, the dispatch had %u",
                what, h.used_slots, s.used_slots);
  }
  compensate_rows(
      *kernels_, pool_, s.dtype, static_cast<const char*>(wire_in) + s.layout(kind).slots_offset,
      ctx.assignment.data(), ctx.residual.data(), alpha, s.n_rows, s.row_elems, rows_out);
  return LSHMOE_SUCCESS;
}

lshmoe_stats_t CpuCodec::stats() const {
  return stats_;
}

void CpuCodec::reset_stats() {
  stats_ = lshmoe_stats_t{};
}

Status CpuCodec::combine_encode_regrouped(const ExpertContext& ctx, const void* rows, uint64_t seq,
                                          void* wire_out, size_t capacity, Grouping* kept) {
  const PairShape& s = ctx.shape;
  if (!s.valid) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "combine encode: the context holds no dispatch");
  }
  if (!s.compressed) return encode_combine(ctx, rows, seq, wire_out, capacity, false);
  // The same plan as the dispatch's (n rows, same budget): its own groups.
  LSHMOE_RETURN_IF_ERROR(dispatch_encode(rows, s.n_rows, s.row_elems, s.dtype, seq, wire_out,
                                         capacity, &regroup_origin_));
  if (kept != nullptr) {
    kept->assignment = regroup_origin_.assignment;
    kept->used_slots = regroup_origin_.shape.used_slots;
  }
  return LSHMOE_SUCCESS;
}

Status CpuCodec::combine_decode_regrouped(const OriginContext& ctx, const void* wire_in,
                                          size_t size, uint64_t expected_seq, void* rows_out,
                                          Grouping* kept) {
  const PairShape& s = ctx.shape;
  if (!s.valid) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "combine decode: the context holds no dispatch");
  }
  if (!s.compressed) return combine_decode(ctx, wire_in, size, expected_seq, rows_out);
  if (wire_in == nullptr || rows_out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine decode: wire and rows_out are required");
  }
  // Every part of the message is checked before a row is written.
  wire::Header h;
  LSHMOE_RETURN_IF_ERROR(read_assignment(wire_in, size, s, expected_seq, &regroup_expert_, &h));
  const wire::Layout layout = s.layout(LSHMOE_DISPATCH);
  compensate_rows(*kernels_, pool_, s.dtype,
                  static_cast<const char*>(wire_in) + layout.slots_offset,
                  regroup_expert_.assignment.data(), ctx.residual.data(), float(config_.compensate),
                  s.n_rows, s.row_elems, rows_out);
  if (kept != nullptr) {
    kept->assignment = regroup_expert_.assignment;
    kept->used_slots = h.used_slots;
  }
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::cpu
