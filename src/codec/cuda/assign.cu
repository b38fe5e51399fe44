#include "codec/cuda/assign.h"

#include <cub/device/device_scan.cuh>
#include <cub/device/device_segmented_radix_sort.cuh>

#include <cfloat>

#include "codec/cuda/cuda_check.h"
#include "codec/lsh_math.h"

namespace lshmoe::cuda {
namespace {

constexpr uint64_t kNonFiniteKey = ~uint64_t(0);
constexpr int kThreads = 256;
// cuBLAS's recommended workspace for Hopper.
constexpr size_t kBlasWorkspace = size_t(32) << 20;

int blocks_for(uint32_t n) {
  const uint32_t b = (n + kThreads - 1) / kThreads;
  return int(b == 0 ? 1 : (b < 8192 ? b : 8192));
}

#define FOR_ROWS(i, n) \
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += gridDim.x * blockDim.x)

__device__ __forceinline__ bool compressed_row(const Segments& s, uint32_t i, int* m) {
  *m = segment_of_row(s, i);
  return s.slots[*m] > 0;
}

__global__ void projection_kernel(ProjectionSpec spec, int tables, int dim, uint32_t dtype,
                                  void* out) {
  const uint32_t row_elems = spec.row_elems;
  const uint32_t total = uint32_t(tables * dim) * row_elems;
  FOR_ROWS(i, total) {
    const uint32_t r = i / row_elems, k = i % row_elems;
    const float v = projection_value(spec, r / uint32_t(dim), r % uint32_t(dim), k);
    store_elem(DType(dtype), out, i, round_to(DType(dtype), v));
  }
}

// Raw segments sort nothing: their ranges are empty.
__global__ void segment_ranges(Segments s, uint32_t* begin, uint32_t* end) {
  const int m = threadIdx.x;
  if (m < s.count) {
    begin[m] = s.row_begin[m];
    end[m] = s.slots[m] > 0 ? s.row_begin[m + 1] : s.row_begin[m];
  }
}

__global__ void finite_rows(Segments s, const float* y, int cols, uint8_t* finite) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    float sum = 0.0f;  // NaN iff some coordinate is NaN or infinite, as on the CPU
    for (int c = 0; c < cols; ++c) sum = __fadd_rn(sum, __fmul_rn(y[size_t(i) * cols + c], 0.0f));
    finite[i] = sum == 0.0f;
  }
}

// mean[m][c] over the finite rows of compressed segment m, in double: one
// block per (segment, column), each thread a contiguous run of rows, then a
// fixed tree (deterministic; the CPU's sequential sum can differ in the last
// bits, which may move a rare key).
__global__ void column_means(Segments s, const float* y, int cols, const uint8_t* finite,
                             double* mean) {
  const int m = blockIdx.y, c = blockIdx.x;
  __shared__ double sums[kThreads];
  __shared__ uint32_t counts[kThreads];
  double acc = 0.0;
  uint32_t count = 0;
  if (s.slots[m] > 0) {
    const uint32_t n = s.rows[m], per = (n + kThreads - 1) / kThreads;
    const uint32_t begin = s.row_begin[m] + threadIdx.x * per;
    const uint32_t end = begin + per < s.row_begin[m + 1] ? begin + per : s.row_begin[m + 1];
    for (uint32_t i = begin; i < end; ++i) {
      if (!finite[i]) continue;
      acc += y[size_t(i) * cols + c];
      ++count;
    }
  }
  sums[threadIdx.x] = acc;
  counts[threadIdx.x] = count;
  __syncthreads();
  for (int w = kThreads / 2; w > 0; w /= 2) {
    if (int(threadIdx.x) < w) {
      sums[threadIdx.x] += sums[threadIdx.x + w];
      counts[threadIdx.x] += counts[threadIdx.x + w];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) mean[size_t(m) * cols + c] = counts[0] ? sums[0] / counts[0] : 0.0;
}

__global__ void center_and_hash(Segments s, float* y, int cols, int tables, int dim, int key_bits,
                                bool center, const double* mean, uint8_t* finite, uint64_t* keys,
                                uint32_t* values) {
  const int bits = code_bits(dim);
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (!compressed_row(s, i, &m)) continue;
    float* row = y + size_t(i) * cols;
    if (center) {
      for (int c = 0; c < cols; ++c) row[c] = __fsub_rn(row[c], float(mean[size_t(m) * cols + c]));
    }
    // Finite after centring, as the CPU decides (the mean used the flags from before).
    float sum = 0.0f;
    for (int c = 0; c < cols; ++c) sum = __fadd_rn(sum, __fmul_rn(row[c], 0.0f));
    finite[i] = sum == 0.0f;
    uint64_t key = 0;
    for (int t = 0; t < tables; ++t) {
      key = key_with_code(key, cross_polytope_code(row + t * dim, dim), t, tables, bits);
    }
    // Non-finite rows sort last, apart (a 64-bit key of all ones joins its neighbour).
    if (!finite[i]) {
      key = kNonFiniteKey;
    } else if (key == kNonFiniteKey) {
      key = kNonFiniteKey - 1;
    }
    keys[i] = key;
    values[i] = i;
  }
}

