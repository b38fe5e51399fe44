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

}  // namespace

const Kernels& avx2_kernels() {
  static const Kernels k = [] {
    Kernels t = avx2_isa::make_kernels<Avx2Vec>("avx2");
    t.project_sparse = project_sparse;
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
