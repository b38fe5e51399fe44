#include "codec/cuda/messages.h"

#include <cub/block/block_reduce.cuh>

#include "codec/cuda/cuda_check.h"
#include "codec/wire_format.h"
#include "common/dtype.h"

namespace lshmoe::cuda {
namespace {

constexpr int kThreads = 256;
static_assert(kThreads == int(kRowBlock), "a block spans kRowBlock elements of a row");

__device__ __forceinline__ wire::Layout layout_of(const Segments& s, int m, lshmoe_kind_t kind) {
  return wire::layout(kind, s.rows[m], s.row_elems, DType(s.dtype), s.slots[m]);
}

__device__ __forceinline__ char* message(const Segments& s, int m, void* wire) {
  return static_cast<char*>(wire) + s.wire_offset[m];
}

// Slot means into the slots part (fp32 sums in member order, one rounding,
// singletons copied exactly), zeros for padding slots. Grid: (slots, column blocks).
__global__ void slot_means(Segments s, lshmoe_kind_t kind, const void* rows, SlotIndex index,
                           const uint32_t* used, void* wire) {
  const uint32_t slot = blockIdx.x;
  const int m = segment_of_slot(s, slot);
  if (s.slots[m] == 0) return;
  const uint32_t local = slot - s.slot_begin[m];
  const uint32_t j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= s.row_elems) return;
  const DType t = DType(s.dtype);
  char* out = message(s, m, wire) + layout_of(s, m, kind).slots_offset;
  const size_t at = size_t(local) * s.row_elems + j;
  if (local >= used[m]) {
    store_elem(t, out, at, 0.0f);
    return;
  }
  const uint32_t begin = index.offsets[slot], end = index.offsets[slot + 1];
  if (end - begin == 1) {
    const size_t src = size_t(index.members[begin]) * s.row_elems + j;
    if (dtype_size(t) == 2) {
      static_cast<uint16_t*>(static_cast<void*>(out))[at] = static_cast<const uint16_t*>(rows)[src];
    } else {
      static_cast<float*>(static_cast<void*>(out))[at] = static_cast<const float*>(rows)[src];
    }
    return;
  }
  float acc = 0.0f;
  for (uint32_t k = begin; k < end; ++k) {
    acc = __fadd_rn(acc, load_elem(t, rows, size_t(index.members[k]) * s.row_elems + j));
  }
  const float scale = end > begin ? 1.0f / float(end - begin) : 0.0f;
  store_elem(t, out, at, __fmul_rn(acc, scale));
}

// Headers, the alignment padding after the slots and, for a dispatch, the
// assignment's padding: one block per message.
__global__ void headers_and_padding(Segments s, lshmoe_kind_t kind, const uint32_t* used,
                                    void* wire) {
  const int m = blockIdx.x;
  if (s.slots[m] == 0) return;
  const wire::Layout l = layout_of(s, m, kind);
  char* out = message(s, m, wire);
  const size_t slot_end =
      l.slots_offset + size_t(s.slots[m]) * s.row_elems * dtype_size(DType(s.dtype));
  for (size_t b = slot_end + threadIdx.x; b < l.total_bytes; b += blockDim.x) out[b] = 0;
  if (kind == LSHMOE_DISPATCH) {
    const size_t index_end =
        l.assignment_offset + size_t(s.rows[m]) * wire::index_width(s.slots[m]);
    for (size_t b = index_end + threadIdx.x; b < l.slots_offset; b += blockDim.x) out[b] = 0;
  }
  if (threadIdx.x == 0) {
    wire::Header h =
        wire::make_header(kind, DType(s.dtype), s.rows[m], s.row_elems, s.slots[m], used[m], s.seq);
    wire::seal_header(&h);
    memcpy(out, &h, sizeof(h));
  }
}

// A message answering a dispatch that was rejected: its header zeroed, so
// the origin rejects it in turn (one block per message).
__global__ void reject_unanswered(Segments s, const int* valid, void* wire) {
  const int m = blockIdx.x;
  if (s.slots[m] == 0 || valid[m]) return;
  char* out = message(s, m, wire);
  for (size_t b = threadIdx.x; b < sizeof(wire::Header); b += blockDim.x) out[b] = 0;
}

__device__ __forceinline__ uint32_t row_segment(const Segments& s, uint32_t i, int* m) {
  *m = segment_of_row(s, i);
  return i - s.row_begin[*m];
}

// One block per row: its index, its residual, and its energies (|x|^2 and
// |x - c|^2, for the counters). Raw rows return as a whole block.
__global__ void assignment_and_residuals(Segments s, const void* rows, const uint32_t* assignment,
                                         void* wire, void* residual, double2* row_energy) {
  const uint32_t i = blockIdx.x;
  int m;
  const uint32_t local = row_segment(s, i, &m);
  if (s.slots[m] == 0) return;
  const wire::Layout l = layout_of(s, m, LSHMOE_DISPATCH);
  char* out = message(s, m, wire);
  const uint32_t a = assignment[i];
  if (threadIdx.x == 0) {
    if (wire::index_width(s.slots[m]) == 2) {
      reinterpret_cast<uint16_t*>(out + l.assignment_offset)[local] = uint16_t(a);
    } else {
      reinterpret_cast<uint32_t*>(out + l.assignment_offset)[local] = a;
    }
  }
  const DType t = DType(s.dtype);
  const char* slot = out + l.slots_offset;
  float xx = 0.0f, rr = 0.0f;
  for (uint32_t j = threadIdx.x; j < s.row_elems; j += blockDim.x) {
    const float x = load_elem(t, rows, size_t(i) * s.row_elems + j);
    const float c = load_elem(t, slot, size_t(a) * s.row_elems + j);
    const float r = round_to(t, __fsub_rn(x, c));  // as stored
    store_elem(t, residual, size_t(i) * s.row_elems + j, r);
    xx = __fmaf_rn(x, x, xx);
    rr = __fmaf_rn(r, r, rr);
  }
  using Reduce = cub::BlockReduce<float, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const float row_xx = Reduce(temp).Sum(xx);
  __syncthreads();  // the temporary storage is reused
  const float row_rr = Reduce(temp).Sum(rr);
  if (threadIdx.x == 0) row_energy[i] = make_double2(row_xx, row_rr);
}

// Adds the energies of the compressed rows to totals[0] (input) and
// totals[1] (residual): one block, a fixed order, so the same every run.
// Non-finite energies are left out, as the CPU does: one would make the
// totals useless for good.
__global__ void add_energies(Segments s, const double2* row_energy, double* totals) {
  double xx = 0.0, rr = 0.0;
  for (int m = 0; m < s.count; ++m) {
    if (s.slots[m] == 0) continue;
    for (uint32_t i = s.row_begin[m] + threadIdx.x; i < s.row_begin[m + 1]; i += blockDim.x) {
      const double2 e = row_energy[i];
      if (!isfinite(e.x) || !isfinite(e.y)) continue;
      xx += e.x;
      rr += e.y;
    }
  }
  using Reduce = cub::BlockReduce<double, kThreads>;
  __shared__ typename Reduce::TempStorage temp;
  const double sum_xx = Reduce(temp).Sum(xx);
  __syncthreads();
  const double sum_rr = Reduce(temp).Sum(rr);
  if (threadIdx.x == 0) {
    totals[0] += sum_xx;
    totals[1] += sum_rr;
  }
}

__device__ uint32_t crc32c_table_update(uint32_t crc, const uint8_t* p, size_t n,
                                        const uint32_t* table) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xffu] ^ (crc >> 8);
  return ~crc;
}

