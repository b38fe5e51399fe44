#include "codec/cpu/kernels.h"

#include <cstring>

#include "codec/cpu/cpu_features.h"

namespace lshmoe::cpu {

bool avx2_supported() {
  return cpu_features().avx2_fma_f16c;
}

bool avx512bf16_supported() {
  return cpu_features().avx512_bf16;
}

const Kernels* select_kernels(const char* isa) {
  if (strcmp(isa, "scalar") == 0) return &scalar_kernels();
  if (strcmp(isa, "avx2") == 0) return avx2_supported() ? &avx2_kernels() : nullptr;
  if (strcmp(isa, "avx512bf16") == 0) {
    return avx512bf16_supported() ? &avx512bf16_kernels() : nullptr;
  }
  if (strcmp(isa, "auto") == 0) {
    if (avx512bf16_supported()) return &avx512bf16_kernels();
    return avx2_supported() ? &avx2_kernels() : &scalar_kernels();
  }
  return nullptr;
}

}  // namespace lshmoe::cpu
