#include "codec/cuda/slot_index.h"

#include <cub/device/device_radix_sort.cuh>
#include <cub/device/device_scan.cuh>

#include "codec/cuda/cuda_check.h"

namespace lshmoe::cuda {
namespace {

__global__ void slot_keys(Segments seg, const uint32_t* assignment, uint32_t* keys, uint32_t* rows,
                          uint32_t* counts) {
  const uint32_t n = seg.row_begin[seg.count];
  const uint32_t total = seg.slot_begin[seg.count];
  for (uint32_t i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
    const int m = segment_of_row(seg, i);
    uint32_t key = total;  // raw segments: after every slot
    if (seg.slots[m] > 0) {
      key = seg.slot_begin[m] + assignment[i];
      atomicAdd(&counts[key], 1u);
    }
    keys[i] = key;
    rows[i] = i;
  }
}

int bits_for(uint32_t x) {
  int b = 1;
  while (b < 32 && (uint64_t(1) << b) <= x) ++b;
  return b;
}

}  // namespace

Status SlotIndexer::build(const Segments& seg, const uint32_t* assignment, cudaStream_t stream,
                          SlotIndex* out) {
  const uint32_t n = seg.row_begin[seg.count];
  const uint32_t total = seg.slot_begin[seg.count];
  size_t sort_bytes = 0, scan_bytes = 0;
  LSHMOE_CUDA_RETURN(cub::DeviceRadixSort::SortPairs(nullptr, sort_bytes, (uint32_t*)nullptr,
                                                     (uint32_t*)nullptr, (uint32_t*)nullptr,
                                                     (uint32_t*)nullptr, int(n), 0, 32, stream));
  LSHMOE_CUDA_RETURN(cub::DeviceScan::ExclusiveSum(nullptr, scan_bytes, (uint32_t*)nullptr,
                                                   (uint32_t*)nullptr, int(total + 1), stream));
  arena_.begin();
  arena_.reserve<uint32_t>(n);          // keys in
  arena_.reserve<uint32_t>(n);          // keys out
  arena_.reserve<uint32_t>(n);          // rows in
  arena_.reserve<uint32_t>(n);          // members
  arena_.reserve<uint32_t>(total + 1);  // counts
  arena_.reserve<uint32_t>(total + 1);  // offsets
  arena_.reserve<char>(sort_bytes > scan_bytes ? sort_bytes : scan_bytes);
  LSHMOE_RETURN_IF_ERROR(arena_.commit(stream));
  uint32_t* keys = arena_.take<uint32_t>(n);
  uint32_t* keys_sorted = arena_.take<uint32_t>(n);
  uint32_t* rows = arena_.take<uint32_t>(n);
  uint32_t* members = arena_.take<uint32_t>(n);
  uint32_t* counts = arena_.take<uint32_t>(total + 1);
  uint32_t* offsets = arena_.take<uint32_t>(total + 1);
  void* temp = arena_.take<char>(sort_bytes > scan_bytes ? sort_bytes : scan_bytes);

  LSHMOE_CUDA_RETURN(cudaMemsetAsync(counts, 0, (total + 1) * sizeof(uint32_t), stream));
  if (n > 0) {
    slot_keys<<<(n + 255) / 256 < 4096 ? (n + 255) / 256 : 4096, 256, 0, stream>>>(
        seg, assignment, keys, rows, counts);
    LSHMOE_CUDA_LAUNCHED();
    LSHMOE_CUDA_RETURN(cub::DeviceRadixSort::SortPairs(
        temp, sort_bytes, keys, keys_sorted, rows, members, int(n), 0, bits_for(total), stream));
  }
  LSHMOE_CUDA_RETURN(
      cub::DeviceScan::ExclusiveSum(temp, scan_bytes, counts, offsets, int(total + 1), stream));
  out->offsets = offsets;
  out->members = members;
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::cuda
