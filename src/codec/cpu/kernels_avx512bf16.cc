// AVX-512 BF16 kernels: the projection of bf16 rows with VDPBF16PS (exact
// bf16 products, fp32 sums: twice the multiply-adds per instruction of an
// fp32 FMA, and no conversion of the rows), and bf16 rounding with one
// VCVTNEPS2BF16. The other kernels are the AVX2 loops. As in kernels_avx2.cc,
// only the functions defined under the target pragma use these instructions.
#include <immintrin.h>

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
#endif

#define LSHMOE_KERNEL_NS avx512bf16_isa
#include "codec/cpu/avx2_vec.h"
#include "codec/cpu/kernels_impl.h"

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

}  // namespace

const Kernels& avx512bf16_kernels() {
  static const Kernels k = [] {
    Kernels t = avx512bf16_isa::make_kernels<Avx512Bf16Vec>("avx512bf16");
    t.project = project;
    t.project_sparse = avx2_kernels().project_sparse;  // adds only: nothing for VDPBF16PS
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
