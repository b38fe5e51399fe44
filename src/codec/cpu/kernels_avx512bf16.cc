// AVX-512 BF16 kernels: the projection of bf16 rows with VDPBF16PS (exact
// bf16 products, fp32 sums: twice the multiply-adds per instruction of an
// fp32 FMA, and no conversion of the rows), and bf16 rounding with one
// VCVTNEPS2BF16. The other kernels are the AVX2 loops. As in kernels_avx2.cc,
// only the functions defined under the target pragma use these instructions.
#include <immintrin.h>

// Standard headers sparse_projection_impl.h uses, included here, before the
// target pragma: clang refuses a target attribute on a library template it
// has already seen defined.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "codec/cpu/kernels.h"
#include "codec/cpu/stream_store.h"
#include "common/dtype.h"

#if defined(__clang__)
#pragma clang attribute push(                                                      \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c"))), \
    apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512bf16,avx2,fma,f16c")
// GCC 12's AVX-512 intrinsics fill the unused operand of their masked
// builtins with _mm512_undefined_*(), which its own -Wmaybe-uninitialized
// then reports at every use (GCC bug 105593).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#define LSHMOE_KERNEL_NS avx512bf16_isa
#include "codec/cpu/avx2_vec.h"
#include "codec/cpu/kernels_impl.h"
#include "codec/cpu/sparse_projection_impl.h"

namespace lshmoe::cpu {
namespace {

constexpr size_t kLanes = 32;  // bf16 elements per 512-bit register

// AVX2 lanes, with bf16 rounding in one instruction. Unlike float_to_bf16()
// the instruction takes fp32 subnormals (below 1.2e-38) as zero.
struct Avx512Bf16Vec : Avx2Vec {
  using Avx2Vec::store;
  static void store(DType t, void* base, size_t i, T v) {
    if (t != DType::kBFloat16) {
      Avx2Vec::store(t, base, i, v);
      return;
    }
    _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(base) + i),
                     (__m128i)_mm256_cvtneps_pbh(v));
  }
};

// The sparse projection's accumulator: 16 rows a pass, twice the AVX2
// table's, so each nonzero is one load and one add for 16 rows.
struct SparseLanes16 {
  static constexpr size_t kRows = 16;
  using T = __m512;
  static T loadu(const float* p) { return _mm512_loadu_ps(p); }
  static void storeu(float* p, T v) { _mm512_storeu_ps(p, v); }
  static T add_entry(T acc, const float* x, uint32_t sign) {
    const __m512i flip = _mm512_set1_epi32(int(sign));
    return _mm512_add_ps(
        acc, _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(_mm512_load_ps(x)), flip)));
  }
};

// Sum of the 16 lanes (pairwise). Written out because GCC 12 warns about its
// own _mm512_reduce_add_ps.
float lane_sum(__m512 v) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  for (int width = 8; width > 0; width /= 2)
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  return lanes[0];
}

// Rows [rb, rb + rows) against projection rows [jb, jb + J).
template <size_t R, size_t J>
void project_block(const uint16_t* x, size_t rb, size_t rows, size_t row_elems, const uint16_t* p,
                   size_t p_stride, size_t jb, size_t cols, float* y) {
  __m512 acc[R][J];
  for (size_t r = 0; r < R; ++r)
    for (size_t j = 0; j < J; ++j) acc[r][j] = _mm512_setzero_ps();
  const uint16_t* xr[R];
  for (size_t r = 0; r < R; ++r) xr[r] = x + (rb + (r < rows ? r : 0)) * row_elems;
  const uint16_t* pj[J];
  for (size_t j = 0; j < J; ++j) pj[j] = p + (jb + j) * p_stride;
  size_t k = 0;
  for (; k + kLanes <= row_elems; k += kLanes) {
    __m512i xv[R];
    for (size_t r = 0; r < R; ++r) xv[r] = _mm512_loadu_si512(xr[r] + k);
    for (size_t j = 0; j < J; ++j) {
      const __m512i pv = _mm512_loadu_si512(pj[j] + k);
      for (size_t r = 0; r < R; ++r)
        acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)xv[r], (__m512bh)pv);
    }
  }
  if (k < row_elems) {
    // The projection rows are zero-padded; the message rows are read masked.
    const __mmask32 mask = (__mmask32(1) << (row_elems - k)) - 1;
    __m512i xv[R];
    for (size_t r = 0; r < R; ++r) xv[r] = _mm512_maskz_loadu_epi16(mask, xr[r] + k);
    for (size_t j = 0; j < J; ++j) {
      const __m512i pv = _mm512_loadu_si512(pj[j] + k);
      for (size_t r = 0; r < R; ++r)
        acc[r][j] = _mm512_dpbf16_ps(acc[r][j], (__m512bh)xv[r], (__m512bh)pv);
    }
  }
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < J; ++j) y[(rb + r) * cols + jb + j] = lane_sum(acc[r][j]);
}

