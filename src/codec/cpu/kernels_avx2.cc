// AVX2 + FMA + F16C kernels. Only the functions defined below the target
// pragma use those instructions; shared inline helpers (dtype.h) keep the
// baseline ISA, so the linker can never pick an AVX2 copy of them for code
// that runs on an older processor.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "codec/cpu/kernels.h"
#include "codec/cpu/stream_store.h"
#include "common/dtype.h"

#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2,fma,f16c"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")
#endif

#define LSHMOE_KERNEL_NS avx2_isa
#include "codec/cpu/avx2_vec.h"
#include "codec/cpu/kernels_impl.h"

namespace lshmoe::cpu {
namespace {

// Rows of one pass of the sparse projection: the lanes of a vector.
constexpr size_t kSparseRows = 8;
// Elements of a pass's transposed tile ([elements][8 rows] fp32: 16 KiB),
// rounded to whole blocks.
constexpr size_t kSparseTileElems = 512;
// Outputs summed side by side.
constexpr size_t kSparseCols = 4;

// In-register transpose of an 8 x 8 block: v[r][k] becomes v[k][r].
void transpose8(__m256 v[8]) {
  const __m256 t0 = _mm256_unpacklo_ps(v[0], v[1]), t1 = _mm256_unpackhi_ps(v[0], v[1]);
  const __m256 t2 = _mm256_unpacklo_ps(v[2], v[3]), t3 = _mm256_unpackhi_ps(v[2], v[3]);
  const __m256 t4 = _mm256_unpacklo_ps(v[4], v[5]), t5 = _mm256_unpackhi_ps(v[4], v[5]);
  const __m256 t6 = _mm256_unpacklo_ps(v[6], v[7]), t7 = _mm256_unpackhi_ps(v[6], v[7]);
  const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xee);
  const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xee);
  const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xee);
  const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xee);
  v[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
  v[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
  v[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
  v[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
  v[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
  v[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
  v[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
  v[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

alignas(32) const float kSign[2][kSparseRows] = {
    {0, 0, 0, 0, 0, 0, 0, 0}, {-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f}};

// acc + s x for one entry, x the 8 rows' element.
inline __m256 add_entry(__m256 acc, const float (*tile)[kSparseRows], size_t k0, uint32_t entry) {
  const __m256 v = _mm256_load_ps(tile[(entry & kSparseIndexMask) - k0]);
  return _mm256_add_ps(acc, _mm256_xor_ps(v, _mm256_load_ps(kSign[entry >> 31])));
}

// Kernels::project_sparse over 8 rows at a time: the rows are transposed
// into a tile of [element][row] vectors, so each nonzero is one vector load
// and one add for 8 rows (no gathers), summed per row in the contract's
// order. A tile holds whole blocks, so every output has the same entries in
// it, and four outputs are summed side by side (four chains of adds).
void project_sparse(DType dtype, const void* x, size_t row_begin, size_t row_end, size_t row_elems,
                    const uint32_t* nonzeros, size_t per_col, size_t block, size_t used_cols,
                    size_t cols, float* y) {
  const size_t tile_elems = block * std::max<size_t>(1, kSparseTileElems / block);
  thread_local std::vector<float> tile_store, acc;  // [tile_elems][8]; [used_cols][8]
  tile_store.resize(tile_elems * kSparseRows + kSparseRows);
  // 32-byte aligned rows of the tile.
  float(*tile)[kSparseRows] = reinterpret_cast<float(*)[kSparseRows]>(
      (reinterpret_cast<uintptr_t>(tile_store.data()) + 31) & ~uintptr_t(31));
  acc.resize(used_cols * kSparseRows);
  const size_t esize = dtype_size(dtype);
  for (size_t rb = row_begin; rb < row_end; rb += kSparseRows) {
    const size_t rows = row_end - rb < kSparseRows ? row_end - rb : kSparseRows;
    const char* src[kSparseRows];
    for (size_t r = 0; r < kSparseRows; ++r)
      src[r] = static_cast<const char*>(x) + (rb + (r < rows ? r : 0)) * row_elems * esize;
    std::fill(acc.begin(), acc.end(), 0.0f);
    // x * 0 summed over every element loaded: NaN iff a row is not finite.
    __m256 poison[kSparseRows];
    for (size_t r = 0; r < kSparseRows; ++r) poison[r] = _mm256_setzero_ps();
    for (size_t k0 = 0; k0 < row_elems; k0 += tile_elems) {
      const size_t len = row_elems - k0 < tile_elems ? row_elems - k0 : tile_elems;
      size_t k = 0;
      for (; k + 8 <= len; k += 8) {
        __m256 v[kSparseRows];
        for (size_t r = 0; r < kSparseRows; ++r) {
          v[r] = r < rows ? Avx2Vec::load(dtype, src[r], k0 + k) : _mm256_setzero_ps();
          poison[r] = _mm256_add_ps(poison[r], _mm256_mul_ps(v[r], _mm256_setzero_ps()));
        }
        transpose8(v);
        for (size_t l = 0; l < 8; ++l) _mm256_store_ps(tile[k + l], v[l]);
      }
      for (; k < len; ++k) {
        for (size_t r = 0; r < kSparseRows; ++r) {
          tile[k][r] = r < rows ? load_elem(dtype, src[r], k0 + k) : 0.0f;
          poison[r] = _mm256_add_ps(poison[r], _mm256_set1_ps(tile[k][r] * 0.0f));
        }
      }
      // The entries of this tile's blocks.
      const size_t i0 = k0 / block, i1 = std::min(per_col, (k0 + len + block - 1) / block);
      size_t j = 0;
      for (; j + kSparseCols <= used_cols; j += kSparseCols) {
        __m256 a[kSparseCols];
        const uint32_t* e[kSparseCols];
        for (size_t c = 0; c < kSparseCols; ++c) {
          a[c] = _mm256_loadu_ps(&acc[(j + c) * kSparseRows]);
          e[c] = nonzeros + (j + c) * per_col;
        }
        for (size_t i = i0; i < i1; ++i)
          for (size_t c = 0; c < kSparseCols; ++c) a[c] = add_entry(a[c], tile, k0, e[c][i]);
        for (size_t c = 0; c < kSparseCols; ++c)
          _mm256_storeu_ps(&acc[(j + c) * kSparseRows], a[c]);
      }
      for (; j < used_cols; ++j) {
        __m256 a = _mm256_loadu_ps(&acc[j * kSparseRows]);
        for (size_t i = i0; i < i1; ++i) a = add_entry(a, tile, k0, nonzeros[j * per_col + i]);
        _mm256_storeu_ps(&acc[j * kSparseRows], a);
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, poison[r]);
      bool finite = true;
      for (float lane : lanes) finite = finite && lane == 0.0f;
      for (size_t jj = 0; jj < used_cols; ++jj)
        y[(rb + r) * cols + jj] =
            finite ? acc[jj * kSparseRows + r] : std::numeric_limits<float>::quiet_NaN();
      for (size_t jj = used_cols; jj < cols; ++jj) y[(rb + r) * cols + jj] = 0.0f;
    }
  }
}

// Round to nearest even and quiet NaNs, as float_to_bf16(), leaving each
// result in the low half of its 32-bit lane.
inline __m256i bf16_bits(__m256 v) {
  const __m256i u = _mm256_castps_si256(v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  const __m256i rounded =
      _mm256_srli_epi32(_mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
  const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
  return _mm256_castps_si256(_mm256_blendv_ps(
      _mm256_castsi256_ps(rounded), _mm256_castsi256_ps(nan), _mm256_cmp_ps(v, v, _CMP_UNORD_Q)));
}

// The 16 bf16 elements at p widened to fp32: zeros interleaved below each
// element give its fp32 bits within 128-bit lanes (elements 0-3 and 8-11 in
// lo, 4-7 and 12-15 in hi), an order pack_bf16() undoes exactly, so no
// cross-lane permute is needed.
struct Bf16Pair {
  __m256 lo, hi;
};
inline Bf16Pair load_bf16(const uint16_t* p) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i zero = _mm256_setzero_si256();
  return {_mm256_castsi256_ps(_mm256_unpacklo_epi16(zero, v)),
          _mm256_castsi256_ps(_mm256_unpackhi_epi16(zero, v))};
}
inline __m256i pack_bf16(__m256i lo_bits, __m256i hi_bits) {
  return _mm256_packus_epi32(lo_bits, hi_bits);
}
inline void store_16(uint16_t* p, __m256i v, bool stream) {
  if (stream) {  // 16-byte halves: heap buffers are often aligned to 16 only
    _mm_stream_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(v));
    _mm_stream_si128(reinterpret_cast<__m128i*>(p + 8), _mm256_extracti128_si256(v, 1));
  } else {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), v);
  }
}
// Streamed bf16 outputs are stored straight from registers when aligned.
inline bool streams_directly(const void* out, bool stream) {
  return stream && (reinterpret_cast<uintptr_t>(out) & 15) == 0;
}

// Kernels::residual for bf16, 16 elements a step. The rounded residual's
// fp32 value is its bf16 bits shifted up, so nothing is read back from r.
void residual(DType dtype, const void* x, const void* c, size_t n, void* r, double* rr, double* xx,
              bool stream) {
  if (dtype != DType::kBFloat16 || (stream && !streams_directly(r, stream))) {
    avx2_isa::residual<Avx2Vec>(dtype, x, c, n, r, rr, xx, stream);
    return;
  }
  const auto* xs = static_cast<const uint16_t*>(x);
  const auto* cs = static_cast<const uint16_t*>(c);
  auto* rs = static_cast<uint16_t*>(r);
  __m256 rr_acc = _mm256_setzero_ps(), xx_acc = _mm256_setzero_ps();
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const Bf16Pair xv = load_bf16(xs + i), cv = load_bf16(cs + i);
    const __m256i lo = bf16_bits(_mm256_sub_ps(xv.lo, cv.lo));
    const __m256i hi = bf16_bits(_mm256_sub_ps(xv.hi, cv.hi));
    store_16(rs + i, pack_bf16(lo, hi), stream);
    const __m256 rlo = _mm256_castsi256_ps(_mm256_slli_epi32(lo, 16));
    const __m256 rhi = _mm256_castsi256_ps(_mm256_slli_epi32(hi, 16));
    rr_acc = _mm256_fmadd_ps(rhi, rhi, _mm256_fmadd_ps(rlo, rlo, rr_acc));
    xx_acc = _mm256_fmadd_ps(xv.hi, xv.hi, _mm256_fmadd_ps(xv.lo, xv.lo, xx_acc));
  }
  *rr += Avx2Vec::hsum(rr_acc);
  *xx += Avx2Vec::hsum(xx_acc);
  if (i < n) avx2_isa::residual<Avx2Vec>(dtype, xs + i, cs + i, n - i, rs + i, rr, xx, false);
}

// Kernels::compensate for bf16, 16 elements a step: the same arithmetic (one
// fma, one rounding) as the generic kernel, so the same bits.
void compensate(DType dtype, const void* c, const void* r, float alpha, size_t n, void* y,
                bool stream) {
  if (dtype != DType::kBFloat16 || (stream && !streams_directly(y, stream))) {
    avx2_isa::compensate<Avx2Vec>(dtype, c, r, alpha, n, y, stream);
    return;
  }
  const auto* cs = static_cast<const uint16_t*>(c);
  const auto* rs = static_cast<const uint16_t*>(r);
  auto* ys = static_cast<uint16_t*>(y);
  const __m256 a = _mm256_set1_ps(alpha);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const Bf16Pair cv = load_bf16(cs + i), rv = load_bf16(rs + i);
    store_16(ys + i,
             pack_bf16(bf16_bits(_mm256_fmadd_ps(a, rv.lo, cv.lo)),
                       bf16_bits(_mm256_fmadd_ps(a, rv.hi, cv.hi))),
             stream);
  }
  if (i < n) avx2_isa::compensate<Avx2Vec>(dtype, cs + i, rs + i, alpha, n - i, ys + i, false);
}

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k = [] {
    Kernels t = avx2_isa::make_kernels<Avx2Vec>("avx2");
    t.project_sparse = project_sparse;
    t.residual = residual;
    t.compensate = compensate;
    return t;
  }();
  return k;
}

}  // namespace lshmoe::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
