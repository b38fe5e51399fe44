// The messages of one all-to-all, as the CUDA back end sees them: segments of
// one row buffer (message m is rows [row_begin[m], row_begin[m+1])) and of
// one wire buffer. Every size here is known on the host before any data is
// looked at; the segment table travels to the kernels as a parameter (no
// copy, CUDA-graph capturable).
#pragma once

#include <cstddef>
#include <cstdint>

namespace lshmoe::cuda {

inline constexpr int kMaxSegments = 64;  // messages per launch sequence
// Row elements per block of the per-slot message kernels, and so the longest
// row: those kernels span a row with gridDim.y (at most 65535) such blocks.
inline constexpr uint32_t kRowBlock = 256;
inline constexpr uint32_t kMaxRowElems = 65535u * kRowBlock;

struct Segments {
  int count = 0;
  uint32_t row_elems = 0;
  uint32_t dtype = 0;
  uint32_t rows[kMaxSegments];            // n_m
  uint32_t slots[kMaxSegments];           // K_m (0: the message travels raw)
  uint32_t row_begin[kMaxSegments + 1];   // prefix sums of rows
  uint32_t slot_begin[kMaxSegments + 1];  // prefix sums of slots
  // Centroid mode: where each message's rows start on the expert side
  // (slots of a compressed message, rows of a raw one).
  uint32_t expert_begin[kMaxSegments + 1];
  uint64_t wire_offset[kMaxSegments];  // bytes into the wire buffer
  uint64_t seq;
};

// The segment holding a row, or a slot: the last m with prefix[m] <= x (the
// last of equal prefixes, so empty segments are skipped), a search over at
// most kMaxSegments prefix sums.
#if defined(__CUDACC__)
__device__ __forceinline__ int last_segment_at(const uint32_t* prefix, int count, uint32_t x) {
  int lo = 0, hi = count - 1;
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (prefix[mid] <= x) {
      lo = mid;
    } else {
      hi = mid - 1;
    }
  }
  return lo;
}
__device__ __forceinline__ int segment_of_row(const Segments& s, uint32_t row) {
  return last_segment_at(s.row_begin, s.count, row);
}
__device__ __forceinline__ int segment_of_slot(const Segments& s, uint32_t slot) {
  return last_segment_at(s.slot_begin, s.count, slot);
}
#endif

}  // namespace lshmoe::cuda