void project(DType dtype, const void* x, size_t row_begin, size_t row_end, size_t row_elems,
             const float* p, const uint16_t* p_bf16, size_t p_stride, size_t cols, float* y) {
  if (dtype != DType::kBFloat16 || p_bf16 == nullptr) {
    avx2_kernels().project(dtype, x, row_begin, row_end, row_elems, p, p_bf16, p_stride, cols, y);
    return;
  }
  constexpr size_t R = kProjectRowBlock;
  const uint16_t* rows = static_cast<const uint16_t*>(x);
  for (size_t rb = row_begin; rb < row_end; rb += R) {
    const size_t n = row_end - rb < R ? row_end - rb : R;
    size_t jb = 0;
    for (; jb + 8 <= cols; jb += 8)
      project_block<R, 8>(rows, rb, n, row_elems, p_bf16, p_stride, jb, cols, y);
    for (; jb < cols; jb += kProjectColBlock)
      project_block<R, kProjectColBlock>(rows, rb, n, row_elems, p_bf16, p_stride, jb, cols, y);
  }
}

// The sparse projection of 16-bit rows (bf16, fp16) by word permutes,
// one row at a time, no transpose: a block of the row (at most 64 elements,
// two registers) is one VPERMT2W table, and one permute picks the block's
// entry of 32 outputs at once; the sign is an XOR of the sign bit (exact)
// and the widened words are added to the outputs' fp32 sums, block after
// block, so each output is summed in the contract's order (the bits of
// every other table). Blocks longer than 64 elements take several windows,
// each permute keeping the lanes whose entry lies in its window.
struct alignas(64) Words32 {
  uint16_t w[32];
};

// What the kernel reads per block, built once per projection (per thread).
class PermutePlan {
 public:
  static constexpr size_t kWindow = 64;          // elements of one VPERMT2W table
  static constexpr size_t kGroup = 32;           // outputs of one permute
  static constexpr size_t kMaxAccumulators = 4;  // 64 outputs; more take the pass kernel
  static constexpr size_t kLine = 64;            // bytes of a cache line

  // Rows of at least this many elements: every window lies inside the row.
  static constexpr size_t kMinRowElems = kWindow;

  struct Window {
    uint32_t start;               // first element loaded
    uint32_t check_lo, check_hi;  // lanes of this block: checked for NaN and infinity
    uint32_t take[2];             // per group, the lanes whose entry is in this window
    int32_t fetch[2];             // bytes of the row to prefetch, R rows on (-1: none)
  };

