#include "codec/cpu/refine.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "codec/lsh_math.h"

namespace lshmoe::cpu {

void projected_means(const float* y, size_t n, size_t cols, const uint32_t* assignment,
                     uint32_t slots, ProjectedScratch& scratch) {
  scratch.sums.assign(size_t(slots) * cols, 0.0);
  scratch.means.resize(size_t(slots) * cols);
  scratch.counts.assign(slots, 0);
  double* acc = scratch.sums.data();
  float* means = scratch.means.data();
  uint32_t* counts = scratch.counts.data();
  for (size_t i = 0; i < n; ++i) {
    const uint32_t s = assignment[i];
    ++counts[s];
    for (size_t c = 0; c < cols; ++c) acc[size_t(s) * cols + c] += y[i * cols + c];
  }
  for (uint32_t s = 0; s < slots; ++s) {
    const double inv = counts[s] ? 1.0 / counts[s] : 0.0;
    for (size_t c = 0; c < cols; ++c)
      means[size_t(s) * cols + c] = float(acc[size_t(s) * cols + c] * inv);
  }
}

uint32_t compact_slots(uint32_t* assignment, size_t n, uint32_t slots,
                       std::vector<uint32_t>& remap) {
  remap.assign(slots, 0);
  for (size_t i = 0; i < n; ++i) remap[assignment[i]] = 1;
  uint32_t used = 0;
  for (uint32_t s = 0; s < slots; ++s) remap[s] = remap[s] ? used++ : UINT32_MAX;
  for (size_t i = 0; i < n; ++i) assignment[i] = remap[assignment[i]];
  return used;
}

namespace {

constexpr uint32_t kNoBucket = UINT32_MAX;

// The row's `probes` likeliest first-table codes: 2j + (y_j < 0) for its
// largest |y_j| (ties: lowest j), best first. Selects, not branches: which
// coordinate wins is a coin toss per row.
void probe_codes(const float* y, int dim, int probes, uint32_t* codes) {
  uint32_t taken = 0;  // dim <= 32
  for (int p = 0; p < probes; ++p) {
    int best = 0;
    float best_abs = -1.0f;  // below every |y_j|, NaN aside
    for (int j = 0; j < dim; ++j) {
      const float a = (taken >> j & 1u) ? -1.0f : std::fabs(y[j]);
      const bool larger = a > best_abs;
      best_abs = larger ? a : best_abs;
      best = larger ? j : best;
    }
    taken |= 1u << best;
    codes[p] = uint32_t(2 * best) + (y[best] < 0.0f ? 1u : 0u);
  }
}

// Transposed means and norms of every slot (the kernel's layout).
void transpose_all(ProjectedScratch& sc, size_t cols, uint32_t slots) {
  const size_t k_stride = (slots + kNearestBlock - 1) / kNearestBlock * kNearestBlock;
  sc.transposed.assign(cols * k_stride, 0.0f);
  sc.norms.assign(k_stride, std::numeric_limits<float>::infinity());
  for (uint32_t s = 0; s < slots; ++s) {
    float norm = 0.0f;
    for (size_t c = 0; c < cols; ++c) {
      const float v = sc.means[size_t(s) * cols + c];
      sc.transposed[c * k_stride + s] = v;
      norm += v * v;
    }
    if (sc.counts[s] > 0) sc.norms[s] = norm;
  }
}

void search_all(const Kernels& kernels, ThreadPool& pool, const float* y, size_t n, size_t cols,
                uint32_t slots, uint32_t* assignment, ProjectedScratch& sc) {
  transpose_all(sc, cols, slots);
  const size_t k_stride = sc.norms.size();
  pool.parallel_for(n, n * k_stride * cols, [&](size_t r0, size_t r1) {
    kernels.nearest(y, r0, r1, cols, sc.transposed.data(), sc.norms.data(), k_stride, assignment,
                    nullptr);
  });
}

// Each row against its own slot and the slots of its probe buckets (a
// bucket: the first-table code of a slot's mean), one kernel call a bucket.
void search_buckets(const Kernels& kernels, ThreadPool& pool, const float* y, size_t n, size_t cols,
                    uint32_t slots, const RefineSearch& search, uint32_t* assignment,
                    ProjectedScratch& sc) {
  const uint32_t buckets = uint32_t(2 * search.dim);
  const int probes = search.probes;
  // Slots by bucket (counting sort; ascending slot order within a bucket).
  std::vector<float>& norms = sc.norms;
  norms.assign(slots, std::numeric_limits<float>::infinity());
  sc.bucket_begin.assign(buckets + 1, 0);
  sc.slot_bucket.resize(slots);
  for (uint32_t s = 0; s < slots; ++s) {
    const float* m = &sc.means[size_t(s) * cols];
    sc.slot_bucket[s] = cross_polytope_code(m, search.dim);
    if (sc.counts[s] == 0) continue;
    float norm = 0.0f;
    for (size_t c = 0; c < cols; ++c) norm += m[c] * m[c];
    norms[s] = norm;
    ++sc.bucket_begin[sc.slot_bucket[s] + 1];
  }
  for (uint32_t b = 0; b < buckets; ++b) sc.bucket_begin[b + 1] += sc.bucket_begin[b];
  sc.bucket_slots.resize(sc.bucket_begin[buckets]);
  sc.fill.assign(sc.bucket_begin.begin(), sc.bucket_begin.end() - 1);
  for (uint32_t s = 0; s < slots; ++s)
    if (sc.counts[s] > 0) sc.bucket_slots[sc.fill[sc.slot_bucket[s]]++] = s;
  // One transposed block per bucket.
  sc.block_offset.assign(buckets + 1, 0);
  for (uint32_t b = 0; b < buckets; ++b) {
    const size_t size = sc.bucket_begin[b + 1] - sc.bucket_begin[b];
    sc.block_offset[b + 1] =
        sc.block_offset[b] + cols * ((size + kNearestBlock - 1) / kNearestBlock * kNearestBlock);
  }
  sc.transposed.assign(sc.block_offset[buckets], 0.0f);
  sc.block_norms.assign(sc.block_offset[buckets] / cols, std::numeric_limits<float>::infinity());
  for (uint32_t b = 0; b < buckets; ++b) {
    const size_t stride = (sc.block_offset[b + 1] - sc.block_offset[b]) / cols;
    float* block = &sc.transposed[sc.block_offset[b]];
    float* bnorm = &sc.block_norms[sc.block_offset[b] / cols];
    for (uint32_t i = sc.bucket_begin[b]; i < sc.bucket_begin[b + 1]; ++i) {
      const uint32_t s = sc.bucket_slots[i], local = i - sc.bucket_begin[b];
      for (size_t c = 0; c < cols; ++c) block[c * stride + local] = sc.means[size_t(s) * cols + c];
      bnorm[local] = norms[s];
    }
  }
  // Rows by the buckets they search: their probes, and their own slot's
  // bucket when no probe is (a row never moves to a worse slot). Every
  // candidate, the own slot included, is scored by the kernel, whose score
  // of a row and a slot does not depend on where the slot sits in a block.
  const size_t searches = size_t(probes) + 1;
  sc.best_slot.assign(assignment, assignment + n);
  sc.best_score.assign(n, std::numeric_limits<float>::infinity());
  sc.row_begin.assign(buckets + 1, 0);
  sc.row_codes.resize(n * searches);
  uint32_t* row_codes = sc.row_codes.data();
  pool.parallel_for(n, n * cols, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
      uint32_t* codes = &row_codes[i * searches];
      probe_codes(y + i * cols, search.dim, probes, codes);
      const uint32_t own = sc.slot_bucket[assignment[i]];
      codes[probes] = std::find(codes, codes + probes, own) == codes + probes ? own : kNoBucket;
    }
  });
  for (size_t i = 0; i < n * searches; ++i)
    if (row_codes[i] != kNoBucket) ++sc.row_begin[row_codes[i] + 1];
  for (uint32_t b = 0; b < buckets; ++b) sc.row_begin[b + 1] += sc.row_begin[b];
  sc.bucket_rows.resize(sc.row_begin[buckets]);
  sc.fill.assign(sc.row_begin.begin(), sc.row_begin.end() - 1);
  for (size_t i = 0; i < n * searches; ++i)
    if (row_codes[i] != kNoBucket) sc.bucket_rows[sc.fill[row_codes[i]]++] = uint32_t(i / searches);
  // Per bucket: its rows, gathered, against its block.
  for (uint32_t b = 0; b < buckets; ++b) {
    const size_t m = sc.row_begin[b + 1] - sc.row_begin[b];
    const size_t stride = (sc.block_offset[b + 1] - sc.block_offset[b]) / cols;
    if (m == 0 || stride == 0) continue;
    const uint32_t* rows = &sc.bucket_rows[sc.row_begin[b]];
    sc.gathered.resize(m * cols);
    for (size_t r = 0; r < m; ++r)
      std::copy(y + size_t(rows[r]) * cols, y + size_t(rows[r] + 1) * cols, &sc.gathered[r * cols]);
    sc.local_best.resize(m);
    sc.local_score.resize(m);
    const float* block = &sc.transposed[sc.block_offset[b]];
    const float* bnorm = &sc.block_norms[sc.block_offset[b] / cols];
    // A row is listed once per bucket: the ranges update distinct rows.
    pool.parallel_for(m, m * stride * cols, [&](size_t r0, size_t r1) {
      kernels.nearest(sc.gathered.data(), r0, r1, cols, block, bnorm, stride, sc.local_best.data(),
                      sc.local_score.data());
      for (size_t r = r0; r < r1; ++r) {
        const uint32_t i = rows[r];
        const uint32_t s = sc.bucket_slots[sc.bucket_begin[b] + sc.local_best[r]];
        const float v = sc.local_score[r];
        if (!(v < std::numeric_limits<float>::infinity())) continue;  // no finite candidate
        if (v < sc.best_score[i] || (v == sc.best_score[i] && s < sc.best_slot[i])) {
          sc.best_score[i] = v;
          sc.best_slot[i] = s;
        }
      }
    });
  }
  std::copy(sc.best_slot.begin(), sc.best_slot.end(), assignment);
}

}  // namespace

uint32_t refine_projected(const Kernels& kernels, ThreadPool& pool, const float* y, size_t n,
                          size_t cols, uint32_t slots, const RefineSearch& search,
                          const std::vector<uint32_t>& pinned, uint32_t* assignment,
                          ProjectedScratch& scratch) {
  // A row has `dim` distinct likeliest codes: probing that many or more is
  // left to the full search.
  const bool bucketed = search.probes > 0 && search.probes < search.dim;
  for (int it = 0; it < search.iterations; ++it) {
    projected_means(y, n, cols, assignment, slots, scratch);
    // A non-finite centroid scores NaN, which never wins: finite rows never
    // join the pinned slot, and the pinned rows are put back after the search.
    const uint32_t pinned_slot = pinned.empty() ? 0 : assignment[pinned[0]];
    if (bucketed) {
      search_buckets(kernels, pool, y, n, cols, slots, search, assignment, scratch);
    } else {
      search_all(kernels, pool, y, n, cols, slots, assignment, scratch);
    }
    for (uint32_t r : pinned) assignment[r] = pinned_slot;
    slots = compact_slots(assignment, n, slots, scratch.remap);
  }
  return slots;
}

}  // namespace lshmoe::cpu
