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
  // The bucketed search (refine_projected with probes > 0).
  std::vector<uint32_t> slot_bucket, bucket_begin, bucket_slots, fill;
  std::vector<uint32_t> row_codes, row_begin, bucket_rows, local_best, best_slot;
  std::vector<size_t> block_offset;
  std::vector<float> block_norms, gathered, best_score, local_score;
};

// scratch.means[s] = mean of the y rows in slot s ([slots][cols]);
// scratch.counts[s] = rows in s.
void projected_means(const float* y, size_t n, size_t cols, const uint32_t* assignment,
                     uint32_t slots, ProjectedScratch& scratch);

// Renumbers the non-empty slots 0.. in ascending order; returns their count.
uint32_t compact_slots(uint32_t* assignment, size_t n, uint32_t slots,
                       std::vector<uint32_t>& remap);

// How a Lloyd step looks for a row's nearest slot mean.
struct RefineSearch {
  int iterations = 1;
  // 0: among every slot. P > 0: among the slots whose mean has, in the first
  // table (coordinates [0, dim)), one of the row's P likeliest cross-polytope
  // codes (its P largest |y_j|) or the code of the row's own slot: about
  // P / (2 dim) of the slots.
  int probes = 0;
  int dim = 1;
};

// `search.iterations` rounds of: slot means in projected space, every row to
// its nearest candidate mean (ties: lowest slot), empty slots dropped. Rows in
// `pinned` (non-finite ones, all in one slot) keep their slot. Returns the
// slots used.
uint32_t refine_projected(const Kernels& kernels, ThreadPool& pool, const float* y, size_t n,
                          size_t cols, uint32_t slots, const RefineSearch& search,
                          const std::vector<uint32_t>& pinned, uint32_t* assignment,
                          ProjectedScratch& scratch);

}  // namespace lshmoe::cpu