  // Rebuilt only when the projection differs from the last one.
  void prepare(DType dtype, const uint32_t* nonzeros, size_t per_col, size_t block,
               size_t used_cols, size_t row_elems) {
    const size_t entries = per_col * used_cols;
    if (dtype == dtype_ && per_col == per_col_ && block == block_ && used_cols == used_cols_ &&
        row_elems == row_elems_ &&
        std::equal(nonzeros, nonzeros + entries, entries_.begin(), entries_.end())) {
      return;
    }
    dtype_ = dtype;
    per_col_ = per_col;
    block_ = block;
    used_cols_ = used_cols;
    row_elems_ = row_elems;
    entries_.assign(nonzeros, nonzeros + entries);
    windows_ = (block + kWindow - 1) / kWindow;
    groups_ = (used_cols + kGroup - 1) / kGroup;
    window_.assign(per_col * windows_, Window{});
    index_.assign(per_col * windows_ * groups_, Words32{});
    sign_.assign(per_col * groups_, Words32{});
    size_t next_line = 0;
    for (size_t b = 0; b < per_col; ++b) {
      const size_t begin = b * block, len = std::min(block, row_elems - begin);
      for (size_t w = 0; w < windows_; ++w) {
        // A window reaching past the row is moved back to end with it:
        // masked word loads are microcoded on some processors.
        const size_t start = std::min(begin + w * kWindow, row_elems - kWindow);
        const size_t first = std::min(len, w * kWindow), last = std::min(len, first + kWindow);
        const size_t from = begin + first - start, to = begin + last - start;
        Window& window = window_[b * windows_ + w];
        window = Window{
            uint32_t(start), lane_mask(from, to, 0), lane_mask(from, to, 32), {0, 0}, {-1, -1}};
        // Each line of the row is fetched once, by the first window to read it.
        const size_t end_byte = (begin + last) * sizeof(uint16_t);
        for (int32_t& fetch : window.fetch) {
          if (next_line * kLine >= end_byte) break;
          fetch = int32_t(next_line++ * kLine);
        }
      }
      for (size_t j = 0; j < used_cols; ++j) {
        const uint32_t e = nonzeros[j * per_col + b];
        const size_t offset = (e & kSparseIndexMask) - begin, g = j / kGroup;
        const size_t w = offset / kWindow, lane = word_of(j % kGroup);
        const size_t start = window_[b * windows_ + w].start;
        index_[(b * windows_ + w) * groups_ + g].w[lane] = uint16_t((e & kSparseIndexMask) - start);
        window_[b * windows_ + w].take[g] |= 1u << lane;
        sign_[b * groups_ + g].w[lane] = (e & kSparseNegative) ? 0x8000 : 0;
      }
    }
  }

  size_t blocks() const { return per_col_; }
  size_t windows() const { return windows_; }
  const Window* window() const { return window_.data(); }  // [block][window]
  const Words32* index() const { return index_.data(); }   // [block][window][group]
  const Words32* sign() const { return sign_.data(); }     // [block][group]

 private:
  // Lanes of window elements [from, to) in the register holding window
  // elements [base, base + 32).
  static uint32_t lane_mask(size_t from, size_t to, size_t base) {
    uint32_t mask = 0;
    for (size_t e = std::max(from, base); e < std::min(to, base + 32); ++e)
      mask |= 1u << (e - base);
    return mask;
  }
  // The word of a permute's result holding output c of its group: where
  // the widening puts it, lane c of the group's two fp32 accumulators.
  // VPUNPCKL/HWD take words 0-3 / 4-7 of each 128-bit lane (bf16);
  // VCVTPH2PS takes the low / high 16 words in order (fp16).
  size_t word_of(size_t c) const {
    if (dtype_ == DType::kFloat16) return c;
    const size_t acc = c / 16, lane = c % 16;
    return (lane / 4) * 8 + acc * 4 + lane % 4;
  }

  DType dtype_ = DType::kFloat32;
  size_t per_col_ = 0, block_ = 0, used_cols_ = 0, row_elems_ = 0, windows_ = 0, groups_ = 0;
  std::vector<uint32_t> entries_;
  std::vector<Window> window_;
  std::vector<Words32> index_, sign_;
};

