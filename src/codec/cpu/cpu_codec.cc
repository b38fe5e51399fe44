#include "codec/cpu/cpu_codec.h"

#include <algorithm>
#include <cstring>
#include <thread>

#include "codec/plan.h"
#include "codec/wire_format.h"
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

template <typename Index>
bool indices_in_range(const char* data, size_t n, uint32_t used, size_t* bad) {
  for (size_t i = 0; i < n; ++i) {
    if (wire_index<Index>(data, i) >= used) {
      *bad = i;
      return false;
    }
  }
  return true;
}

}  // namespace

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
  return LSHMOE_SUCCESS;
}

lshmoe_plan_t CpuCodec::plan(size_t n_rows, size_t row_elems, DType dtype) const {
  return plan_message(config_, dtype_mask_, n_rows, row_elems, dtype);
}

const Projection& CpuCodec::projection_for(size_t row_elems, DType dtype) {
  const auto key = std::make_pair(row_elems, dtype);
  auto it = projections_.find(key);
  if (it == projections_.end()) {
    it = projections_.emplace(key, Projection{}).first;
    build_projection(uint64_t(config_.seed), int(config_.hashes), int(config_.proj_dim), row_elems,
                     dtype, &it->second);
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
  const lshmoe_plan_t p = plan(n_rows, row_elems, dtype);
  if (ctx == nullptr || (p.logical_bytes > 0 && (rows == nullptr || wire_out == nullptr))) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch encode: rows, wire and ctx are required");
  }
  if (capacity < p.dispatch_bytes) {
    return fail(LSHMOE_ERR_BUFFER_TOO_SMALL,
                "dispatch encode: wire buffer holds %zu bytes, %zu needed", capacity,
                p.dispatch_bytes);
  }
  PairShape shape{true, bool(p.compressed), n_rows, row_elems, dtype, p.slots, 0};
  stats_.logical_bytes += p.logical_bytes;
  stats_.wire_bytes += p.dispatch_bytes;
  if (!p.compressed) {
    if (p.logical_bytes > 0) memcpy(wire_out, rows, p.logical_bytes);
    ctx->shape = shape;
    ++stats_.messages_raw;
    return LSHMOE_SUCCESS;
  }

  const uint32_t used = assign_slots(rows, n_rows, row_elems, dtype, p.slots, ctx);
  write_dispatch(rows, n_rows, row_elems, dtype, p.slots, used, seq, wire_out, ctx);
  shape.used_slots = used;
  ctx->shape = shape;
  ++stats_.messages_compressed;
  return LSHMOE_SUCCESS;
}

uint32_t CpuCodec::assign_slots(const void* rows, size_t n_rows, size_t row_elems, DType dtype,
                                size_t slots, OriginContext* ctx) {
  // 1. Hash centred rows.
  const Projection& proj = projection_for(row_elems, dtype);
  projected_.resize(n_rows * proj.cols);
  keys_.resize(n_rows);
  project_rows(*kernels_, pool_, proj, dtype, rows, n_rows, config_.center, projected_.data());
  hash_keys(projected_.data(), n_rows, proj.cols, proj.tables, proj.dim, keys_.data());
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
  return refine_projected(*kernels_, pool_, projected_.data(), n_rows, proj.cols, used,
                          int(config_.refine), nonfinite_, assignment, projected_scratch_);
}

void CpuCodec::write_dispatch(const void* rows, size_t n_rows, size_t row_elems, DType dtype,
                              size_t slots, uint32_t used, uint64_t seq, void* wire_out,
                              OriginContext* ctx) {
  const wire::Layout layout = wire::layout(LSHMOE_DISPATCH, n_rows, row_elems, dtype, slots);
  char* out = static_cast<char*>(wire_out);
  const uint32_t* assignment = ctx->assignment.data();
  // 4. Centroids, straight into the wire, and the assignment.
  build_slot_index(assignment, n_rows, used, &slot_index_);
  slot_means(*kernels_, pool_, dtype, rows, row_elems, slot_index_, slots,
             out + layout.slots_offset);
  wire::zero_tail(out, layout, slots * row_elems * dtype_size(dtype));
  wire::write_assignment(assignment, n_rows, slots, out, layout);
  // 5. Residuals against the rounded centroids.
  ctx->residual.resize(n_rows * row_elems * dtype_size(dtype));
  residuals(*kernels_, pool_, dtype, rows, n_rows, row_elems, assignment, out + layout.slots_offset,
            ctx->residual.data(), norms_, &stats_.residual_energy, &stats_.input_energy);
  seal(wire::make_header(LSHMOE_DISPATCH, dtype, n_rows, row_elems, slots, used, seq), out, layout);
}

Status CpuCodec::check_message(const void* wire_in, size_t size, const wire::Expected& want,
                               wire::Header* header) const {
  const char* what = want.kind == LSHMOE_DISPATCH ? "dispatch decode" : "combine decode";
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
  if (want.kind == LSHMOE_DISPATCH) {
    size_t bad = 0;
    const bool ok =
        header->index_width == 2
            ? indices_in_range<uint16_t>(payload, want.n_rows, header->used_slots, &bad)
            : indices_in_range<uint32_t>(payload, want.n_rows, header->used_slots, &bad);
    if (!ok) {
      return fail(LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE,
                  "%s: assignment of row %zu is out of range (used_slots %u)", what, bad,
                  header->used_slots);
    }
  }
  return LSHMOE_SUCCESS;
}

