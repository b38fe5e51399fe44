// Step 2 of the codec: budgeted grouping by the longest key prefix whose
// number of distinct values fits the slot budget, then spare slots filled
// with the worst-fitting rows as singletons.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/cpu/refine.h"

namespace lshmoe::cpu {

struct KeyedRow {
  uint64_t key;
  uint32_t row;
};

// hist[p] = number of adjacent sorted pairs whose first differing bit is p;
// groups(l) = 1 + sum_{p < l} hist[p]. Returns the largest l in [0, key_bits]
// with groups(l) <= budget (budget >= 1).
int longest_prefix_within_budget(const uint32_t* hist, int key_bits, size_t budget);

// Assigns every row the group of its prefix (the longest within `budget`),
// groups numbered in ascending prefix order. Returns the number of groups.
uint32_t group_by_prefix(const uint64_t* keys, size_t n, int key_bits, size_t budget,
                         std::vector<KeyedRow>& scratch, uint32_t* assignment,
                         int* prefix_bits = nullptr);

// As group_by_prefix, but the rows in `isolated` (non-finite ones) stay out
// of the grouping and share the last slot, so they spoil no other slot.
// With a budget of 1, or nothing else to group, all rows share slot 0.
uint32_t group_isolating(const uint64_t* keys, size_t n, int key_bits, size_t budget,
                         const std::vector<uint32_t>& isolated, std::vector<KeyedRow>& scratch,
                         uint32_t* assignment);

// Moves the `budget - slots` rows farthest (in projected space y, [n][cols])
// from their slot's mean into new singleton slots numbered from `slots` in
// ascending row order. Returns the new slot count (slots may become empty:
// compact afterwards).
struct SpareCandidate {
  float residual;
  uint32_t row;
};
uint32_t add_spare_singletons(const float* y, size_t n, size_t cols, uint32_t slots, size_t budget,
                              uint32_t* assignment, ProjectedScratch& scratch,
                              std::vector<SpareCandidate>& candidates);

}  // namespace lshmoe::cpu
