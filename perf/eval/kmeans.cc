#include "eval/kmeans.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>

namespace lshmoe::eval {

KMeansResult kmeans(const cpu::Kernels& kernels, const float* x, size_t n, size_t row_elems,
                    size_t k, int iterations, uint64_t seed) {
  KMeansResult r;
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  r.centroids.resize(k * row_elems);
  for (size_t c = 0; c < k; ++c)
    std::copy_n(x + size_t(order[c]) * row_elems, row_elems, r.centroids.begin() + c * row_elems);
  r.assignment.assign(n, 0);
  const size_t k_stride = (k + cpu::kNearestBlock - 1) / cpu::kNearestBlock * cpu::kNearestBlock;
  std::vector<float> ct(row_elems * k_stride), norms(k_stride);
  std::vector<double> sums(k * row_elems);
  std::vector<size_t> counts(k);
  for (int it = 0; it < iterations; ++it) {
    std::fill(ct.begin(), ct.end(), 0.0f);
    std::fill(norms.begin(), norms.end(), std::numeric_limits<float>::infinity());
    for (size_t c = 0; c < k; ++c) {
      float norm = 0.0f;
      for (size_t j = 0; j < row_elems; ++j) {
        const float v = r.centroids[c * row_elems + j];
        ct[j * k_stride + c] = v;
        norm += v * v;
      }
      norms[c] = norm;
    }
    kernels.nearest(x, 0, n, row_elems, ct.data(), norms.data(), k_stride, r.assignment.data());
    std::fill(sums.begin(), sums.end(), 0.0);
    std::fill(counts.begin(), counts.end(), 0);
    for (size_t i = 0; i < n; ++i) {
      const size_t c = r.assignment[i];
      ++counts[c];
      for (size_t j = 0; j < row_elems; ++j) sums[c * row_elems + j] += x[i * row_elems + j];
    }
    for (size_t c = 0; c < k; ++c) {
      if (counts[c] == 0) continue;
      for (size_t j = 0; j < row_elems; ++j)
        r.centroids[c * row_elems + j] = float(sums[c * row_elems + j] / double(counts[c]));
    }
  }
  return r;
}

}  // namespace lshmoe::eval