// One block per message.
__global__ void check(Segments s, lshmoe_kind_t kind, const void* wire, const uint32_t* expect_used,
                      bool require_checksum, uint32_t* assignment, uint32_t* used,
                      uint8_t* referenced, int* valid, uint64_t* error_word) {
  const int m = blockIdx.x;
  if (s.slots[m] == 0) return;
  __shared__ int status;
  __shared__ wire::Header h;
  __shared__ uint32_t table[256];
  __shared__ int bad_index, bad_slot;
  const char* in = static_cast<const char*>(wire) + s.wire_offset[m];
  const wire::Layout l = layout_of(s, m, kind);
  for (int b = threadIdx.x; b < 256; b += blockDim.x) {
    uint32_t c = uint32_t(b);
    for (int k = 0; k < 8; ++k) c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    table[b] = c;
  }
  if (threadIdx.x == 0) {
    const wire::Expected want{kind, s.rows[m], s.row_elems, DType(s.dtype), s.slots[m], s.seq};
    status = wire::check_header(in, l.total_bytes, want, &h);
    bad_index = 0;
    bad_slot = 0;
  }
  __syncthreads();
  if (threadIdx.x == 0 && status == LSHMOE_SUCCESS) {
    if (h.flags & wire::kFlagPayloadChecksum) {
      const uint32_t crc =
          crc32c_table_update(0, reinterpret_cast<const uint8_t*>(in) + wire::kHeaderBytes,
                              l.total_bytes - wire::kHeaderBytes, table);
      if (crc != h.payload_checksum) status = LSHMOE_ERR_WIRE_BAD_CHECKSUM;
    } else if (require_checksum) {
      status = LSHMOE_ERR_WIRE_BAD_CHECKSUM;
    }
    if (kind != LSHMOE_DISPATCH && status == LSHMOE_SUCCESS && h.used_slots != expect_used[m]) {
      status = LSHMOE_ERR_WIRE_BAD_SLOTS;
    }
  }
  __syncthreads();
  if (kind == LSHMOE_DISPATCH && status == LSHMOE_SUCCESS) {
    const bool narrow = h.index_width == 2;
    for (uint32_t r = threadIdx.x; r < s.rows[m]; r += blockDim.x) {
      const uint32_t a = narrow ? reinterpret_cast<const uint16_t*>(in + l.assignment_offset)[r]
                                : reinterpret_cast<const uint32_t*>(in + l.assignment_offset)[r];
      assignment[s.row_begin[m] + r] = a;
      if (a >= h.used_slots) {
        bad_index = 1;
      } else {
        referenced[s.slot_begin[m] + a] = 1;
      }
    }
    __syncthreads();
    for (uint32_t k = threadIdx.x; k < h.used_slots; k += blockDim.x) {
      if (!referenced[s.slot_begin[m] + k]) bad_slot = 1;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      if (bad_index) {
        status = LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE;
      } else if (bad_slot) {
        status = LSHMOE_ERR_WIRE_BAD_SLOTS;
      }
      used[m] = h.used_slots;
    }
  }
  __syncthreads();
  // A bad dispatch leaves a harmless context: every row in slot 0 of 0 used,
  // so a combine built on it stays in bounds and its receiver rejects it.
  if (kind == LSHMOE_DISPATCH && status != LSHMOE_SUCCESS) {
    for (uint32_t r = threadIdx.x; r < s.rows[m]; r += blockDim.x) {
      assignment[s.row_begin[m] + r] = 0;
    }
    if (threadIdx.x == 0) used[m] = 0;
  }
  if (threadIdx.x == 0) {
    valid[m] = status == LSHMOE_SUCCESS;
    if (status != LSHMOE_SUCCESS) record_decode_error(error_word, status, m);
  }
}

