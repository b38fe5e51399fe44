// The 8-lane AVX2 vector of kernels_impl.h. Include only under a target
// pragma that enables AVX2, FMA and F16C. Internal linkage on purpose: each
// including file compiles its own copy for its own target, so the linker can
// never hand one file's (wider) instructions to another.
#pragma once

#include <immintrin.h>

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace lshmoe::cpu {
namespace {

struct Avx2Vec {
  static constexpr size_t W = 8;
  using T = __m256;
  static T zero() { return _mm256_setzero_ps(); }
  static T set1(float v) { return _mm256_set1_ps(v); }
  static T load(const float* p) { return _mm256_loadu_ps(p); }
  static void store(float* p, T v) { _mm256_storeu_ps(p, v); }

  static T load(DType t, const void* base, size_t i) {
    switch (t) {
      case DType::kFloat32:
        return _mm256_loadu_ps(static_cast<const float*>(base) + i);
      case DType::kFloat16:
        return _mm256_cvtph_ps(_mm_loadu_si128(
            reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i)));
      default: {
        const __m128i h = _mm_loadu_si128(
            reinterpret_cast<const __m128i*>(static_cast<const uint16_t*>(base) + i));
        return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
      }
    }
  }

  static void store(DType t, void* base, size_t i, T v) {
    switch (t) {
      case DType::kFloat32:
        _mm256_storeu_ps(static_cast<float*>(base) + i, v);
        return;
      case DType::kFloat16: {
        // NaNs become the canonical quiet NaN with their sign, as float_to_fp16().
        const __m128i half = _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        const __m256i nan32 = _mm256_castps_si256(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
        const __m128i nan16 =
            _mm_packs_epi32(_mm256_castsi256_si128(nan32), _mm256_extracti128_si256(nan32, 1));
        const __m256i sign32 = _mm256_and_si256(_mm256_srli_epi32(_mm256_castps_si256(v), 16),
                                                _mm256_set1_epi32(0x8000));
        const __m128i canonical = _mm_or_si128(
            _mm_packus_epi32(_mm256_castsi256_si128(sign32), _mm256_extracti128_si256(sign32, 1)),
            _mm_set1_epi16(0x7e00));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(base) + i),
                         _mm_blendv_epi8(half, canonical, nan16));
        return;
      }
      default: {
        // Round to nearest even, quiet NaNs, as float_to_bf16().
        const __m256i u = _mm256_castps_si256(v);
        const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        const __m256i rounded = _mm256_srli_epi32(
            _mm256_add_epi32(u, _mm256_add_epi32(_mm256_set1_epi32(0x7fff), lsb)), 16);
        const __m256i nan = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
        const __m256 is_nan = _mm256_cmp_ps(v, v, _CMP_UNORD_Q);
        const __m256i bits = _mm256_castps_si256(
            _mm256_blendv_ps(_mm256_castsi256_ps(rounded), _mm256_castsi256_ps(nan), is_nan));
        const __m256i packed = _mm256_permute4x64_epi64(_mm256_packus_epi32(bits, bits), 0x08);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(static_cast<uint16_t*>(base) + i),
                         _mm256_castsi256_si128(packed));
        return;
      }
    }
  }

  static T add(T a, T b) { return _mm256_add_ps(a, b); }
  static T sub(T a, T b) { return _mm256_sub_ps(a, b); }
  static T mul(T a, T b) { return _mm256_mul_ps(a, b); }
  static T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  static float hsum(T v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
  }
  static T less(T a, T b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  static T select(T mask, T a, T b) { return _mm256_blendv_ps(b, a, mask); }
  static T index_bits(uint32_t base) {
    return _mm256_castsi256_ps(
        _mm256_add_epi32(_mm256_set1_epi32(int(base)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  }
  static void store_bits(uint32_t* p, T v) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm256_castps_si256(v));
  }
};

}  // namespace
}  // namespace lshmoe::cpu