__global__ void key_histograms(Segments s, const uint64_t* keys, int key_bits, uint32_t* hist,
                               uint32_t* nonfinite) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (!compressed_row(s, i, &m)) continue;
    if (keys[i] == kNonFiniteKey) {
      atomicAdd(&nonfinite[m], 1u);
    } else if (i > s.row_begin[m]) {
      atomicAdd(&hist[m * 65 + first_differing_bit(keys[i - 1], keys[i], key_bits)], 1u);
    }
  }
}

// Per segment: the longest prefix within the budget (non-finite rows share
// a slot of their own, as on the CPU).
__global__ void choose_prefix(Segments s, const uint32_t* hist, const uint32_t* nonfinite,
                              int key_bits, int* prefix, uint32_t* finite_groups, uint32_t* used) {
  const int m = threadIdx.x;
  if (m >= s.count || s.slots[m] == 0) return;
  const uint32_t n = s.rows[m], z = nonfinite[m], k = s.slots[m];
  if (z > 0 && (k < 2 || z == n)) {
    prefix[m] = -1;  // every row in slot 0
    finite_groups[m] = 0;
    used[m] = 1;
    return;
  }
  const uint32_t budget = z > 0 ? k - 1 : k;
  uint64_t groups = 1;
  int best = 0;
  for (int l = 1; l <= key_bits; ++l) {
    groups += hist[m * 65 + l - 1];
    if (groups > budget) break;
    best = l;
  }
  uint64_t g = 1;
  for (int p = 0; p < best; ++p) g += hist[m * 65 + p];
  prefix[m] = best;
  finite_groups[m] = uint32_t(g);
  used[m] = uint32_t(g) + (z > 0 ? 1u : 0u);
}

__global__ void boundaries(Segments s, const uint64_t* keys, int key_bits, const int* prefix,
                           uint32_t* flags) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    uint32_t f = 0;
    if (compressed_row(s, i, &m) && prefix[m] >= 0 && i > s.row_begin[m] &&
        keys[i] != kNonFiniteKey) {
      f = first_differing_bit(keys[i - 1], keys[i], key_bits) < prefix[m];
    }
    flags[i] = f;
  }
}

__global__ void assign_groups(Segments s, const uint64_t* keys, const uint32_t* rows,
                              const uint32_t* scan, const int* prefix,
                              const uint32_t* finite_groups, uint32_t* assignment) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (!compressed_row(s, i, &m)) continue;
    uint32_t a = 0;
    if (prefix[m] >= 0) {
      a = keys[i] == kNonFiniteKey ? finite_groups[m] : scan[i] - scan[s.row_begin[m]];
    }
    assignment[rows[i]] = a;
  }
}

// means[s][c] (and counts[s]) over the rows of slot s, summed in ascending
// row order in double as on the CPU; norms[s] = |means[s]|^2 (float).
__global__ void slot_projected_means(Segments s, const float* y, int cols, SlotIndex index,
                                     const uint32_t* used, float* means, uint32_t* counts,
                                     float* norms) {
  const uint32_t slot = blockIdx.x;
  const int m = segment_of_slot(s, slot);
  const uint32_t local = slot - s.slot_begin[m];
  const uint32_t begin = index.offsets[slot], end = index.offsets[slot + 1];
  const bool live = local < used[m] && end > begin;
  for (int c = threadIdx.x; c < cols; c += blockDim.x) {
    double acc = 0.0;
    for (uint32_t k = begin; k < end; ++k) acc += y[size_t(index.members[k]) * cols + c];
    means[size_t(slot) * cols + c] = live ? float(acc * (1.0 / double(end - begin))) : 0.0f;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    counts[slot] = end - begin;
    float norm = 0.0f;
    for (int c = 0; c < cols; ++c) {
      const float v = means[size_t(slot) * cols + c];
      norm = __fadd_rn(norm, __fmul_rn(v, v));
    }
    norms[slot] = live ? norm : INFINITY;
  }
}

