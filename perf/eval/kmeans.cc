#include "eval/kmeans.h"

#include <algorithm>
#include <limits>
#include <numeric>
#include <random>

namespace lshmoe::eval {

namespace {

double squared_distance(const float* a, const float* b, size_t len) {
  double d = 0.0;
  for (size_t j = 0; j < len; ++j) {
    const double t = double(a[j]) - b[j];
    d += t * t;
  }
  return d;
}

// k-means++ seeding (Arthur & Vassilvitskii, 2007): each next centre is a
// row drawn with probability proportional to its squared distance to the
// nearest centre so far.
void seed_plus_plus(const float* x, size_t n, size_t row_elems, size_t k, uint64_t seed,
                    float* centroids) {
  std::mt19937_64 rng(seed);
  std::vector<double> nearest(n, std::numeric_limits<double>::infinity());
  size_t pick = std::uniform_int_distribution<size_t>(0, n - 1)(rng);
  for (size_t c = 0; c < k; ++c) {
    const float* centre = x + pick * row_elems;
    std::copy_n(centre, row_elems, centroids + c * row_elems);
    double total = 0.0;
    for (size_t i = 0; i < n; ++i) {
      nearest[i] = std::min(nearest[i], squared_distance(x + i * row_elems, centre, row_elems));
      total += nearest[i];
    }
    if (total <= 0.0) {  // fewer distinct rows than centres: repeat one
      pick = (pick + 1) % n;
      continue;
    }
    double target = std::uniform_real_distribution<double>(0.0, total)(rng);
    pick = n - 1;
    for (size_t i = 0; i < n; ++i) {
      target -= nearest[i];
      if (target < 0.0) {
        pick = i;
        break;
      }
    }
  }
}

// k distinct rows drawn uniformly (the reference implementation's seeding).
void seed_random_rows(const float* x, size_t n, size_t row_elems, size_t k, uint64_t seed,
                      float* centroids) {
  std::vector<uint32_t> order(n);
  std::iota(order.begin(), order.end(), 0u);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  for (size_t c = 0; c < k; ++c)
    std::copy_n(x + size_t(order[c]) * row_elems, row_elems, centroids + c * row_elems);
}

}  // namespace

KMeansResult kmeans(const cpu::Kernels& kernels, const float* x, size_t n, size_t row_elems,
                    size_t k, int iterations, uint64_t seed, KMeansInit init) {
  KMeansResult r;
  r.centroids.resize(k * row_elems);
  if (init == KMeansInit::kPlusPlus) {
    seed_plus_plus(x, n, row_elems, k, seed, r.centroids.data());
  } else {
    seed_random_rows(x, n, row_elems, k, seed, r.centroids.data());
  }
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
    kernels.nearest(x, 0, n, row_elems, ct.data(), norms.data(), k_stride, r.assignment.data(),
                    nullptr);
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