// One element's bytes as one access (buffers are element-aligned).
__device__ __forceinline__ void copy_elem(void* dst, const void* src, size_t bytes) {
  if (bytes == 4) {
    *static_cast<uint32_t*>(dst) = *static_cast<const uint32_t*>(src);
  } else {
    *static_cast<uint16_t*>(dst) = *static_cast<const uint16_t*>(src);
  }
}

__global__ void expand_rows(Segments s, lshmoe_kind_t kind, const void* wire,
                            const uint32_t* assignment, const int* valid, void* out) {
  const uint32_t i = blockIdx.x;
  int m;
  row_segment(s, i, &m);
  if (s.slots[m] == 0 || !valid[m]) return;
  const char* slots =
      static_cast<const char*>(wire) + s.wire_offset[m] + layout_of(s, m, kind).slots_offset;
  const size_t bytes = size_t(s.row_elems) * dtype_size(DType(s.dtype));
  const char* src = slots + size_t(assignment[i]) * bytes;
  char* dst = static_cast<char*>(out) + size_t(i) * bytes;
  // 16-byte copies where both rows allow them (the usual case).
  if (((reinterpret_cast<uintptr_t>(src) | reinterpret_cast<uintptr_t>(dst) | bytes) & 15) == 0) {
    const uint4* s4 = reinterpret_cast<const uint4*>(src);
    uint4* d4 = reinterpret_cast<uint4*>(dst);
    for (size_t k = threadIdx.x; k < bytes / 16; k += blockDim.x) d4[k] = s4[k];
    return;
  }
  for (size_t b = threadIdx.x; b < bytes; b += blockDim.x) dst[b] = src[b];
}

