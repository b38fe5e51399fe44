#include "codec/cpu/cpu_features.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

namespace lshmoe::cpu {
namespace {

CpuFeatures detect() {
  CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return f;
  f.sse42 = ecx & bit_SSE4_2;
  const bool fma = ecx & bit_FMA, f16c = ecx & bit_F16C, osxsave = ecx & bit_OSXSAVE;
  if (!osxsave) return f;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
  const bool ymm_state = (xcr0_lo & 0x6) == 0x6;    // SSE and AVX state
  const bool zmm_state = (xcr0_lo & 0xe6) == 0xe6;  // plus opmask and ZMM state
  if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx)) return f;
  const bool avx2 = ebx & bit_AVX2;
  const bool avx512f = ebx & bit_AVX512F, avx512bw = ebx & bit_AVX512BW;
  const bool avx512vl = ebx & bit_AVX512VL;
  f.avx2_fma_f16c = ymm_state && avx2 && fma && f16c;
  unsigned eax1 = 0;
  if (__get_cpuid_count(7, 1, &eax1, &ebx, &ecx, &edx)) {
    const bool bf16 = eax1 & (1u << 5);  // AVX512_BF16
    f.avx512_bf16 = f.avx2_fma_f16c && zmm_state && avx512f && avx512bw && avx512vl && bf16;
  }
#endif
  return f;
}

}  // namespace

const CpuFeatures& cpu_features() {
  static const CpuFeatures features = detect();
  return features;
}

}  // namespace lshmoe::cpu
