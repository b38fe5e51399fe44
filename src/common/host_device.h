// Marks the scalar helpers that the CPU and CUDA back ends share, so that both
// compute bit-identical hash inputs, keys and headers.
#pragma once

#include <cstdint>
#include <cstring>

#if defined(__CUDACC__)
#define LSHMOE_HD __host__ __device__ __forceinline__
#else
#define LSHMOE_HD inline
#endif

namespace lshmoe {

template <typename To, typename From>
LSHMOE_HD To bit_cast_hd(const From& from) {
  static_assert(sizeof(To) == sizeof(From), "bit_cast_hd: sizes differ");
  To to;
  memcpy(&to, &from, sizeof(To));
  return to;
}

// IEEE operations that the device compiler must not fuse into FMAs: the
// generator's doubles have to round identically on host and device.
LSHMOE_HD double mul_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dmul_rn(a, b);
#else
  return a * b;
#endif
}
LSHMOE_HD double add_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(a, b);
#else
  return a + b;
#endif
}
LSHMOE_HD double div_rn(double a, double b) {
#if defined(__CUDA_ARCH__)
  return __ddiv_rn(a, b);
#else
  return a / b;
#endif
}
LSHMOE_HD double sqrt_rn(double a) {
#if defined(__CUDA_ARCH__)
  return __dsqrt_rn(a);
#else
  return __builtin_sqrt(a);
#endif
}

}  // namespace lshmoe
