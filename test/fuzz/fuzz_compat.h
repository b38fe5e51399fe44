// Force-included into the fuzz build (clang++). clang before 16 rejects
// __builtin_cpu_supports("f16c"), which src/codec/cpu/kernels.cc uses; this
// answers that query from CPUID and passes the others to the builtin.
#pragma once

#include <cpuid.h>
#include <cstring>

inline bool lshmoe_fuzz_cpu_supports(const char* feature) {
  if (strcmp(feature, "f16c") == 0) {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) && (ecx & bit_F16C) != 0;
  }
  if (strcmp(feature, "avx2") == 0) return __builtin_cpu_supports("avx2");
  if (strcmp(feature, "fma") == 0) return __builtin_cpu_supports("fma");
  if (strcmp(feature, "sse4.2") == 0) return __builtin_cpu_supports("sse4.2");
  return false;  // unknown to this shim: the portable path
}

#define __builtin_cpu_supports(feature) lshmoe_fuzz_cpu_supports(feature)
