// AVX2 + FMA + F16C kernels. Only the functions defined below the target
// pragma use those instructions; shared inline helpers (dtype.h) keep the
// baseline ISA, so the linker can never pick an AVX2 copy of them for code
// that runs on an older processor.
#include <immintrin.h>

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
// Elements of a pass's transposed tile ([elements][8 rows] fp32: 16 KiB).
constexpr size_t kSparseTileElems = 512;

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

// Kernels::project_sparse over 8 rows at a time: the rows are transposed
// into a tile of [element][row] vectors, so each nonzero is one vector load
// and one add for 8 rows (no gathers), summed per row in the contract's
// order. Outputs advance through their ascending entries tile by tile.
void project_sparse(DType dtype, const void* x, size_t row_begin, size_t row_end, size_t row_elems,
                    const uint32_t* nonzeros, size_t per_col, size_t used_cols, size_t cols,
                    float* y) {
  alignas(32) float tile[kSparseTileElems][kSparseRows];
  alignas(32) static const float kSign[2][kSparseRows] = {
      {0, 0, 0, 0, 0, 0, 0, 0}, {-0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f, -0.0f}};
  thread_local std::vector<float> acc;  // [used_cols][8 rows]
  thread_local std::vector<uint32_t> cursor;
  acc.resize(used_cols * kSparseRows);
  cursor.resize(used_cols);
  const size_t esize = dtype_size(dtype);
  for (size_t rb = row_begin; rb < row_end; rb += kSparseRows) {
    const size_t rows = row_end - rb < kSparseRows ? row_end - rb : kSparseRows;
    const char* src[kSparseRows];
    for (size_t r = 0; r < kSparseRows; ++r)
      src[r] = static_cast<const char*>(x) + (rb + (r < rows ? r : 0)) * row_elems * esize;
    for (size_t j = 0; j < used_cols; ++j) {
      _mm256_storeu_ps(&acc[j * kSparseRows], _mm256_setzero_ps());
      cursor[j] = 0;
    }
    for (size_t k0 = 0; k0 < row_elems; k0 += kSparseTileElems) {
      const size_t len = row_elems - k0 < kSparseTileElems ? row_elems - k0 : kSparseTileElems;
      size_t k = 0;
      for (; k + 8 <= len; k += 8) {
        __m256 v[kSparseRows];
        for (size_t r = 0; r < kSparseRows; ++r)
          v[r] = r < rows ? Avx2Vec::load(dtype, src[r], k0 + k) : _mm256_setzero_ps();
        transpose8(v);
        for (size_t l = 0; l < 8; ++l) _mm256_store_ps(tile[k + l], v[l]);
      }
      for (; k < len; ++k)
        for (size_t r = 0; r < kSparseRows; ++r)
          tile[k][r] = r < rows ? load_elem(dtype, src[r], k0 + k) : 0.0f;
      const uint32_t end = uint32_t(k0 + len);
      for (size_t j = 0; j < used_cols; ++j) {
        const uint32_t* e = nonzeros + j * per_col;
        __m256 a = _mm256_loadu_ps(&acc[j * kSparseRows]);
        uint32_t i = cursor[j];
        for (; i < per_col && (e[i] & kSparseIndexMask) < end; ++i) {
          const __m256 v = _mm256_load_ps(tile[(e[i] & kSparseIndexMask) - k0]);
          a = _mm256_add_ps(a, _mm256_xor_ps(v, _mm256_load_ps(kSign[e[i] >> 31])));
        }
        _mm256_storeu_ps(&acc[j * kSparseRows], a);
        cursor[j] = i;
      }
    }
    for (size_t j = 0; j < used_cols; ++j) {
      for (size_t r = 0; r < rows; ++r) y[(rb + r) * cols + j] = acc[j * kSparseRows + r];
    }
    for (size_t r = 0; r < rows; ++r)
      for (size_t j = used_cols; j < cols; ++j) y[(rb + r) * cols + j] = 0.0f;
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
