#include "codec/cpu/refine.h"

#include <limits>

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

uint32_t refine_projected(const Kernels& kernels, ThreadPool& pool, const float* y, size_t n,
                          size_t cols, uint32_t slots, int iterations,
                          const std::vector<uint32_t>& pinned, uint32_t* assignment,
                          ProjectedScratch& scratch) {
  for (int it = 0; it < iterations; ++it) {
    projected_means(y, n, cols, assignment, slots, scratch);
    const size_t k_stride = (slots + kNearestBlock - 1) / kNearestBlock * kNearestBlock;
    scratch.transposed.assign(cols * k_stride, 0.0f);
    scratch.norms.assign(k_stride, std::numeric_limits<float>::infinity());
    for (uint32_t s = 0; s < slots; ++s) {
      float norm = 0.0f;
      for (size_t c = 0; c < cols; ++c) {
        const float v = scratch.means[size_t(s) * cols + c];
        scratch.transposed[c * k_stride + s] = v;
        norm += v * v;
      }
      if (scratch.counts[s] > 0) scratch.norms[s] = norm;
    }
    // A non-finite centroid scores NaN, which never wins: finite rows never
    // join the pinned slot, and the pinned rows are put back after the search.
    const uint32_t pinned_slot = pinned.empty() ? 0 : assignment[pinned[0]];
    pool.parallel_for(n, n * k_stride * cols, [&](size_t r0, size_t r1) {
      kernels.nearest(y, r0, r1, cols, scratch.transposed.data(), scratch.norms.data(), k_stride,
                      assignment);
    });
    for (uint32_t r : pinned) assignment[r] = pinned_slot;
    slots = compact_slots(assignment, n, slots, scratch.remap);
  }
  return slots;
}

}  // namespace lshmoe::cpu