// Rows [rb, rb + R) with A accumulators (16 outputs each) per row.
template <size_t R, size_t A, bool kHalf>
void permute_rows(const PermutePlan::Window* window, const Words32* index, const Words32* sign,
                  size_t blocks, size_t windows, const uint16_t* x, size_t rb, size_t row_elems,
                  size_t used_cols, size_t cols, float* y) {
  constexpr size_t G = (A + 1) / 2;
  const uint16_t* row[R];
  for (size_t r = 0; r < R; ++r) row[r] = x + (rb + r) * row_elems;
  __m512 acc[R][A];
  __m512i peak[R];  // the largest word << 1 (exponent first) seen in the row
  for (size_t r = 0; r < R; ++r) {
    peak[r] = _mm512_setzero_si512();
    for (size_t a = 0; a < A; ++a) acc[r][a] = _mm512_setzero_ps();
  }
  for (size_t b = 0; b < blocks; ++b) {
    __m512i picked[R][G];
    for (size_t w = 0; w < windows; ++w, ++window, index += G) {
      for (size_t r = 0; r < R; ++r) {
        // The hardware prefetcher alone keeps this loop at half the read
        // bandwidth.
        const char* ahead = reinterpret_cast<const char*>(row[r] + R * row_elems);
        if (window->fetch[0] >= 0) _mm_prefetch(ahead + window->fetch[0], _MM_HINT_T0);
        if (window->fetch[1] >= 0) _mm_prefetch(ahead + window->fetch[1], _MM_HINT_T0);
        const __m512i lo = _mm512_loadu_si512(row[r] + window->start);
        const __m512i hi = _mm512_loadu_si512(row[r] + window->start + 32);
        peak[r] =
            _mm512_mask_max_epu16(peak[r], window->check_lo, peak[r], _mm512_slli_epi16(lo, 1));
        peak[r] =
            _mm512_mask_max_epu16(peak[r], window->check_hi, peak[r], _mm512_slli_epi16(hi, 1));
        for (size_t g = 0; g < G; ++g) {
          const __m512i p = _mm512_permutex2var_epi16(lo, _mm512_load_si512(index[g].w), hi);
          picked[r][g] = w == 0 ? p : _mm512_mask_mov_epi16(picked[r][g], window->take[g], p);
        }
      }
    }
    for (size_t g = 0; g < G; ++g, ++sign) {
      const __m512i flip = _mm512_load_si512(sign->w);
      for (size_t r = 0; r < R; ++r) {
        const __m512i v = _mm512_xor_si512(picked[r][g], flip);
        __m512 first, second;
        if constexpr (kHalf) {
          first = _mm512_cvtph_ps(_mm512_castsi512_si256(v));
          second = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(v, 1));
        } else {
          first = _mm512_castsi512_ps(_mm512_unpacklo_epi16(_mm512_setzero_si512(), v));
          second = _mm512_castsi512_ps(_mm512_unpackhi_epi16(_mm512_setzero_si512(), v));
        }
        acc[r][2 * g] = _mm512_add_ps(acc[r][2 * g], first);
        if (2 * g + 1 < A) acc[r][2 * g + 1] = _mm512_add_ps(acc[r][2 * g + 1], second);
      }
    }
  }
  // An exponent of all ones (infinity, NaN), shifted past the sign.
  const __m512i nonfinite = _mm512_set1_epi16(short(kHalf ? 0xF800 : 0xFF00));
  for (size_t r = 0; r < R; ++r) {
    float* out = y + (rb + r) * cols;
    alignas(64) float sums[A * 16];
    for (size_t a = 0; a < A; ++a) _mm512_store_ps(sums + 16 * a, acc[r][a]);
    const bool finite = _mm512_cmpge_epu16_mask(peak[r], nonfinite) == 0;
    for (size_t j = 0; j < used_cols; ++j)
      out[j] = finite ? sums[j] : std::numeric_limits<float>::quiet_NaN();
    for (size_t j = used_cols; j < cols; ++j) out[j] = 0.0f;
  }
}