Status CpuCodec::dispatch_decode(const void* wire_in, size_t size, size_t n_rows, size_t row_elems,
                                 DType dtype, uint64_t expected_seq, void* rows_out,
                                 ExpertContext* ctx) {
  const lshmoe_plan_t p = plan(n_rows, row_elems, dtype);
  if (ctx == nullptr || (p.logical_bytes > 0 && (wire_in == nullptr || rows_out == nullptr))) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "dispatch decode: wire, rows_out and ctx are required");
  }
  if (!p.compressed) {
    if (size != p.logical_bytes) {
      return fail(
          size < p.logical_bytes ? LSHMOE_ERR_WIRE_TRUNCATED : LSHMOE_ERR_WIRE_SIZE_MISMATCH,
          "dispatch decode: raw message of %zu bytes, expected %zu", size, p.logical_bytes);
    }
    if (size > 0) memcpy(rows_out, wire_in, size);
    ctx->shape = PairShape{true, false, n_rows, row_elems, dtype, 0, 0};
    return LSHMOE_SUCCESS;
  }
  const wire::Expected want{LSHMOE_DISPATCH, n_rows, row_elems, dtype, p.slots, expected_seq};
  wire::Header h;
  LSHMOE_RETURN_IF_ERROR(check_message(wire_in, size, want, &h));
  const wire::Layout layout = wire::layout(LSHMOE_DISPATCH, n_rows, row_elems, dtype, p.slots);
  const char* in = static_cast<const char*>(wire_in);
  ctx->assignment.resize(n_rows);
  if (h.index_width == 2) {
    for (size_t i = 0; i < n_rows; ++i)
      ctx->assignment[i] = wire_index<uint16_t>(in + layout.assignment_offset, i);
  } else {
    memcpy(ctx->assignment.data(), in + layout.assignment_offset, 4 * n_rows);
  }
  expand_rows(pool_, dtype, in + layout.slots_offset, ctx->assignment.data(), n_rows, row_elems,
              rows_out);
  ctx->shape = PairShape{true, true, n_rows, row_elems, dtype, p.slots, h.used_slots};
  return LSHMOE_SUCCESS;
}

Status CpuCodec::combine_encode(const ExpertContext& ctx, const void* rows, uint64_t seq,
                                void* wire_out, size_t capacity) {
  const PairShape& s = ctx.shape;
  if (!s.valid) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "combine encode: the context holds no dispatch");
  }
  const lshmoe_plan_t p = plan(s.n_rows, s.row_elems, s.dtype);
  if (p.logical_bytes > 0 && (rows == nullptr || wire_out == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine encode: rows and wire are required");
  }
  if (capacity < p.combine_bytes) {
    return fail(LSHMOE_ERR_BUFFER_TOO_SMALL,
                "combine encode: wire buffer holds %zu bytes, %zu needed", capacity,
                p.combine_bytes);
  }
  stats_.logical_bytes += p.logical_bytes;
  stats_.wire_bytes += p.combine_bytes;
  if (!s.compressed) {
    if (p.logical_bytes > 0) memcpy(wire_out, rows, p.logical_bytes);
    return LSHMOE_SUCCESS;
  }
  const wire::Layout layout = wire::layout(LSHMOE_COMBINE, s.n_rows, s.row_elems, s.dtype, s.slots);
  char* out = static_cast<char*>(wire_out);
  build_slot_index(ctx.assignment.data(), s.n_rows, s.used_slots, &slot_index_);
  slot_means(*kernels_, pool_, s.dtype, rows, s.row_elems, slot_index_, s.slots,
             out + layout.slots_offset);
  wire::zero_tail(out, layout, s.slots * s.row_elems * dtype_size(s.dtype));
  seal(
      wire::make_header(LSHMOE_COMBINE, s.dtype, s.n_rows, s.row_elems, s.slots, s.used_slots, seq),
      out, layout);
  return LSHMOE_SUCCESS;
}

Status CpuCodec::combine_decode(const OriginContext& ctx, const void* wire_in, size_t size,
                                uint64_t expected_seq, void* rows_out) {
  const PairShape& s = ctx.shape;
  if (!s.valid) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "combine decode: the context holds no dispatch");
  }
  const size_t logical = s.n_rows * s.row_elems * dtype_size(s.dtype);
  if (logical > 0 && (wire_in == nullptr || rows_out == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine decode: wire and rows_out are required");
  }
  if (!s.compressed) {
    if (size != logical) {
      return fail(size < logical ? LSHMOE_ERR_WIRE_TRUNCATED : LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                  "combine decode: raw message of %zu bytes, expected %zu", size, logical);
    }
    if (size > 0) memcpy(rows_out, wire_in, size);
    return LSHMOE_SUCCESS;
  }
  const wire::Expected want{LSHMOE_COMBINE, s.n_rows, s.row_elems, s.dtype, s.slots, expected_seq};
  wire::Header h;
  LSHMOE_RETURN_IF_ERROR(check_message(wire_in, size, want, &h));
  if (h.used_slots != s.used_slots) {
    return fail(LSHMOE_ERR_WIRE_BAD_SLOTS,
                "combine decode: message has %u used slots, the dispatch had %u", h.used_slots,
                s.used_slots);
  }
  const wire::Layout layout = wire::layout(LSHMOE_COMBINE, s.n_rows, s.row_elems, s.dtype, s.slots);
  compensate_rows(*kernels_, pool_, s.dtype,
                  static_cast<const char*>(wire_in) + layout.slots_offset, ctx.assignment.data(),
                  ctx.residual.data(), float(config_.compensate), s.n_rows, s.row_elems, rows_out);
  return LSHMOE_SUCCESS;
}

lshmoe_stats_t CpuCodec::stats() const {
  return stats_;
}

void CpuCodec::reset_stats() {
  stats_ = lshmoe_stats_t{};
}

}  // namespace lshmoe::cpu