__global__ void compensate_rows(Segments s, lshmoe_kind_t kind, const void* wire,
                                const uint32_t* assignment, const void* residual, float alpha,
                                const int* valid, void* out) {
  const uint32_t i = blockIdx.x;
  int m;
  row_segment(s, i, &m);
  if (s.slots[m] == 0 || !valid[m]) return;
  const DType t = DType(s.dtype);
  const char* slots =
      static_cast<const char*>(wire) + s.wire_offset[m] + layout_of(s, m, kind).slots_offset;
  const size_t a = assignment[i];
  const size_t bytes = dtype_size(t);
  for (uint32_t j = threadIdx.x; j < s.row_elems; j += blockDim.x) {
    const size_t at = size_t(i) * s.row_elems + j;
    const size_t from = a * s.row_elems + j;
    if (alpha == 0.0f) {  // the slot's bytes, as the CPU copies them
      copy_elem(static_cast<char*>(out) + at * bytes, slots + from * bytes, bytes);
      continue;
    }
    // fma(alpha, r, y), as the CPU's vector kernels compute it.
    store_elem(t, out, at, __fmaf_rn(alpha, load_elem(t, residual, at), load_elem(t, slots, from)));
  }
}

// Centroid mode, both ways: slot k of message m <-> expert row
// expert_begin[m] + k; padding slots are zero. Grid: (slots, column blocks).
__global__ void slots_between(Segments s, lshmoe_kind_t kind, bool to_wire, const uint32_t* used,
                              const int* valid, void* wire, void* rows) {
  const uint32_t slot = blockIdx.x;
  const int m = segment_of_slot(s, slot);
  if (s.slots[m] == 0 || (valid != nullptr && !valid[m])) return;
  const uint32_t local = slot - s.slot_begin[m];
  const uint32_t j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= s.row_elems) return;
  const size_t bytes = dtype_size(DType(s.dtype));
  char* in_wire = message(s, m, wire) + layout_of(s, m, kind).slots_offset +
                  (size_t(local) * s.row_elems + j) * bytes;
  char* in_rows =
      static_cast<char*>(rows) + (size_t(s.expert_begin[m] + local) * s.row_elems + j) * bytes;
  char* dst = to_wire ? in_wire : in_rows;
  if (local < used[m]) {
    copy_elem(dst, to_wire ? in_rows : in_wire, bytes);
  } else if (bytes == 4) {
    *reinterpret_cast<uint32_t*>(dst) = 0;
  } else {
    *reinterpret_cast<uint16_t*>(dst) = 0;
  }
}

// One block per row of a compressed message: residual[i] = round(g_i -
// M_a(i)), M the slot means just written to the combine-gradient message.
__global__ void gradient_residuals(Segments s, const void* rows, const uint32_t* assignment,
                                   const void* wire, void* residual) {
  const uint32_t i = blockIdx.x;
  int m;
  row_segment(s, i, &m);
  if (s.slots[m] == 0) return;
  const DType t = DType(s.dtype);
  const char* slot = static_cast<const char*>(wire) + s.wire_offset[m] +
                     layout_of(s, m, LSHMOE_COMBINE_GRAD).slots_offset;
  const uint32_t a = assignment[i];
  for (uint32_t j = threadIdx.x; j < s.row_elems; j += blockDim.x) {
    const float g = load_elem(t, rows, size_t(i) * s.row_elems + j);
    const float c = load_elem(t, slot, size_t(a) * s.row_elems + j);
    store_elem(t, residual, size_t(i) * s.row_elems + j, __fsub_rn(g, c));
  }
}