template <size_t A, bool kHalf>
void permute_range(const PermutePlan& plan, const uint16_t* x, size_t row_begin, size_t row_end,
                   size_t row_elems, size_t used_cols, size_t cols, float* y) {
  constexpr size_t R = 2;  // rows a step: more spill the accumulators
  const PermutePlan::Window* window = plan.window();
  const Words32 *index = plan.index(), *sign = plan.sign();
  const size_t blocks = plan.blocks(), windows = plan.windows();
  size_t r = row_begin;
  for (; r + R <= row_end; r += R) {
    permute_rows<R, A, kHalf>(window, index, sign, blocks, windows, x, r, row_elems, used_cols,
                              cols, y);
  }
  for (; r < row_end; ++r) {
    permute_rows<1, A, kHalf>(window, index, sign, blocks, windows, x, r, row_elems, used_cols,
                              cols, y);
  }
}

template <bool kHalf>
void permute_range(const PermutePlan& plan, size_t accumulators, const uint16_t* x,
                   size_t row_begin, size_t row_end, size_t row_elems, size_t used_cols,
                   size_t cols, float* y) {
  using Range =
      void (*)(const PermutePlan&, const uint16_t*, size_t, size_t, size_t, size_t, size_t, float*);
  static constexpr Range kByAccumulators[] = {permute_range<1, kHalf>, permute_range<2, kHalf>,
                                              permute_range<3, kHalf>, permute_range<4, kHalf>};
  kByAccumulators[accumulators - 1](plan, x, row_begin, row_end, row_elems, used_cols, cols, y);
}

// One plan per thread, behind a call the kernels cannot inline (their loops
// then hold plain pointers, not thread-local lookups).
[[gnu::noinline]] PermutePlan& thread_permute_plan() {
  thread_local PermutePlan plan;
  return plan;
}

void project_sparse(DType dtype, const void* x, size_t row_begin, size_t row_end, size_t row_elems,
                    const uint32_t* nonzeros, size_t per_col, size_t block, size_t used_cols,
                    size_t cols, float* y) {
  const size_t accumulators = (used_cols + 15) / 16;
  if (dtype == DType::kFloat32 || accumulators == 0 ||
      accumulators > PermutePlan::kMaxAccumulators || row_elems < PermutePlan::kMinRowElems) {
    avx512bf16_isa::project_sparse_passes<SparseLanes16>(
        dtype, x, row_begin, row_end, row_elems, nonzeros, per_col, block, used_cols, cols, y);
    return;
  }
  PermutePlan& plan = thread_permute_plan();
  plan.prepare(dtype, nonzeros, per_col, block, used_cols, row_elems);
  const auto* rows = static_cast<const uint16_t*>(x);
  if (dtype == DType::kFloat16) {
    permute_range<true>(plan, accumulators, rows, row_begin, row_end, row_elems, used_cols, cols,
                        y);
  } else {
    permute_range<false>(plan, accumulators, rows, row_begin, row_end, row_elems, used_cols, cols,
                         y);
  }
}

// bf16 rows 32 elements (one 512-bit register) a step, in element order:
// each half widened exactly to fp32 (the bits shifted up), and narrowed
// back with one VCVTNE2PS2BF16, the rounding of Avx512Bf16Vec::store, so
// these give the generic kernels' bits. Streamed outputs are stored straight
// from registers.
struct Bf16x32 {
  __m512 lo, hi;  // elements 0-15 and 16-31
};

inline __m512 widen_bf16(__m256i half) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(half), 16));
}

inline Bf16x32 load_bf16x32(const uint16_t* p) {
  const __m512i v = _mm512_loadu_si512(p);
  return {widen_bf16(_mm512_castsi512_si256(v)), widen_bf16(_mm512_extracti64x4_epi64(v, 1))};
}