// Spare-slot candidates: rows of slots of two or more, by their squared
// distance to the slot's projected mean (non-positive or NaN: no candidate).
__global__ void spare_candidates(Segments s, const float* y, int cols, const uint32_t* assignment,
                                 const float* means, const uint32_t* counts, float* key,
                                 uint32_t* value, uint32_t* candidates) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (!compressed_row(s, i, &m)) continue;
    const uint32_t slot = s.slot_begin[m] + assignment[i];
    float r = -1.0f;
    if (counts[slot] >= 2) {
      float acc = 0.0f;
      for (int c = 0; c < cols; ++c) {
        const float d = __fsub_rn(y[size_t(i) * cols + c], means[size_t(slot) * cols + c]);
        acc = __fadd_rn(acc, __fmul_rn(d, d));
      }
      if (acc > 0.0f) {
        r = acc;
        atomicAdd(&candidates[m], 1u);
      }
    }
    key[i] = r;
    value[i] = i;
  }
}

__global__ void mark_spares(Segments s, const uint32_t* sorted_rows, const uint32_t* used,
                            const uint32_t* candidates, uint8_t* chosen) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (!compressed_row(s, i, &m)) continue;
    const uint32_t room = s.slots[m] > used[m] ? s.slots[m] - used[m] : 0;
    const uint32_t spare = room < candidates[m] ? room : candidates[m];
    if (i - s.row_begin[m] < spare) chosen[sorted_rows[i]] = 1;
  }
}

__global__ void widen(const uint8_t* chosen, uint32_t n, uint32_t* out) {
  FOR_ROWS(i, n) out[i] = chosen[i];
}

// Chosen rows become singletons numbered after the groups, in row order.
__global__ void apply_spares(Segments s, const uint8_t* chosen, const uint32_t* scan,
                             const uint32_t* used, uint32_t* assignment) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (!compressed_row(s, i, &m) || !chosen[i]) continue;
    const uint32_t before = s.row_begin[m] > 0 ? scan[s.row_begin[m] - 1] : 0;
    assignment[i] = used[m] + (scan[i] - 1 - before);
  }
}

__global__ void count_spares(Segments s, const uint32_t* candidates, uint32_t* used) {
  const int m = threadIdx.x;
  if (m >= s.count || s.slots[m] == 0) return;
  const uint32_t room = s.slots[m] > used[m] ? s.slots[m] - used[m] : 0;
  used[m] += room < candidates[m] ? room : candidates[m];
}

__global__ void mark_used_slots(Segments s, const uint32_t* assignment, uint32_t* flags) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (compressed_row(s, i, &m)) flags[s.slot_begin[m] + assignment[i]] = 1;
  }
}

__global__ void remap_slots(Segments s, const uint32_t* scan, uint32_t* assignment) {
  FOR_ROWS(i, s.row_begin[s.count]) {
    int m;
    if (!compressed_row(s, i, &m)) continue;
    const uint32_t base = s.slot_begin[m];
    assignment[i] = scan[base + assignment[i]] - scan[base];
  }
}

__global__ void count_used(Segments s, const uint32_t* scan, uint32_t* used) {
  const int m = threadIdx.x;
  if (m < s.count && s.slots[m] > 0) used[m] = scan[s.slot_begin[m + 1]] - scan[s.slot_begin[m]];
}

// Every finite row to its nearest slot mean (ties: lowest slot; a NaN score
// never wins); non-finite rows keep their slot.
__global__ void nearest_slots(Segments s, const float* y, int cols, const uint8_t* finite,
                              const float* means, const float* norms, const uint32_t* used,
                              uint32_t* assignment) {
  const int m = blockIdx.y;
  if (s.slots[m] == 0) return;
  const uint32_t i = s.row_begin[m] + blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= s.row_begin[m + 1] || !finite[i]) return;
  const float* row = y + size_t(i) * cols;
  const float* base = means + size_t(s.slot_begin[m]) * cols;
  // As the CPU kernel: the lowest slot of the smallest score, slot 0 when
  // every score is infinite or NaN.
  float best = INFINITY;
  uint32_t best_k = 0;
  for (uint32_t k = 0; k < used[m]; ++k) {
    float dot = 0.0f;
    for (int c = 0; c < cols; ++c) dot = __fmaf_rn(row[c], base[size_t(k) * cols + c], dot);
    const float score = __fmaf_rn(-2.0f, dot, norms[s.slot_begin[m] + k]);
    if (score < best) {
      best = score;
      best_k = k;
    }
  }
  assignment[i] = best_k;
}

