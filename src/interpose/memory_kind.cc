#include "interpose/memory_kind.h"

#include <dlfcn.h>

#include <atomic>
#include <cstdint>

namespace lshmoe::interpose {
namespace {

// CUDA's driver API, by value (cuda.h would tie the shim to one toolkit).
constexpr int kPointerAttributeMemoryType = 2;  // CU_POINTER_ATTRIBUTE_MEMORY_TYPE
using PointerGetAttribute = int (*)(void* data, int attribute, unsigned long long ptr);

// Looked up until found: a driver loaded after the first question (CUDA
// initialised late) is found at the next one.
PointerGetAttribute driver_query() {
  static std::atomic<PointerGetAttribute> fn{nullptr};
  PointerGetAttribute f = fn.load(std::memory_order_acquire);
  if (f != nullptr) return f;
  if (void* driver = dlopen("libcuda.so.1", RTLD_NOW | RTLD_NOLOAD)) {
    f = reinterpret_cast<PointerGetAttribute>(dlsym(driver, "cuPointerGetAttribute"));
    fn.store(f, std::memory_order_release);
  }
  return f;
}

}  // namespace

bool is_device_memory(const void* p) {
  if (p == nullptr) return false;
  const PointerGetAttribute query = driver_query();
  if (query == nullptr) return false;
  const auto address = static_cast<unsigned long long>(reinterpret_cast<uintptr_t>(p));
  // Any memory the driver knows (device, managed, pinned host) is NCCL's
  // to move as it is; only memory it does not know (an error,
  // CUDA_ERROR_INVALID_VALUE) is plain host memory.
  unsigned type = 0;
  return query(&type, kPointerAttributeMemoryType, address) == 0;
}

}  // namespace lshmoe::interpose