inline __m512i narrow_bf16x32(__m512 lo, __m512 hi) {
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// 64 bytes to p: non-temporal when streaming (16-byte aligned p, checked by
// the caller), plain otherwise.
inline void store_bf16x32(uint16_t* p, __m512i v, bool stream) {
  if (!stream) {
    _mm512_storeu_si512(p, v);
  } else if ((reinterpret_cast<uintptr_t>(p) & 63) == 0) {
    _mm512_stream_si512(reinterpret_cast<__m512i*>(p), v);
  } else {
    auto* q = reinterpret_cast<__m128i*>(p);
    _mm_stream_si128(q, _mm512_castsi512_si128(v));
    _mm_stream_si128(q + 1, _mm512_extracti32x4_epi32(v, 1));
    _mm_stream_si128(q + 2, _mm512_extracti32x4_epi32(v, 2));
    _mm_stream_si128(q + 3, _mm512_extracti32x4_epi32(v, 3));
  }
}

// Streamed bf16 outputs need 16-byte alignment for the stores above.
inline bool bf16_direct(DType dtype, const void* out, bool stream) {
  return dtype == DType::kBFloat16 && (!stream || (reinterpret_cast<uintptr_t>(out) & 15) == 0);
}

using Generic = Avx512Bf16Vec;

void accumulate(DType dtype, const void* x, size_t n, float* acc) {
  if (dtype != DType::kBFloat16) {
    avx512bf16_isa::accumulate<Generic>(dtype, x, n, acc);
    return;
  }
  const auto* xs = static_cast<const uint16_t*>(x);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Bf16x32 v = load_bf16x32(xs + i);
    _mm512_storeu_ps(acc + i, _mm512_add_ps(_mm512_loadu_ps(acc + i), v.lo));
    _mm512_storeu_ps(acc + i + 16, _mm512_add_ps(_mm512_loadu_ps(acc + i + 16), v.hi));
  }
  if (i < n) avx512bf16_isa::accumulate<Generic>(dtype, xs + i, n - i, acc + i);
}

void store_scaled(DType dtype, const float* acc, float scale, size_t n, void* out) {
  if (dtype != DType::kBFloat16) {
    avx512bf16_isa::store_scaled<Generic>(dtype, acc, scale, n, out);
    return;
  }
  auto* os = static_cast<uint16_t*>(out);
  const __m512 s = _mm512_set1_ps(scale);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const __m512 lo = _mm512_mul_ps(_mm512_loadu_ps(acc + i), s);
    const __m512 hi = _mm512_mul_ps(_mm512_loadu_ps(acc + i + 16), s);
    _mm512_storeu_si512(os + i, narrow_bf16x32(lo, hi));
  }
  if (i < n) avx512bf16_isa::store_scaled<Generic>(dtype, acc + i, scale, n - i, os + i);
}

// The rounded residual's fp32 value is its bf16 bits widened, so nothing
// is read back from r.
void residual(DType dtype, const void* x, const void* c, size_t n, void* r, double* rr, double* xx,
              bool stream) {
  if (!bf16_direct(dtype, r, stream)) {
    avx512bf16_isa::residual<Generic>(dtype, x, c, n, r, rr, xx, stream);
    return;
  }
  const auto* xs = static_cast<const uint16_t*>(x);
  const auto* cs = static_cast<const uint16_t*>(c);
  auto* rs = static_cast<uint16_t*>(r);
  __m512 rr_acc = _mm512_setzero_ps(), xx_acc = _mm512_setzero_ps();
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Bf16x32 xv = load_bf16x32(xs + i), cv = load_bf16x32(cs + i);
    const __m512i bits = narrow_bf16x32(_mm512_sub_ps(xv.lo, cv.lo), _mm512_sub_ps(xv.hi, cv.hi));
    store_bf16x32(rs + i, bits, stream);
    const __m512 rlo = widen_bf16(_mm512_castsi512_si256(bits));
    const __m512 rhi = widen_bf16(_mm512_extracti64x4_epi64(bits, 1));
    rr_acc = _mm512_fmadd_ps(rhi, rhi, _mm512_fmadd_ps(rlo, rlo, rr_acc));
    xx_acc = _mm512_fmadd_ps(xv.hi, xv.hi, _mm512_fmadd_ps(xv.lo, xv.lo, xx_acc));
  }
  *rr += lane_sum(rr_acc);
  *xx += lane_sum(xx_acc);
  if (i < n) avx512bf16_isa::residual<Generic>(dtype, xs + i, cs + i, n - i, rs + i, rr, xx, false);
}

