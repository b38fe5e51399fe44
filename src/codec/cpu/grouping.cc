#include "codec/cpu/grouping.h"

#include <algorithm>

#include "codec/cpu/refine.h"
#include "codec/lsh_math.h"

namespace lshmoe::cpu {

int longest_prefix_within_budget(const uint32_t* hist, int key_bits, size_t budget) {
  size_t groups = 1;  // groups(0)
  int best = 0;
  for (int l = 1; l <= key_bits; ++l) {
    groups += hist[l - 1];
    if (groups > budget) break;
    best = l;
  }
  return best;
}

uint32_t group_by_prefix(const uint64_t* keys, size_t n, int key_bits, size_t budget,
                         std::vector<KeyedRow>& scratch, uint32_t* assignment, int* prefix_bits) {
  if (n == 0) return 0;
  scratch.resize(n);
  for (size_t i = 0; i < n; ++i) scratch[i] = KeyedRow{keys[i], uint32_t(i)};
  std::sort(scratch.begin(), scratch.end(), [](const KeyedRow& a, const KeyedRow& b) {
    return a.key != b.key ? a.key < b.key : a.row < b.row;
  });
  uint32_t hist[65] = {};
  for (size_t i = 1; i < n; ++i) {
    ++hist[first_differing_bit(scratch[i - 1].key, scratch[i].key, key_bits)];
  }
  const int l = longest_prefix_within_budget(hist, key_bits, budget);
  if (prefix_bits != nullptr) *prefix_bits = l;
  uint32_t group = 0;
  assignment[scratch[0].row] = 0;
  for (size_t i = 1; i < n; ++i) {
    if (first_differing_bit(scratch[i - 1].key, scratch[i].key, key_bits) < l) ++group;
    assignment[scratch[i].row] = group;
  }
  return group + 1;
}

uint32_t group_isolating(const uint64_t* keys, size_t n, int key_bits, size_t budget,
                         const std::vector<uint32_t>& isolated, std::vector<KeyedRow>& scratch,
                         uint32_t* assignment) {
  if (isolated.empty()) return group_by_prefix(keys, n, key_bits, budget, scratch, assignment);
  if (budget < 2 || isolated.size() == n) {
    std::fill(assignment, assignment + n, 0u);
    return n > 0 ? 1 : 0;
  }
  // Rare path (corrupt input): group the finite rows apart.
  std::vector<uint8_t> is_isolated(n, 0);
  for (uint32_t r : isolated) is_isolated[r] = 1;
  std::vector<uint64_t> kept_keys;
  std::vector<uint32_t> kept_rows;
  for (size_t i = 0; i < n; ++i) {
    if (is_isolated[i]) continue;
    kept_keys.push_back(keys[i]);
    kept_rows.push_back(uint32_t(i));
  }
  std::vector<uint32_t> kept_assignment(kept_rows.size());
  const uint32_t groups = group_by_prefix(kept_keys.data(), kept_keys.size(), key_bits, budget - 1,
                                          scratch, kept_assignment.data());
  for (size_t k = 0; k < kept_rows.size(); ++k) assignment[kept_rows[k]] = kept_assignment[k];
  for (uint32_t r : isolated) assignment[r] = groups;
  return groups + 1;
}

uint32_t add_spare_singletons(const float* y, size_t n, size_t cols, uint32_t slots, size_t budget,
                              uint32_t* assignment, ProjectedScratch& scratch,
                              std::vector<SpareCandidate>& candidates) {
  if (budget <= slots) return slots;
  projected_means(y, n, cols, assignment, slots, scratch);
  const float* means = scratch.means.data();
  const uint32_t* counts = scratch.counts.data();
  using Candidate = SpareCandidate;
  candidates.clear();
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = assignment[i];
    if (counts[s] < 2) continue;
    float r = 0.0f;
    for (size_t c = 0; c < cols; ++c) {
      const float d = y[i * cols + c] - means[size_t(s) * cols + c];
      r += d * d;
    }
    if (r > 0.0f) candidates.push_back(Candidate{r, uint32_t(i)});
  }
  const size_t spare = std::min(budget - slots, candidates.size());
  auto worse = [](const Candidate& a, const Candidate& b) {
    return a.residual != b.residual ? a.residual > b.residual : a.row < b.row;
  };
  std::nth_element(candidates.begin(), candidates.begin() + spare, candidates.end(), worse);
  std::sort(candidates.begin(), candidates.begin() + spare,
            [](const Candidate& a, const Candidate& b) { return a.row < b.row; });
  for (size_t k = 0; k < spare; ++k) assignment[candidates[k].row] = slots + uint32_t(k);
  return slots + uint32_t(spare);
}

}  // namespace lshmoe::cpu
