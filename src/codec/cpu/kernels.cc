#include "codec/cpu/kernels.h"

#include <cstring>

namespace lshmoe::cpu {

bool avx2_supported() {
  static const bool supported = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
           __builtin_cpu_supports("f16c");
  }();
  return supported;
}

const Kernels* select_kernels(const char* isa) {
  if (strcmp(isa, "scalar") == 0) return &scalar_kernels();
  if (strcmp(isa, "avx2") == 0) return avx2_supported() ? &avx2_kernels() : nullptr;
  if (strcmp(isa, "auto") == 0) return avx2_supported() ? &avx2_kernels() : &scalar_kernels();
  return nullptr;
}

}  // namespace lshmoe::cpu
