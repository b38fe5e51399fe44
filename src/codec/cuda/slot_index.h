// Rows grouped by slot on the device (the CUDA counterpart of
// cpu::SlotIndex): a stable radix sort of (global slot, row), so the rows of
// a slot come in ascending order, the order the CPU sums them in.
#pragma once

#include <cuda_runtime.h>

#include "codec/cuda/batch.h"
#include "codec/cuda/device_arena.h"

namespace lshmoe::cuda {

struct SlotIndex {
  const uint32_t* offsets = nullptr;  // [total slots + 1], into members
  const uint32_t* members = nullptr;  // [rows]: batch rows, grouped by slot
};

class SlotIndexer {
 public:
  // assignment[row]: the local slot of every row of a compressed segment
  // (rows of raw segments are ignored).
  Status build(const Segments& seg, const uint32_t* assignment, cudaStream_t stream,
               SlotIndex* out);

 private:
  DeviceArena arena_;
};

}  // namespace lshmoe::cuda