// The same search for up to kSearchMaxCols coordinates (the default 6 x 8 =
// 48), with each thread's R rows in registers and the slot means broadcast
// from shared memory four coordinates at a time, kSearchSlots slots per
// tile: one shared load per 4R multiply-adds. PADDED is cols rounded up to
// 16; the padding is zeros, and fma(0, 0, dot) leaves the score as it is,
// so the scores and results are those of nearest_slots.
constexpr int kSearchThreads = 128, kSearchSlots = 64, kSearchMaxCols = 64, kSearchRows = 2;

template <int PADDED, int R>
__global__ void __launch_bounds__(kSearchThreads)
    nearest_slots_in_registers(Segments s, const float* y, int cols, const uint8_t* finite,
                               const float* means, const float* norms, const uint32_t* used,
                               uint32_t* assignment) {
  __shared__ float4 slots[kSearchSlots * PADDED / 4];
  __shared__ float slot_norms[kSearchSlots];
  const int m = blockIdx.y;
  if (s.slots[m] == 0) return;
  const uint32_t end = s.row_begin[m + 1];
  const uint32_t first = s.row_begin[m] + blockIdx.x * uint32_t(kSearchThreads * R);
  if (first >= end) return;  // the whole block: no barrier is left waiting
  float row[R][PADDED];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const uint32_t i = first + uint32_t(r * kSearchThreads) + threadIdx.x;
#pragma unroll
    for (int c = 0; c < PADDED; ++c)
      row[r][c] = i < end && c < cols ? y[size_t(i) * cols + c] : 0.0f;
  }
  const float* base = means + size_t(s.slot_begin[m]) * cols;
  const uint32_t count = used[m];
  float best[R];
  uint32_t best_k[R];