// 16 fp32 lanes kept between the pieces of a pass.
struct alignas(64) Lanes16 {
  float v[16];
};

// Elements of every row of a slot taken before the next piece, and how many
// pieces ahead the rows are fetched (their lines are scattered, out of the
// hardware prefetcher's reach).
constexpr size_t kPieceElems = 256, kPiecesAhead = 2;

// The piece kPiecesAhead on of every row (past the rows' end: of `next`).
void prefetch_ahead(const char* const* rows, size_t count, size_t piece_begin, size_t n,
                    const char* next) {
  constexpr size_t kPieceBytes = kPieceElems * sizeof(uint16_t);
  const size_t ahead = piece_begin + kPiecesAhead * kPieceElems;
  if (ahead < n) {
    const size_t bytes = std::min(n - ahead, kPieceElems) * sizeof(uint16_t);
    for (size_t k = 0; k < count; ++k) prefetch_bytes(rows[k] + ahead * sizeof(uint16_t), bytes);
  } else if (next != nullptr && ahead - n < std::min(n, kPiecesAhead * kPieceElems)) {
    prefetch_bytes(next + (ahead - n) * sizeof(uint16_t), kPieceBytes);
  }
}

// bf16 slots a piece at a time, 32 elements a step in
// registers: the step's sum over the slot's rows, then each row's residual
// of the piece while the piece is in L1. The same operations, in the same
// order per element, as accumulate, store_scaled and residual above (and
// the same per-row lane sums of the energies).
void mean_and_residuals(DType dtype, const char* const* rows, size_t count, size_t n,
                        const char* next, void* mean, char* const* residuals, double* energies,
                        bool stream) {
  bool direct = dtype == DType::kBFloat16 && n >= kLanes;
  for (size_t k = 0; k < count && direct && residuals != nullptr; ++k)
    direct = bf16_direct(dtype, residuals[k], stream);
  if (!direct) {
    avx512bf16_isa::mean_and_residuals<Generic>(dtype, rows, count, n, next, mean, residuals,
                                                energies, stream);
    return;
  }
  const size_t full = n / kLanes * kLanes;
  thread_local std::vector<Lanes16> energy;  // [count][rr, xx]
  if (residuals != nullptr) energy.assign(2 * count, Lanes16{});
  auto* m = static_cast<uint16_t*>(mean);
  const __m512 inv = _mm512_set1_ps(1.0f / float(count));
  for (size_t k = 0; k < count; ++k)  // the pieces before the first fetched ahead
    prefetch_bytes(rows[k], std::min(n, kPiecesAhead * kPieceElems) * sizeof(uint16_t));
  for (size_t e = 0; e < full; e += kPieceElems) {
    const size_t end = std::min(e + kPieceElems, full);
    prefetch_ahead(rows, count, e, n, next);
    for (size_t c = e; c < end; c += kLanes) {
      if (count == 1) {  // a copy, bit for bit
        _mm512_storeu_si512(m + c,
                            _mm512_loadu_si512(reinterpret_cast<const uint16_t*>(rows[0]) + c));
        continue;
      }
      __m512 lo = _mm512_setzero_ps(), hi = _mm512_setzero_ps();
      for (size_t k = 0; k < count; ++k) {
        const Bf16x32 v = load_bf16x32(reinterpret_cast<const uint16_t*>(rows[k]) + c);
        lo = _mm512_add_ps(lo, v.lo);
        hi = _mm512_add_ps(hi, v.hi);
      }
      _mm512_storeu_si512(m + c, narrow_bf16x32(_mm512_mul_ps(lo, inv), _mm512_mul_ps(hi, inv)));
    }
    for (size_t k = 0; k < count && residuals != nullptr; ++k) {
      const auto* xs = reinterpret_cast<const uint16_t*>(rows[k]);
      auto* rs = reinterpret_cast<uint16_t*>(residuals[k]);
      __m512 rr = _mm512_load_ps(energy[2 * k].v), xx = _mm512_load_ps(energy[2 * k + 1].v);
      for (size_t c = e; c < end; c += kLanes) {
        const Bf16x32 xv = load_bf16x32(xs + c), cv = load_bf16x32(m + c);
        const __m512i bits =
            narrow_bf16x32(_mm512_sub_ps(xv.lo, cv.lo), _mm512_sub_ps(xv.hi, cv.hi));
        store_bf16x32(rs + c, bits, stream);
        const __m512 rlo = widen_bf16(_mm512_castsi512_si256(bits));
        const __m512 rhi = widen_bf16(_mm512_extracti64x4_epi64(bits, 1));
        rr = _mm512_fmadd_ps(rhi, rhi, _mm512_fmadd_ps(rlo, rlo, rr));
        xx = _mm512_fmadd_ps(xv.hi, xv.hi, _mm512_fmadd_ps(xv.lo, xv.lo, xx));
      }
      _mm512_store_ps(energy[2 * k].v, rr);
      _mm512_store_ps(energy[2 * k + 1].v, xx);
    }
  }
  if (residuals != nullptr) {
    for (size_t k = 0; k < 2 * count; ++k) energies[k] += lane_sum(_mm512_load_ps(energy[k].v));
  }
  if (full == n) return;
  // The last n % 32 elements of every row, as residual's tail.
  thread_local std::vector<const char*> tail_rows;
  thread_local std::vector<char*> tail_residuals;
  tail_rows.resize(count);
  tail_residuals.resize(count);
  for (size_t k = 0; k < count; ++k) {
    tail_rows[k] = rows[k] + full * sizeof(uint16_t);
    if (residuals != nullptr) tail_residuals[k] = residuals[k] + full * sizeof(uint16_t);
  }
  avx512bf16_isa::mean_and_residuals<Generic>(
      dtype, tail_rows.data(), count, n - full, nullptr, m + full,
      residuals != nullptr ? tail_residuals.data() : nullptr, energies, false);
}

