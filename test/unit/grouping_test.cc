// Budgeted grouping (step 2 of the codec): prefix groups against a brute
// force, spare singletons, slot compaction.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <numeric>
#include <random>
#include <set>
#include <vector>

#include "codec/cpu/grouping.h"
#include "codec/cpu/kernels.h"
#include "codec/cpu/refine.h"
#include "codec/lsh_math.h"
#include "test_util.h"

namespace lshmoe::cpu {
namespace {

uint64_t prefix_of(uint64_t key, int key_bits, int l) {
  return l == 0 ? 0 : key >> (key_bits - l);
}

// Keys of key_bits bits with many duplicates: drawn from a pool smaller
// than n, and sometimes sharing their high bits so that short prefixes
// collapse while long ones do not.
std::vector<uint64_t> random_keys(std::mt19937_64& rng, size_t n, int key_bits) {
  const uint64_t mask = key_bits == 64 ? ~uint64_t(0) : (uint64_t(1) << key_bits) - 1;
  const size_t pool_size = 1 + rng() % n;
  const uint64_t shared_high = rng();
  const int free_bits = 1 + int(rng() % key_bits);
  const uint64_t free_mask = free_bits == 64 ? ~uint64_t(0) : (uint64_t(1) << free_bits) - 1;
  std::vector<uint64_t> pool(pool_size);
  for (uint64_t& k : pool) k = ((shared_high & ~free_mask) | (rng() & free_mask)) & mask;
  std::vector<uint64_t> keys(n);
  for (uint64_t& k : keys) k = pool[rng() % pool_size];
  return keys;
}

TEST(GroupByPrefix, MatchesBruteForceForEverySize) {
  std::mt19937_64 rng(2024);
  std::vector<KeyedRow> scratch;
  int partial_prefixes = 0;  // cases where the budget cut the key short
  for (size_t n = 1; n <= 2000; ++n) {
    const int key_bits = 1 + int(rng() % 64);
    const size_t budget = 1 + rng() % n;
    const std::vector<uint64_t> keys = random_keys(rng, n, key_bits);

    // Brute force: sorting by the full key sorts every prefix too, so
    // distinct prefixes are the changes between neighbours.
    std::vector<uint64_t> sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    int want_l = 0;
    for (int l = 0; l <= key_bits; ++l) {
      size_t groups = 1;
      for (size_t i = 1; i < n; ++i)
        groups += prefix_of(sorted[i], key_bits, l) != prefix_of(sorted[i - 1], key_bits, l);
      if (groups <= budget) want_l = l;
    }
    std::vector<uint64_t> prefixes(n);
    for (size_t i = 0; i < n; ++i) prefixes[i] = prefix_of(sorted[i], key_bits, want_l);
    prefixes.erase(std::unique(prefixes.begin(), prefixes.end()), prefixes.end());

    std::vector<uint32_t> assignment(n, UINT32_MAX);
    int l = -1;
    const uint32_t groups =
        group_by_prefix(keys.data(), n, key_bits, budget, scratch, assignment.data(), &l);
    ASSERT_EQ(l, want_l) << "n " << n << " budget " << budget << " key_bits " << key_bits;
    ASSERT_LE(groups, budget);
    ASSERT_EQ(groups, prefixes.size());
    partial_prefixes += l > 0 && l < key_bits;
    for (size_t i = 0; i < n; ++i) {
      // Group = rank of the row's prefix among the distinct prefixes.
      const uint64_t p = prefix_of(keys[i], key_bits, l);
      const size_t rank =
          size_t(std::lower_bound(prefixes.begin(), prefixes.end(), p) - prefixes.begin());
      ASSERT_EQ(assignment[i], rank) << "n " << n << " row " << i;
    }
  }
  EXPECT_GT(partial_prefixes, 300);
}

TEST(GroupByPrefix, FullKeysWhenTheBudgetAllows) {
  const uint64_t keys[] = {5, 3, 5, 9, 3, 3};
  std::vector<KeyedRow> scratch;
  uint32_t a[6];
  int l = -1;
  EXPECT_EQ(group_by_prefix(keys, 6, 4, 3, scratch, a, &l), 3u);
  EXPECT_EQ(l, 4);
  EXPECT_EQ(std::vector<uint32_t>(a, a + 6), (std::vector<uint32_t>{1, 0, 1, 2, 0, 0}));
  // Budget 1: one group, an empty prefix.
  EXPECT_EQ(group_by_prefix(keys, 6, 4, 1, scratch, a, &l), 1u);
  EXPECT_EQ(l, 0);
  for (uint32_t x : a) EXPECT_EQ(x, 0u);
}

// hist[p] counts neighbours first differing at bit p; groups(l) = 1 + sum
// of hist below l.
TEST(LongestPrefixWithinBudget, IsTheLargestFittingLength) {
  uint32_t hist[64] = {};
  hist[0] = 1;  // groups(1) = 2
  hist[3] = 5;  // groups(4) = 7
  hist[7] = 2;  // groups(8) = 9
  EXPECT_EQ(longest_prefix_within_budget(hist, 10, 1), 0);
  EXPECT_EQ(longest_prefix_within_budget(hist, 10, 2), 3);
  EXPECT_EQ(longest_prefix_within_budget(hist, 10, 6), 3);
  EXPECT_EQ(longest_prefix_within_budget(hist, 10, 7), 7);
  EXPECT_EQ(longest_prefix_within_budget(hist, 10, 9), 10);
  EXPECT_EQ(longest_prefix_within_budget(hist, 10, 1000), 10);
}

struct SpareCase {
  size_t n, cols;
  uint32_t slots;
  size_t budget;
};

TEST(AddSpareSingletons, MovesTheLargestResidualsWithinBudget) {
  std::mt19937_64 rng(77);
  std::normal_distribution<float> dist;
  ProjectedScratch scratch;
  std::vector<SpareCandidate> candidates;
  const SpareCase cases[] = {{100, 8, 10, 20},    {1000, 48, 50, 200}, {57, 4, 3, 57},
                             {500, 12, 499, 500}, {300, 16, 40, 40},   {64, 8, 1, 10},
                             {2000, 48, 300, 400}};
  for (const SpareCase& c : cases) {
    std::vector<float> y(c.n * c.cols);
    for (float& v : y) v = dist(rng);
    // Every slot non-empty, some singletons.
    std::vector<uint32_t> a(c.n);
    for (size_t i = 0; i < c.n; ++i) a[i] = i < c.slots ? uint32_t(i) : uint32_t(rng() % c.slots);
    std::shuffle(a.begin(), a.end(), rng);
    const std::vector<uint32_t> before = a;

    // Residuals to the slot means, in double.
    std::vector<double> mean(size_t(c.slots) * c.cols, 0.0);
    std::vector<size_t> count(c.slots, 0);
    for (size_t i = 0; i < c.n; ++i) {
      ++count[a[i]];
      for (size_t k = 0; k < c.cols; ++k) mean[a[i] * c.cols + k] += y[i * c.cols + k];
    }
    for (uint32_t s = 0; s < c.slots; ++s)
      for (size_t k = 0; k < c.cols; ++k) mean[s * c.cols + k] /= double(count[s]);
    std::vector<double> residual(c.n);
    for (size_t i = 0; i < c.n; ++i) {
      double r = 0;
      for (size_t k = 0; k < c.cols; ++k) {
        const double d = y[i * c.cols + k] - mean[a[i] * c.cols + k];
        r += d * d;
      }
      residual[i] = r;
    }

    const uint32_t slots = add_spare_singletons(y.data(), c.n, c.cols, c.slots, c.budget, a.data(),
                                                scratch, candidates);
    ASSERT_LE(slots, c.budget);
    size_t movable = 0;
    for (size_t i = 0; i < c.n; ++i) movable += count[before[i]] >= 2;
    ASSERT_EQ(slots, c.slots + std::min(c.budget - c.slots, movable));

    std::vector<size_t> moved;
    double min_moved = INFINITY, max_kept = 0;
    for (size_t i = 0; i < c.n; ++i) {
      if (a[i] != before[i]) {
        ASSERT_GE(a[i], c.slots);
        ASSERT_GE(count[before[i]], 2u) << "a singleton slot lost its only row";
        moved.push_back(i);
        min_moved = std::min(min_moved, residual[i]);
      } else if (count[before[i]] >= 2) {
        max_kept = std::max(max_kept, residual[i]);
      }
    }
    ASSERT_EQ(moved.size(), slots - c.slots);
    // New slots in ascending row order, one row each.
    for (size_t k = 0; k < moved.size(); ++k) ASSERT_EQ(a[moved[k]], c.slots + k);
    // The codec ranks in float: allow its rounding, far below the gaps.
    if (!moved.empty() && max_kept > 0) {
      EXPECT_GE(min_moved, max_kept * (1 - 1e-5)) << "n " << c.n;
    }
  }
}

TEST(AddSpareSingletons, NoSpareBudgetChangesNothing) {
  std::vector<float> y(40 * 4, 1.0f);
  for (size_t i = 0; i < y.size(); ++i) y[i] = float(i % 7);
  std::vector<uint32_t> a(40);
  for (size_t i = 0; i < 40; ++i) a[i] = uint32_t(i % 5);
  const std::vector<uint32_t> before = a;
  ProjectedScratch scratch;
  std::vector<SpareCandidate> candidates;
  EXPECT_EQ(add_spare_singletons(y.data(), 40, 4, 5, 5, a.data(), scratch, candidates), 5u);
  EXPECT_EQ(a, before);
  // Rows equal to their slot mean (zero residual) are not worth a slot.
  std::vector<float> same(40 * 4, 3.0f);
  EXPECT_EQ(add_spare_singletons(same.data(), 40, 4, 5, 20, a.data(), scratch, candidates), 5u);
  EXPECT_EQ(a, before);
}

TEST(CompactSlots, RenumbersUsedSlotsInOrder) {
  std::mt19937_64 rng(8);
  std::vector<uint32_t> remap;
  for (int trial = 0; trial < 200; ++trial) {
    const uint32_t slots = 1 + uint32_t(rng() % 300);
    const size_t n = 1 + rng() % 500;
    // Use only a random subset of the slots.
    std::vector<uint32_t> allowed;
    for (uint32_t s = 0; s < slots; ++s)
      if (rng() % 3 == 0) allowed.push_back(s);
    if (allowed.empty()) allowed.push_back(slots - 1);
    std::vector<uint32_t> a(n);
    for (uint32_t& x : a) x = allowed[rng() % allowed.size()];
    const std::vector<uint32_t> before = a;
    const uint32_t used = compact_slots(a.data(), n, slots, remap);
    const std::set<uint32_t> distinct(before.begin(), before.end());
    ASSERT_EQ(used, distinct.size());
    // The new number of a slot is its rank among the used ones.
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(a[i], uint32_t(std::distance(distinct.begin(), distinct.find(before[i]))));
    }
  }
}

// One Lloyd step with the bucketed search, against a brute force over the
// same candidates: the slots whose mean has one of the row's `probes`
// likeliest first-table codes or its own slot's code, scored as the scalar
// kernel does. Probing `dim` or more codes is the full search, bit for bit.
TEST(RefineProjected, BucketedSearchPicksTheNearestCandidate) {
  std::mt19937_64 rng(12);
  std::normal_distribution<float> dist;
  const Kernels& kernels = scalar_kernels();
  ThreadPool pool(2);
  for (int trial = 0; trial < 30; ++trial) {
    const int dim = 8, cols = 48;
    const size_t n = 50 + rng() % 700;
    const uint32_t slots = 1 + uint32_t(rng() % (n / 3));
    std::vector<float> y(n * cols);
    for (float& v : y) v = dist(rng);
    std::vector<uint32_t> seed(n);
    for (size_t i = 0; i < n; ++i) seed[i] = i < slots ? uint32_t(i) : uint32_t(rng() % slots);
    ProjectedScratch scratch;
    projected_means(y.data(), n, cols, seed.data(), slots, scratch);
    const std::vector<float> means = scratch.means;
    for (int probes : {1, 3}) {
      std::vector<uint32_t> got = seed;
      const uint32_t used = refine_projected(kernels, pool, y.data(), n, cols, slots,
                                             RefineSearch{1, probes, dim}, {}, got.data(), scratch);
      // The brute force, before compaction.
      std::vector<uint32_t> want(n);
      for (size_t i = 0; i < n; ++i) {
        const float* yi = &y[i * cols];
        std::vector<std::pair<float, int>> order;
        for (int j = 0; j < dim; ++j) order.push_back({-std::fabs(yi[j]), j});
        std::stable_sort(order.begin(), order.end());
        std::set<uint32_t> codes;
        for (int p = 0; p < probes; ++p) {
          const int j = order[p].second;
          codes.insert(uint32_t(2 * j) + (yi[j] < 0.0f ? 1u : 0u));
        }
        codes.insert(cross_polytope_code(&means[seed[i] * cols], dim));
        auto score = [&](uint32_t s) {
          float dot = 0.0f, norm = 0.0f;
          for (int c = 0; c < cols; ++c) {
            dot += yi[c] * means[s * cols + c];
            norm += means[s * cols + c] * means[s * cols + c];
          }
          return norm - 2.0f * dot;
        };
        uint32_t best = seed[i];
        float best_score = score(best);
        for (uint32_t s = 0; s < slots; ++s) {
          if (!codes.count(cross_polytope_code(&means[s * cols], dim))) continue;
          const float v = score(s);
          if (v < best_score || (v == best_score && s < best)) {
            best = s;
            best_score = v;
          }
        }
        want[i] = best;
      }
      std::vector<uint32_t> remap;
      ASSERT_EQ(compact_slots(want.data(), n, slots, remap), used);
      ASSERT_EQ(got, want) << "trial " << trial << " probes " << probes;
    }
    // probes >= dim: the full search.
    std::vector<uint32_t> full = seed, wide = seed;
    refine_projected(kernels, pool, y.data(), n, cols, slots, RefineSearch{1, 0, dim}, {},
                     full.data(), scratch);
    refine_projected(kernels, pool, y.data(), n, cols, slots, RefineSearch{1, dim, dim}, {},
                     wide.data(), scratch);
    ASSERT_EQ(full, wide);
  }
}

}  // namespace
}  // namespace lshmoe::cpu
