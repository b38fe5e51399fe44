// AVX2 + FMA + F16C kernels. Only the functions defined below the target
// pragma use those instructions; shared inline helpers (dtype.h) keep the
// baseline ISA, so the linker can never pick an AVX2 copy of them for code
// that runs on an older processor.
#include <immintrin.h>

// Standard headers sparse_projection_impl.h uses, included here, before the
// target pragma: clang refuses a target attribute on a library template it
// has already seen defined.
#include <algorithm>
#include <cmath>
#include <cstdint>
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
#include "codec/cpu/sparse_projection_impl.h"

namespace lshmoe::cpu {
namespace {

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
    t.project_sparse = avx2_isa::project_sparse_passes<avx2_isa::SparseLanes8>;
    t.residual = residual;
    t.mean_and_residuals = avx2_isa::mean_and_residuals<Avx2Vec, residual>;
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
