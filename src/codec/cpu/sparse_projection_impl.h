// Kernels::project_sparse over a pass of rows at a time (kernels.h has the
// contract): the rows are transposed, 8 by 8, into a tile of
// [element][row] lanes, so each nonzero is one vector load and one add for
// every row of the pass (no gathers), summed per row in the contract's order.
// A tile holds whole blocks, so every output has the same entries in it, and
// four outputs are summed side by side (four chains of adds). The width of a
// pass is the accumulator's (Lanes: 8 rows in an AVX2 register, 16 in an
// AVX-512 one); the tile is built with AVX2 either way. Included by an ISA's
// kernels file, under its target pragma (AVX2 at least), after avx2_vec.h.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <vector>

#include "codec/cpu/kernels.h"

namespace lshmoe::cpu {
namespace LSHMOE_KERNEL_NS {

// Elements of an 8-row pass's transposed tile (fewer for wider passes: the tile
// stays 16 KiB), rounded to whole blocks.
constexpr size_t kSparseTileElems = 512;
// Outputs summed side by side.
constexpr size_t kSparseCols = 4;

// In-register transpose of an 8 x 8 block: v[r][k] becomes v[k][r].
inline void transpose8(__m256 v[8]) {
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

// The 8-row accumulator of the AVX2 table.
struct SparseLanes8 {
  static constexpr size_t kRows = 8;
  using T = __m256;
  static T loadu(const float* p) { return _mm256_loadu_ps(p); }
  static void storeu(float* p, T v) { _mm256_storeu_ps(p, v); }
  // acc + s x for one entry (x: the tile's aligned lanes of its element;
  // sign: the entry's kSparseNegative bit); adding -x gives the bits of
  // subtracting x.
  static T add_entry(T acc, const float* x, uint32_t sign) {
    const __m256i flip = _mm256_set1_epi32(int(sign));
    return _mm256_add_ps(acc, _mm256_xor_ps(_mm256_load_ps(x), _mm256_castsi256_ps(flip)));
  }
};

template <typename Lanes>
void project_sparse_passes(DType dtype, const void* x, size_t row_begin, size_t row_end,
                           size_t row_elems, const uint32_t* nonzeros, size_t per_col, size_t block,
                           size_t used_cols, size_t cols, float* y) {
  constexpr size_t R = Lanes::kRows, kGroups = R / 8;
  using Tile = float[R];
  const size_t tile_elems = block * std::max<size_t>(1, kSparseTileElems * 8 / R / block);
  thread_local std::vector<float> tile_store, acc;  // [tile_elems][R]; [used_cols][R]
  tile_store.resize(tile_elems * R + 16);
  // 64-byte aligned rows of the tile.
  Tile* tile = reinterpret_cast<Tile*>((reinterpret_cast<uintptr_t>(tile_store.data()) + 63) &
                                       ~uintptr_t(63));
  acc.resize(used_cols * R);
  const size_t esize = dtype_size(dtype);
  for (size_t rb = row_begin; rb < row_end; rb += R) {
    const size_t rows = row_end - rb < R ? row_end - rb : R;
    const char* src[R];
    for (size_t r = 0; r < R; ++r)
      src[r] = static_cast<const char*>(x) + (rb + (r < rows ? r : 0)) * row_elems * esize;
    std::fill(acc.begin(), acc.end(), 0.0f);
    // x * 0 summed over every element loaded: NaN iff a row is not finite.
    __m256 poison[R];
    for (size_t r = 0; r < R; ++r) poison[r] = _mm256_setzero_ps();
    for (size_t k0 = 0; k0 < row_elems; k0 += tile_elems) {
      const size_t len = row_elems - k0 < tile_elems ? row_elems - k0 : tile_elems;
      size_t k = 0;
      for (; k + 8 <= len; k += 8) {
        for (size_t g = 0; g < kGroups; ++g) {
          __m256 v[8];
          for (size_t l = 0; l < 8; ++l) {
            const size_t r = 8 * g + l;
            v[l] = r < rows ? Avx2Vec::load(dtype, src[r], k0 + k) : _mm256_setzero_ps();
            poison[r] = _mm256_add_ps(poison[r], _mm256_mul_ps(v[l], _mm256_setzero_ps()));
          }
          transpose8(v);
          for (size_t l = 0; l < 8; ++l) _mm256_store_ps(&tile[k + l][8 * g], v[l]);
        }
      }
      for (; k < len; ++k) {
        for (size_t r = 0; r < R; ++r) {
          tile[k][r] = r < rows ? load_elem(dtype, src[r], k0 + k) : 0.0f;
          poison[r] = _mm256_add_ps(poison[r], _mm256_set1_ps(tile[k][r] * 0.0f));
        }
      }
      // The entries of this tile's blocks.
      const size_t i0 = k0 / block, i1 = std::min(per_col, (k0 + len + block - 1) / block);
      const auto add = [&](typename Lanes::T a, uint32_t entry) {
        return Lanes::add_entry(a, tile[(entry & kSparseIndexMask) - k0], entry & kSparseNegative);
      };
      size_t j = 0;
      for (; j + kSparseCols <= used_cols; j += kSparseCols) {
        typename Lanes::T a[kSparseCols];
        const uint32_t* e[kSparseCols];
        for (size_t c = 0; c < kSparseCols; ++c) {
          a[c] = Lanes::loadu(&acc[(j + c) * R]);
          e[c] = nonzeros + (j + c) * per_col;
        }
        for (size_t i = i0; i < i1; ++i)
          for (size_t c = 0; c < kSparseCols; ++c) a[c] = add(a[c], e[c][i]);
        for (size_t c = 0; c < kSparseCols; ++c) Lanes::storeu(&acc[(j + c) * R], a[c]);
      }
      for (; j < used_cols; ++j) {
        typename Lanes::T a = Lanes::loadu(&acc[j * R]);
        for (size_t i = i0; i < i1; ++i) a = add(a, nonzeros[j * per_col + i]);
        Lanes::storeu(&acc[j * R], a);
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      alignas(32) float lanes[8];
      _mm256_store_ps(lanes, poison[r]);
      bool finite = true;
      for (float lane : lanes) finite = finite && lane == 0.0f;
      for (size_t jj = 0; jj < used_cols; ++jj)
        y[(rb + r) * cols + jj] =
            finite ? acc[jj * R + r] : std::numeric_limits<float>::quiet_NaN();
      for (size_t jj = used_cols; jj < cols; ++jj) y[(rb + r) * cols + jj] = 0.0f;
    }
  }
}

}  // namespace LSHMOE_KERNEL_NS
}  // namespace lshmoe::cpu
