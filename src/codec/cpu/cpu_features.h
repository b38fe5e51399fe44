// What the processor and the operating system let the kernels use, read from
// CPUID and XGETBV (compilers disagree on the names __builtin_cpu_supports
// knows).
#pragma once

namespace lshmoe::cpu {

struct CpuFeatures {
  bool avx2_fma_f16c = false;  // AVX2, FMA and F16C, with YMM state enabled
  bool avx512_bf16 = false;    // AVX-512 F, BW, VL and BF16, with ZMM state enabled
  bool sse42 = false;
};

const CpuFeatures& cpu_features();

}  // namespace lshmoe::cpu