// Centroid mode, both ways, scaled by the slot's row count (by_count) or
// its inverse: the slots' gradients. Padding slots are zero. Grid: (slots,
// column blocks).
__global__ void scaled_slots(Segments s, lshmoe_kind_t kind, bool to_wire, const uint32_t* used,
                             const int* valid, SlotIndex index, bool by_count, void* wire,
                             void* rows) {
  const uint32_t slot = blockIdx.x;
  const int m = segment_of_slot(s, slot);
  if (s.slots[m] == 0 || (valid != nullptr && !valid[m])) return;
  const uint32_t local = slot - s.slot_begin[m];
  const uint32_t j = blockIdx.y * blockDim.x + threadIdx.x;
  if (j >= s.row_elems) return;
  const DType t = DType(s.dtype);
  char* in_wire = message(s, m, wire) + layout_of(s, m, kind).slots_offset;
  const size_t wire_at = size_t(local) * s.row_elems + j;
  const size_t rows_at = size_t(s.expert_begin[m] + local) * s.row_elems + j;
  float v = 0.0f;
  if (local < used[m]) {
    const float count = float(index.offsets[slot + 1] - index.offsets[slot]);
    const float x = to_wire ? load_elem(t, rows, rows_at) : load_elem(t, in_wire, wire_at);
    v = __fmul_rn(x, by_count ? count : 1.0f / count);
  }
  if (to_wire) {
    store_elem(t, in_wire, wire_at, v);
  } else {
    store_elem(t, rows, rows_at, v);
  }
}

Status write_slots(const Segments& seg, lshmoe_kind_t kind, const void* rows, const uint32_t* used,
                   const SlotIndex& index, void* wire, cudaStream_t stream) {
  const uint32_t slots = seg.slot_begin[seg.count];
  if (slots == 0) return LSHMOE_SUCCESS;
  const dim3 grid(slots, (seg.row_elems + kRowBlock - 1) / kRowBlock);
  slot_means<<<grid, kThreads, 0, stream>>>(seg, kind, rows, index, used, wire);
  LSHMOE_CUDA_LAUNCHED();
  headers_and_padding<<<seg.count, kThreads, 0, stream>>>(seg, kind, used, wire);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

}  // namespace

