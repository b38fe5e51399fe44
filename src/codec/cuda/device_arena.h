// Scratch memory of the CUDA back end: one grow-only device buffer carved
// into the arrays of a launch sequence. It grows (stream-ordered, from the
// device's memory pool) only when a batch is larger than any before, so a
// steady stream of similar all-to-alls allocates nothing, and a warmed-up
// codec can be captured in a CUDA graph.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/status.h"

namespace lshmoe::cuda {

// One grow-only device buffer, stream-ordered (with a quarter of headroom,
// so that slowly growing sizes do not reallocate every call). Destruction
// waits for the device, as cudaFree of ordinary memory does: work queued
// with the buffer may still read it, on a stream that may be gone by then.
// Once used in a graph capture it never frees a buffer it outgrows (an
// instantiated graph may still use it), and it refuses to grow during a
// capture.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  ~DeviceBuffer() {
    if (ptr_ == nullptr && retired_.empty()) return;
    cudaDeviceSynchronize();
    for (void* p : retired_) cudaFree(p);
    if (ptr_ != nullptr) cudaFree(ptr_);
  }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  Status ensure(size_t bytes, cudaStream_t stream) {
    bool capturing = false;
    const cudaError_t c = capture_state(stream, &capturing);
    if (c != cudaSuccess) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "cuda: cannot use this stream: %s",
                  cudaGetErrorString(c));
    }
    if (capturing) in_graph_ = true;
    if (bytes <= size_) return LSHMOE_SUCCESS;
    if (capturing) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "cuda: %zu bytes of device memory needed during a graph capture, %zu held: "
                  "run the same sizes once before capturing",
                  bytes, size_);
    }
    if (ptr_ != nullptr) {
      if (in_graph_) {
        retired_.push_back(ptr_);
      } else {
        cudaFreeAsync(ptr_, stream);
      }
    }
    ptr_ = nullptr;
    size_ = 0;
    const size_t want = bytes + bytes / 4;
    const cudaError_t e = cudaMallocAsync(&ptr_, want, stream);
    if (e != cudaSuccess) {
      cudaGetLastError();  // not sticky: keep it from surfacing at the next launch check
      ptr_ = nullptr;
      return fail(LSHMOE_ERR_OUT_OF_MEMORY, "cuda: %zu bytes of device memory: %s", want,
                  cudaGetErrorString(e));
    }
    size_ = want;
    return LSHMOE_SUCCESS;
  }
  template <typename T>
  T* as() const {
    return static_cast<T*>(ptr_);
  }
  // For work that reads the buffer without sizing it (a combine reading its
  // dispatch's context): a capture still pins the buffer.
  void note_use(cudaStream_t stream) const {
    bool capturing = false;
    if (capture_state(stream, &capturing) == cudaSuccess && capturing) in_graph_ = true;
  }

 private:
  // Errors are not sticky here: cleared, so the next launch check does not report them.
  static cudaError_t capture_state(cudaStream_t stream, bool* capturing) {
    cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
    const cudaError_t e = cudaStreamIsCapturing(stream, &status);
    if (e != cudaSuccess) cudaGetLastError();
    *capturing = e == cudaSuccess && status != cudaStreamCaptureStatusNone;
    return e;
  }

  void* ptr_ = nullptr;
  size_t size_ = 0;
  mutable bool in_graph_ = false;
  std::vector<void*> retired_;
};

class DeviceArena {
 public:
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
    return buffer_.ensure(planned_, stream);
  }
  // The next array, in the order reserved.
  template <typename T>
  T* take(size_t count) {
    offset_ = align(offset_);
    T* p = reinterpret_cast<T*>(buffer_.as<char>() + offset_);
    offset_ += count * sizeof(T);
    return p;
  }

 private:
  static size_t align(size_t x) { return (x + 255) & ~size_t(255); }
  DeviceBuffer buffer_;
  size_t planned_ = 0;
  size_t offset_ = 0;
};

}  // namespace lshmoe::cuda
