// Scratch memory of the CUDA back end: one grow-only device buffer carved
// into the arrays of a launch sequence. It grows (stream-ordered, from the
// device's memory pool) only when a batch is larger than any before, so a
// steady stream of similar all-to-alls allocates nothing, and a warmed-up
// codec can be captured in a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>

#include "common/status.h"

namespace lshmoe::cuda {

class DeviceArena {
 public:
  DeviceArena() = default;
  ~DeviceArena() {
    if (base_ != nullptr) cudaFree(base_);
  }
  DeviceArena(const DeviceArena&) = delete;
  DeviceArena& operator=(const DeviceArena&) = delete;

  // Plans the carving: call reserve() for every array, then commit().
  void begin() {
    planned_ = 0;
    offset_ = 0;
  }
  template <typename T>
  void reserve(size_t count) {
    planned_ = align(planned_) + count * sizeof(T);
  }
  Status commit(cudaStream_t stream) {
    offset_ = 0;
    if (planned_ <= capacity_) return LSHMOE_SUCCESS;
    if (base_ != nullptr) cudaFreeAsync(base_, stream);
    base_ = nullptr;
    capacity_ = 0;
    const size_t bytes = planned_ + planned_ / 4;
    if (cudaMallocAsync(&base_, bytes, stream) != cudaSuccess) {
      return fail(LSHMOE_ERR_OUT_OF_MEMORY, "cuda: %zu bytes of scratch", bytes);
    }
    capacity_ = bytes;
    return LSHMOE_SUCCESS;
  }
  // The next array, in the order reserved.
  template <typename T>
  T* take(size_t count) {
    offset_ = align(offset_);
    T* p = reinterpret_cast<T*>(static_cast<char*>(base_) + offset_);
    offset_ += count * sizeof(T);
    return p;
  }

 private:
  static size_t align(size_t x) { return (x + 255) & ~size_t(255); }
  void* base_ = nullptr;
  size_t capacity_ = 0;
  size_t planned_ = 0;
  size_t offset_ = 0;
};

}  // namespace lshmoe::cuda