Status write_dispatch(const Segments& seg, const void* rows, const uint32_t* assignment,
                      const uint32_t* used, const SlotIndex& index, void* wire, void* residual,
                      double2* row_energy, double* energy_totals, cudaStream_t stream) {
  LSHMOE_RETURN_IF_ERROR(write_slots(seg, LSHMOE_DISPATCH, rows, used, index, wire, stream));
  const uint32_t n = seg.row_begin[seg.count];
  if (n == 0) return LSHMOE_SUCCESS;
  // After the slots: residuals are taken against the rounded centroids.
  assignment_and_residuals<<<n, kThreads, 0, stream>>>(seg, rows, assignment, wire, residual,
                                                       row_energy);
  LSHMOE_CUDA_LAUNCHED();
  add_energies<<<1, kThreads, 0, stream>>>(seg, row_energy, energy_totals);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status write_combine(const Segments& seg, const void* rows, const uint32_t* used,
                     const SlotIndex& index, void* wire, cudaStream_t stream) {
  return write_slots(seg, LSHMOE_COMBINE, rows, used, index, wire, stream);
}

Status write_gradient_means(const Segments& seg, const void* grad, const uint32_t* assignment,
                            const uint32_t* used, const SlotIndex& index, void* wire,
                            void* residual, cudaStream_t stream) {
  LSHMOE_RETURN_IF_ERROR(write_slots(seg, LSHMOE_COMBINE_GRAD, grad, used, index, wire, stream));
  const uint32_t n = seg.row_begin[seg.count];
  if (n == 0 || residual == nullptr) return LSHMOE_SUCCESS;
  gradient_residuals<<<n, kThreads, 0, stream>>>(seg, grad, assignment, wire, residual);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status write_input_gradient_means(const Segments& seg, const void* grad, const uint32_t* used,
                                  const SlotIndex& index, void* wire, cudaStream_t stream) {
  return write_slots(seg, LSHMOE_DISPATCH_GRAD, grad, used, index, wire, stream);
}

Status write_scaled_slots(const Segments& seg, const void* slot_rows, const uint32_t* used,
                          const SlotIndex& index, void* wire, cudaStream_t stream) {
  const uint32_t slots = seg.slot_begin[seg.count];
  if (slots == 0) return LSHMOE_SUCCESS;
  const dim3 grid(slots, (seg.row_elems + kRowBlock - 1) / kRowBlock);
  scaled_slots<<<grid, kThreads, 0, stream>>>(seg, LSHMOE_DISPATCH_GRAD, true, used, nullptr,
                                              index, false, wire, const_cast<void*>(slot_rows));
  LSHMOE_CUDA_LAUNCHED();
  headers_and_padding<<<seg.count, kThreads, 0, stream>>>(seg, LSHMOE_DISPATCH_GRAD, used, wire);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status read_scaled_slots(const Segments& seg, const void* wire, const uint32_t* used,
                         const int* valid, const SlotIndex& index, void* out,
                         cudaStream_t stream) {
  const uint32_t slots = seg.slot_begin[seg.count];
  if (slots == 0) return LSHMOE_SUCCESS;
  const dim3 grid(slots, (seg.row_elems + kRowBlock - 1) / kRowBlock);
  scaled_slots<<<grid, kThreads, 0, stream>>>(seg, LSHMOE_COMBINE_GRAD, false, used, valid, index,
                                              true, const_cast<void*>(wire), out);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status copy_slots(const Segments& seg, const void* wire, const uint32_t* used, const int* valid,
                  void* out, cudaStream_t stream) {
  const uint32_t slots = seg.slot_begin[seg.count];
  if (slots == 0) return LSHMOE_SUCCESS;
  const dim3 grid(slots, (seg.row_elems + kRowBlock - 1) / kRowBlock);
  slots_between<<<grid, kThreads, 0, stream>>>(seg, LSHMOE_DISPATCH, false, used, valid,
                                               const_cast<void*>(wire), out);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status write_combine_slots(const Segments& seg, const void* slot_rows, const uint32_t* used,
                           void* wire, cudaStream_t stream) {
  const uint32_t slots = seg.slot_begin[seg.count];
  if (slots == 0) return LSHMOE_SUCCESS;
  const dim3 grid(slots, (seg.row_elems + kRowBlock - 1) / kRowBlock);
  slots_between<<<grid, kThreads, 0, stream>>>(seg, LSHMOE_COMBINE, true, used, nullptr, wire,
                                               const_cast<void*>(slot_rows));
  LSHMOE_CUDA_LAUNCHED();
  headers_and_padding<<<seg.count, kThreads, 0, stream>>>(seg, LSHMOE_COMBINE, used, wire);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status check_messages(const Segments& seg, lshmoe_kind_t kind, const void* wire,
                      const uint32_t* expect_used, bool require_checksum, uint32_t* assignment,
                      uint32_t* used, uint8_t* referenced, int* valid, uint64_t* error_word,
                      cudaStream_t stream) {
  if (seg.count == 0) return LSHMOE_SUCCESS;
  if (kind == LSHMOE_DISPATCH) {
    LSHMOE_CUDA_RETURN(cudaMemsetAsync(referenced, 0, seg.slot_begin[seg.count] + 1, stream));
  }
  check<<<seg.count, kThreads, 0, stream>>>(seg, kind, wire, expect_used, require_checksum,
                                            assignment, used, referenced, valid, error_word);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status expand(const Segments& seg, lshmoe_kind_t kind, const void* wire,
              const uint32_t* assignment, const int* valid, void* out, cudaStream_t stream) {
  const uint32_t n = seg.row_begin[seg.count];
  if (n == 0) return LSHMOE_SUCCESS;
  expand_rows<<<n, kThreads, 0, stream>>>(seg, kind, wire, assignment, valid, out);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status reject_unanswered(const Segments& seg, const int* valid, void* wire, cudaStream_t stream) {
  if (seg.count == 0) return LSHMOE_SUCCESS;
  reject_unanswered<<<seg.count, kThreads, 0, stream>>>(seg, valid, wire);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status compensate(const Segments& seg, lshmoe_kind_t kind, const void* wire,
                  const uint32_t* assignment, const void* residual, float alpha, const int* valid,
                  void* out, cudaStream_t stream) {
  const uint32_t n = seg.row_begin[seg.count];
  if (n == 0) return LSHMOE_SUCCESS;
  compensate_rows<<<n, kThreads, 0, stream>>>(seg, kind, wire, assignment, residual, alpha, valid,
                                              out);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::cuda
