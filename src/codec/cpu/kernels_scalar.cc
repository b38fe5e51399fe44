// Portable kernels: a "vector" of one float.
#include <cstring>

#define LSHMOE_KERNEL_NS scalar_isa
#include "codec/cpu/kernels_impl.h"

namespace lshmoe::cpu {
namespace {

struct ScalarVec {
  static constexpr size_t W = 1;
  using T = float;
  static T zero() { return 0.0f; }
  static T set1(float v) { return v; }
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T load(DType t, const void* base, size_t i) { return load_elem(t, base, i); }
  static void store(DType t, void* base, size_t i, T v) { store_elem(t, base, i, v); }
  static T add(T a, T b) { return a + b; }
  static T sub(T a, T b) { return a - b; }
  static T mul(T a, T b) { return a * b; }
  static T fma(T a, T b, T c) { return a * b + c; }
  static float hsum(T v) { return v; }
  static T less(T a, T b) { return bit_cast_hd<float>(a < b ? ~0u : 0u); }
  static T select(T mask, T a, T b) { return bit_cast_hd<uint32_t>(mask) ? a : b; }
  static T index_bits(uint32_t base) { return bit_cast_hd<float>(base); }
  static void store_bits(uint32_t* p, T v) { *p = bit_cast_hd<uint32_t>(v); }
};

}  // namespace

const Kernels& scalar_kernels() {
  static const Kernels k = scalar_isa::make_kernels<ScalarVec>("scalar");
  return k;
}

}  // namespace lshmoe::cpu