void compensate(DType dtype, const void* c, const void* r, float alpha, size_t n, void* y,
                bool stream) {
  if (!bf16_direct(dtype, y, stream)) {
    avx512bf16_isa::compensate<Generic>(dtype, c, r, alpha, n, y, stream);
    return;
  }
  const auto* cs = static_cast<const uint16_t*>(c);
  const auto* rs = static_cast<const uint16_t*>(r);
  auto* ys = static_cast<uint16_t*>(y);
  const __m512 a = _mm512_set1_ps(alpha);
  size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    const Bf16x32 cv = load_bf16x32(cs + i), rv = load_bf16x32(rs + i);
    store_bf16x32(
        ys + i, narrow_bf16x32(_mm512_fmadd_ps(a, rv.lo, cv.lo), _mm512_fmadd_ps(a, rv.hi, cv.hi)),
        stream);
  }
  if (i < n)
    avx512bf16_isa::compensate<Generic>(dtype, cs + i, rs + i, alpha, n - i, ys + i, false);
}

}  // namespace

const Kernels& avx512bf16_kernels() {
  static const Kernels k = [] {
    Kernels t = avx512bf16_isa::make_kernels<Avx512Bf16Vec>("avx512bf16");
    t.project = project;
    t.project_sparse = project_sparse;
    t.accumulate = accumulate;
    t.store_scaled = store_scaled;
    t.residual = residual;
    t.mean_and_residuals = mean_and_residuals;
    t.compensate = compensate;
    return t;
  }();
  return k;
}

}  // namespace lshmoe::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC diagnostic pop
#pragma GCC pop_options
#endif
