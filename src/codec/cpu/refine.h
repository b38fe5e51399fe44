// Step 3 of the codec: Lloyd iterations seeded by the LSH groups, with the
// nearest centroid searched in the projected space the hash computed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/cpu/kernels.h"
#include "common/thread_pool.h"

namespace lshmoe::cpu {

// Buffers of the projected-space steps, kept by the codec across messages.
struct ProjectedScratch {
  std::vector<double> sums;       // [slots][cols]
  std::vector<float> means;       // [slots][cols]
  std::vector<uint32_t> counts;   // [slots]
  std::vector<float> transposed;  // [cols][k_stride]
  std::vector<float> norms;       // [k_stride]
  std::vector<uint32_t> remap;    // [slots]
};

// scratch.means[s] = mean of the y rows in slot s ([slots][cols]);
// scratch.counts[s] = rows in s.
void projected_means(const float* y, size_t n, size_t cols, const uint32_t* assignment,
                     uint32_t slots, ProjectedScratch& scratch);

// Renumbers the non-empty slots 0.. in ascending order; returns their count.
uint32_t compact_slots(uint32_t* assignment, size_t n, uint32_t slots,
                       std::vector<uint32_t>& remap);

// `iterations` rounds of: slot means in projected space, every row to its
// nearest mean (ties: lowest slot), empty slots dropped. Rows in `pinned`
// (non-finite ones, all in one slot) keep their slot. Returns the slots used.
uint32_t refine_projected(const Kernels& kernels, ThreadPool& pool, const float* y, size_t n,
                          size_t cols, uint32_t slots, int iterations,
                          const std::vector<uint32_t>& pinned, uint32_t* assignment,
                          ProjectedScratch& scratch);

}  // namespace lshmoe::cpu