#pragma unroll
  for (int r = 0; r < R; ++r) {
    best[r] = INFINITY;
    best_k[r] = 0;
  }
  float* flat = reinterpret_cast<float*>(slots);
  for (uint32_t k0 = 0; k0 < count; k0 += kSearchSlots) {
    const uint32_t n = count - k0 < uint32_t(kSearchSlots) ? count - k0 : uint32_t(kSearchSlots);
    __syncthreads();
    for (uint32_t e = threadIdx.x; e < n * uint32_t(PADDED); e += blockDim.x) {
      const uint32_t kk = e / PADDED, c = e % PADDED;
      flat[e] = c < uint32_t(cols) ? base[size_t(k0 + kk) * cols + c] : 0.0f;
    }
    for (uint32_t e = threadIdx.x; e < n; e += blockDim.x) {
      slot_norms[e] = norms[s.slot_begin[m] + k0 + e];
    }
    __syncthreads();
    for (uint32_t kk = 0; kk < n; ++kk) {
      float dot[R];
#pragma unroll
      for (int r = 0; r < R; ++r) dot[r] = 0.0f;
#pragma unroll
      for (int c4 = 0; c4 < PADDED / 4; ++c4) {
        const float4 v = slots[kk * (PADDED / 4) + c4];
#pragma unroll
        for (int r = 0; r < R; ++r) {
          dot[r] = __fmaf_rn(row[r][4 * c4 + 0], v.x, dot[r]);
          dot[r] = __fmaf_rn(row[r][4 * c4 + 1], v.y, dot[r]);
          dot[r] = __fmaf_rn(row[r][4 * c4 + 2], v.z, dot[r]);
          dot[r] = __fmaf_rn(row[r][4 * c4 + 3], v.w, dot[r]);
        }
      }
#pragma unroll
      for (int r = 0; r < R; ++r) {
        const float score = __fmaf_rn(-2.0f, dot[r], slot_norms[kk]);
        if (score < best[r]) {
          best[r] = score;
          best_k[r] = k0 + kk;
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < R; ++r) {
    const uint32_t i = first + uint32_t(r * kSearchThreads) + threadIdx.x;
    if (i < end && finite[i]) assignment[i] = best_k[r];
  }
}

template <int PADDED>
void launch_search(const Segments& seg, uint32_t max_rows, const float* y, int cols,
                   const uint8_t* finite, const float* means, const float* norms,
                   const uint32_t* used, uint32_t* assignment, cudaStream_t stream) {
  constexpr uint32_t rows_per_block = kSearchThreads * kSearchRows;
  const dim3 grid((max_rows + rows_per_block - 1) / rows_per_block, seg.count);
  nearest_slots_in_registers<PADDED, kSearchRows>
      <<<grid, kSearchThreads, 0, stream>>>(seg, y, cols, finite, means, norms, used, assignment);
}

}  // namespace

Status build_projection(const ProjectionSpec& spec, int tables, int dim, DType dtype, void* out,
                        cudaStream_t stream) {
  const uint32_t total = uint32_t(tables * dim) * spec.row_elems;
  projection_kernel<<<blocks_for(total), kThreads, 0, stream>>>(spec, tables, dim, uint32_t(dtype),
                                                                out);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

SlotAssigner::~SlotAssigner() {
  if (blas_ != nullptr) cublasDestroy(blas_);
  if (blas_workspace_ != nullptr) cudaFree(blas_workspace_);
}

Status SlotAssigner::init(const AssignParams& params) {
  p_ = params;
  LSHMOE_CUBLAS_RETURN(cublasCreate(&blas_));
  // cuBLAS's own workspace, so that a captured GEMM allocates nothing.
  LSHMOE_CUDA_RETURN(cudaMalloc(&blas_workspace_, kBlasWorkspace));
  LSHMOE_CUBLAS_RETURN(cublasSetWorkspace(blas_, blas_workspace_, kBlasWorkspace));
  return LSHMOE_SUCCESS;
}

Status SlotAssigner::compact(const Segments& seg, uint32_t* assignment, uint32_t* used,
                             uint32_t* flags, uint32_t* scan, void* temp, size_t temp_bytes,
                             cudaStream_t stream) {
  const uint32_t n = seg.row_begin[seg.count], slots = seg.slot_begin[seg.count];
  LSHMOE_CUDA_RETURN(cudaMemsetAsync(flags, 0, (slots + 1) * sizeof(uint32_t), stream));
  mark_used_slots<<<blocks_for(n), kThreads, 0, stream>>>(seg, assignment, flags);
  LSHMOE_CUDA_LAUNCHED();
  LSHMOE_CUDA_RETURN(
      cub::DeviceScan::ExclusiveSum(temp, temp_bytes, flags, scan, int(slots + 1), stream));
  remap_slots<<<blocks_for(n), kThreads, 0, stream>>>(seg, scan, assignment);
  LSHMOE_CUDA_LAUNCHED();
  count_used<<<1, kMaxSegments, 0, stream>>>(seg, scan, used);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status SlotAssigner::run(const Segments& seg, const void* rows, const void* projection,
                         uint32_t* assignment, uint32_t* used, cudaStream_t stream) {
  const uint32_t n = seg.row_begin[seg.count], slots = seg.slot_begin[seg.count];
  const int cols = p_.tables * p_.dim, m_count = seg.count;
  if (n == 0 || slots == 0) return LSHMOE_SUCCESS;

  // Finite keys lie below 2^key_bits and the non-finite key has bit key_bits
  // set, so the sort needs only the bits below key_bits + 1.
  const int sort_bits = p_.key_bits < 64 ? p_.key_bits + 1 : 64;
  // Scratch sizes: the largest CUB temporary of the sequence.
  size_t temp_bytes = 0, b = 0;
  LSHMOE_CUDA_RETURN(cub::DeviceSegmentedRadixSort::SortPairs(
      nullptr, b, (uint64_t*)nullptr, (uint64_t*)nullptr, (uint32_t*)nullptr, (uint32_t*)nullptr,
      int(n), m_count, (uint32_t*)nullptr, (uint32_t*)nullptr, 0, sort_bits, stream));
  temp_bytes = b > temp_bytes ? b : temp_bytes;
  LSHMOE_CUDA_RETURN(cub::DeviceSegmentedRadixSort::SortPairsDescending(
      nullptr, b, (float*)nullptr, (float*)nullptr, (uint32_t*)nullptr, (uint32_t*)nullptr, int(n),
      m_count, (uint32_t*)nullptr, (uint32_t*)nullptr, 0, 32, stream));
  temp_bytes = b > temp_bytes ? b : temp_bytes;
  const uint32_t scan_items = (n > slots ? n : slots) + 1;
  LSHMOE_CUDA_RETURN(cub::DeviceScan::InclusiveSum(nullptr, b, (uint32_t*)nullptr,
                                                   (uint32_t*)nullptr, int(scan_items), stream));
  temp_bytes = b > temp_bytes ? b : temp_bytes;
  LSHMOE_CUDA_RETURN(cub::DeviceScan::ExclusiveSum(nullptr, b, (uint32_t*)nullptr,
                                                   (uint32_t*)nullptr, int(scan_items), stream));
  temp_bytes = b > temp_bytes ? b : temp_bytes;

  arena_.begin();
  arena_.reserve<float>(size_t(n) * cols);         // y
  arena_.reserve<uint8_t>(n);                      // finite
  arena_.reserve<double>(size_t(m_count) * cols);  // column means
  arena_.reserve<uint64_t>(n);                     // keys
  arena_.reserve<uint64_t>(n);                     // sorted keys
  arena_.reserve<uint32_t>(n);                     // rows
  arena_.reserve<uint32_t>(n);                     // sorted rows
  arena_.reserve<uint32_t>(size_t(m_count) * 65);  // histograms
  arena_.reserve<uint32_t>(m_count);               // non-finite counts
  arena_.reserve<int>(m_count);                    // prefixes
  arena_.reserve<uint32_t>(m_count);               // finite groups
  arena_.reserve<uint32_t>(scan_items);            // flags
  arena_.reserve<uint32_t>(scan_items);            // scan
  arena_.reserve<float>(size_t(slots) * cols);     // projected means
  arena_.reserve<uint32_t>(slots);                 // slot counts
  arena_.reserve<float>(slots);                    // norms
  arena_.reserve<float>(n);                        // candidate keys
  arena_.reserve<float>(n);                        // sorted candidate keys
  arena_.reserve<uint32_t>(m_count);               // candidates per segment
  arena_.reserve<uint8_t>(n);                      // chosen
  arena_.reserve<uint32_t>(2 * m_count);           // sort ranges
  arena_.reserve<char>(temp_bytes);
  LSHMOE_RETURN_IF_ERROR(arena_.commit(stream));
  float* y = arena_.take<float>(size_t(n) * cols);
  uint8_t* finite = arena_.take<uint8_t>(n);
  double* col_mean = arena_.take<double>(size_t(m_count) * cols);
  uint64_t* keys = arena_.take<uint64_t>(n);
  uint64_t* keys_sorted = arena_.take<uint64_t>(n);
  uint32_t* row_ids = arena_.take<uint32_t>(n);
  uint32_t* rows_sorted = arena_.take<uint32_t>(n);
  uint32_t* hist = arena_.take<uint32_t>(size_t(m_count) * 65);
  uint32_t* nonfinite = arena_.take<uint32_t>(m_count);
  int* prefix = arena_.take<int>(m_count);
  uint32_t* finite_groups = arena_.take<uint32_t>(m_count);
  uint32_t* flags = arena_.take<uint32_t>(scan_items);
  uint32_t* scan = arena_.take<uint32_t>(scan_items);
  float* means = arena_.take<float>(size_t(slots) * cols);
  uint32_t* counts = arena_.take<uint32_t>(slots);
  float* norms = arena_.take<float>(slots);
  float* cand = arena_.take<float>(n);
  float* cand_sorted = arena_.take<float>(n);
  uint32_t* candidates = arena_.take<uint32_t>(m_count);
  uint8_t* chosen = arena_.take<uint8_t>(n);
  uint32_t* ranges = arena_.take<uint32_t>(2 * m_count);
  void* temp = arena_.take<char>(temp_bytes);
  uint32_t *range_begin = ranges, *range_end = ranges + m_count;

  // 1. Project, centre, hash.
  LSHMOE_RETURN_IF_ERROR(
      hash_rows(seg, rows, projection, y, finite, col_mean, keys, row_ids, stream));

  // 2. Group: sort the keys of each message, histogram of first differing
  // bits, the longest prefix within budget, group numbers by a scan.
  segment_ranges<<<1, kMaxSegments, 0, stream>>>(seg, range_begin, range_end);
  LSHMOE_CUDA_LAUNCHED();
  LSHMOE_CUDA_RETURN(cub::DeviceSegmentedRadixSort::SortPairs(
      temp, temp_bytes, keys, keys_sorted, row_ids, rows_sorted, int(n), m_count, range_begin,
      range_end, 0, sort_bits, stream));
  LSHMOE_CUDA_RETURN(cudaMemsetAsync(hist, 0, size_t(m_count) * 65 * sizeof(uint32_t), stream));
  LSHMOE_CUDA_RETURN(cudaMemsetAsync(nonfinite, 0, m_count * sizeof(uint32_t), stream));
  key_histograms<<<blocks_for(n), kThreads, 0, stream>>>(seg, keys_sorted, p_.key_bits, hist,
                                                         nonfinite);
  LSHMOE_CUDA_LAUNCHED();
  choose_prefix<<<1, kMaxSegments, 0, stream>>>(seg, hist, nonfinite, p_.key_bits, prefix,
                                                finite_groups, used);
  LSHMOE_CUDA_LAUNCHED();
  boundaries<<<blocks_for(n), kThreads, 0, stream>>>(seg, keys_sorted, p_.key_bits, prefix, flags);
  LSHMOE_CUDA_LAUNCHED();
  LSHMOE_CUDA_RETURN(cub::DeviceScan::InclusiveSum(temp, temp_bytes, flags, scan, int(n), stream));
  assign_groups<<<blocks_for(n), kThreads, 0, stream>>>(seg, keys_sorted, rows_sorted, scan, prefix,
                                                        finite_groups, assignment);
  LSHMOE_CUDA_LAUNCHED();

  // Spare slots: the worst-fitting rows of shared slots become singletons.
  if (p_.spare_slots) {
    LSHMOE_RETURN_IF_ERROR(projected_means(seg, y, assignment, used, means, counts, norms, stream));
    LSHMOE_CUDA_RETURN(cudaMemsetAsync(candidates, 0, m_count * sizeof(uint32_t), stream));
    spare_candidates<<<blocks_for(n), kThreads, 0, stream>>>(seg, y, cols, assignment, means,
                                                             counts, cand, row_ids, candidates);
    LSHMOE_CUDA_LAUNCHED();
    // Descending residual; the stable sort keeps ties in row order.
    LSHMOE_CUDA_RETURN(cub::DeviceSegmentedRadixSort::SortPairsDescending(
        temp, temp_bytes, cand, cand_sorted, row_ids, rows_sorted, int(n), m_count, range_begin,
        range_end, 0, 32, stream));
    LSHMOE_CUDA_RETURN(cudaMemsetAsync(chosen, 0, n, stream));
    mark_spares<<<blocks_for(n), kThreads, 0, stream>>>(seg, rows_sorted, used, candidates, chosen);
    LSHMOE_CUDA_LAUNCHED();
    widen<<<blocks_for(n), kThreads, 0, stream>>>(chosen, n, flags);
    LSHMOE_CUDA_LAUNCHED();
    LSHMOE_CUDA_RETURN(
        cub::DeviceScan::InclusiveSum(temp, temp_bytes, flags, scan, int(n), stream));
    apply_spares<<<blocks_for(n), kThreads, 0, stream>>>(seg, chosen, scan, used, assignment);
    LSHMOE_CUDA_LAUNCHED();
    count_spares<<<1, kMaxSegments, 0, stream>>>(seg, candidates, used);
    LSHMOE_CUDA_LAUNCHED();
    LSHMOE_RETURN_IF_ERROR(compact(seg, assignment, used, flags, scan, temp, temp_bytes, stream));
  }

  // 3. Refine: Lloyd steps in projected space.
  uint32_t max_rows = 0;
  for (int m = 0; m < m_count; ++m) max_rows = seg.rows[m] > max_rows ? seg.rows[m] : max_rows;
  for (int it = 0; it < p_.refine; ++it) {
    LSHMOE_RETURN_IF_ERROR(projected_means(seg, y, assignment, used, means, counts, norms, stream));
    if (cols <= 16) {
      launch_search<16>(seg, max_rows, y, cols, finite, means, norms, used, assignment, stream);
    } else if (cols <= 32) {
      launch_search<32>(seg, max_rows, y, cols, finite, means, norms, used, assignment, stream);
    } else if (cols <= 48) {
      launch_search<48>(seg, max_rows, y, cols, finite, means, norms, used, assignment, stream);
    } else if (cols <= kSearchMaxCols) {
      launch_search<64>(seg, max_rows, y, cols, finite, means, norms, used, assignment, stream);
    } else {
      nearest_slots<<<dim3((max_rows + 127) / 128, m_count), 128, 0, stream>>>(
          seg, y, cols, finite, means, norms, used, assignment);
    }
    LSHMOE_CUDA_LAUNCHED();
    LSHMOE_RETURN_IF_ERROR(compact(seg, assignment, used, flags, scan, temp, temp_bytes, stream));
  }
  return LSHMOE_SUCCESS;
}

Status SlotAssigner::hash_rows(const Segments& seg, const void* rows, const void* projection,
                               float* y, uint8_t* finite, double* col_mean, uint64_t* keys,
                               uint32_t* row_ids, cudaStream_t stream) {
  const uint32_t n = seg.row_begin[seg.count];
  const int cols = p_.tables * p_.dim;
  const DType dtype = DType(seg.dtype);
  // y[n][cols] = rows[n][H] * P^T, fp32 accumulation. cublasSetStream drops
  // the handle's workspace for the stream's default pool, which may
  // allocate inside a graph capture: set ours again.
  LSHMOE_CUBLAS_RETURN(cublasSetStream(blas_, stream));
  LSHMOE_CUBLAS_RETURN(cublasSetWorkspace(blas_, blas_workspace_, kBlasWorkspace));
  const cudaDataType_t t = dtype == DType::kBFloat16  ? CUDA_R_16BF
                           : dtype == DType::kFloat16 ? CUDA_R_16F
                                                      : CUDA_R_32F;
  const float one = 1.0f, zero = 0.0f;
  LSHMOE_CUBLAS_RETURN(cublasGemmEx(blas_, CUBLAS_OP_T, CUBLAS_OP_N, cols, int(n),
                                    int(seg.row_elems), &one, projection, t, int(seg.row_elems),
                                    rows, t, int(seg.row_elems), &zero, y, CUDA_R_32F, cols,
                                    CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  finite_rows<<<blocks_for(n), kThreads, 0, stream>>>(seg, y, cols, finite);
  LSHMOE_CUDA_LAUNCHED();
  if (p_.center) {
    column_means<<<dim3(cols, seg.count), kThreads, 0, stream>>>(seg, y, cols, finite, col_mean);
    LSHMOE_CUDA_LAUNCHED();
  }
  center_and_hash<<<blocks_for(n), kThreads, 0, stream>>>(
      seg, y, cols, p_.tables, p_.dim, p_.key_bits, p_.center, col_mean, finite, keys, row_ids);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

Status SlotAssigner::keys(const Segments& seg, const void* rows, const void* projection,
                          uint64_t* keys_out, cudaStream_t stream) {
  const uint32_t n = seg.row_begin[seg.count];
  const int cols = p_.tables * p_.dim;
  if (n == 0 || seg.slot_begin[seg.count] == 0) return LSHMOE_SUCCESS;
  arena_.begin();
  arena_.reserve<float>(size_t(n) * cols);
  arena_.reserve<uint8_t>(n);
  arena_.reserve<double>(size_t(seg.count) * cols);
  arena_.reserve<uint32_t>(n);
  LSHMOE_RETURN_IF_ERROR(arena_.commit(stream));
  float* y = arena_.take<float>(size_t(n) * cols);
  uint8_t* finite = arena_.take<uint8_t>(n);
  double* col_mean = arena_.take<double>(size_t(seg.count) * cols);
  uint32_t* row_ids = arena_.take<uint32_t>(n);
  return hash_rows(seg, rows, projection, y, finite, col_mean, keys_out, row_ids, stream);
}

Status SlotAssigner::projected_means(const Segments& seg, const float* y,
                                     const uint32_t* assignment, const uint32_t* used, float* means,
                                     uint32_t* counts, float* norms, cudaStream_t stream) {
  SlotIndex index;
  LSHMOE_RETURN_IF_ERROR(indexer_.build(seg, assignment, stream, &index));
  const uint32_t slots = seg.slot_begin[seg.count];
  slot_projected_means<<<slots, 64, 0, stream>>>(seg, y, p_.tables * p_.dim, index, used, means,
                                                 counts, norms);
  LSHMOE_CUDA_LAUNCHED();
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::cuda
