// AVX2 + FMA + F16C kernels. Only the functions defined below the target
// pragma use those instructions; shared inline helpers (dtype.h) keep the
// baseline ISA, so the linker can never pick an AVX2 copy of them for code
// that runs on an older processor.
#include <immintrin.h>

#include <cmath>
#include <limits>

#include "codec/cpu/kernels.h"
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

namespace lshmoe::cpu {

const Kernels& avx2_kernels() {
  static const Kernels k = avx2_isa::make_kernels<Avx2Vec>("avx2");
  return k;
}

}  // namespace lshmoe::cpu

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif
