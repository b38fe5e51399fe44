// Element types of rows, and exact scalar conversions (round to nearest even)
// shared by the CPU and CUDA back ends.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/host_device.h"

namespace lshmoe {

enum class DType : uint8_t { kFloat32 = 1, kFloat16 = 2, kBFloat16 = 3 };

LSHMOE_HD bool dtype_valid(uint32_t code) {
  return code >= 1 && code <= 3;
}

LSHMOE_HD size_t dtype_size(DType t) {
  return t == DType::kFloat32 ? 4 : 2;
}

const char* dtype_name(DType t);

LSHMOE_HD float bf16_to_float(uint16_t h) {
  return bit_cast_hd<float>(uint32_t(h) << 16);
}

LSHMOE_HD uint16_t float_to_bf16(float f) {
  uint32_t u = bit_cast_hd<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40u);  // quiet NaN
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

LSHMOE_HD float fp16_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    // Zero or subnormal: mant * 2^-24 is exact in float.
    float mag = float(mant) * 5.9604644775390625e-8f;
    return bit_cast_hd<float>(bit_cast_hd<uint32_t>(mag) | sign);
  }
  if (exp == 31) return bit_cast_hd<float>(sign | 0x7f800000u | (mant << 13));
  return bit_cast_hd<float>(sign | ((exp + 112u) << 23) | (mant << 13));
}

LSHMOE_HD uint16_t float_to_fp16(float f) {
  uint32_t x = bit_cast_hd<uint32_t>(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  x &= 0x7fffffffu;
  if (x >= 0x47800000u) return uint16_t(sign | (x > 0x7f800000u ? 0x7e00u : 0x7c00u));
  if (x < 0x38800000u) {
    // Below the smallest normal half: adding 0.5f lets the FPU round the
    // mantissa to the half subnormal grid (round to nearest even).
    const float t = bit_cast_hd<float>(x) + 0.5f;
    return uint16_t(sign | (bit_cast_hd<uint32_t>(t) - 0x3f000000u));
  }
  const uint32_t mant_odd = (x >> 13) & 1u;
  x += 0xc8000fffu + mant_odd;  // rebias exponent, round half to even
  return uint16_t(sign | (x >> 13));
}

// Element i of a row. On the host, rows and wire messages may lie at any
// alignment, so elements are read and written bytewise (one plain load or
// store on x86). On the device, bytewise copies stay bytewise (one memory
// transaction per byte), and the CUDA back end checks that its buffers are
// element-aligned, so elements move as one typed access.
LSHMOE_HD float load_elem(DType t, const void* base, size_t i) {
#if defined(__CUDA_ARCH__)
  if (t == DType::kFloat32) return static_cast<const float*>(base)[i];
  const uint16_t d = static_cast<const uint16_t*>(base)[i];
  return t == DType::kFloat16 ? fp16_to_float(d) : bf16_to_float(d);
#endif
  const unsigned char* p = static_cast<const unsigned char*>(base);
  if (t == DType::kFloat32) {
    float v;
    memcpy(&v, p + 4 * i, 4);
    return v;
  }
  uint16_t h;
  memcpy(&h, p + 2 * i, 2);
  return t == DType::kFloat16 ? fp16_to_float(h) : bf16_to_float(h);
}

LSHMOE_HD void store_elem(DType t, void* base, size_t i, float v) {
#if defined(__CUDA_ARCH__)
  if (t == DType::kFloat32) {
    static_cast<float*>(base)[i] = v;
  } else {
    static_cast<uint16_t*>(base)[i] = t == DType::kFloat16 ? float_to_fp16(v) : float_to_bf16(v);
  }
  return;
#endif
  unsigned char* p = static_cast<unsigned char*>(base);
  if (t == DType::kFloat32) {
    memcpy(p + 4 * i, &v, 4);
    return;
  }
  const uint16_t h = t == DType::kFloat16 ? float_to_fp16(v) : float_to_bf16(v);
  memcpy(p + 2 * i, &h, 2);
}

// Rounds v to the precision of t (identity for fp32).
LSHMOE_HD float round_to(DType t, float v) {
  switch (t) {
    case DType::kFloat32:
      return v;
    case DType::kFloat16:
      return fp16_to_float(float_to_fp16(v));
    default:
      return bf16_to_float(float_to_bf16(v));
  }
}

}  // namespace lshmoe
