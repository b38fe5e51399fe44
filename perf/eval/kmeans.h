// The k-means baseline: the best a centroid code with K slots can do, as the
// bound LSH quality is compared with (Lloyd's algorithm in full space, fp32).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/cpu/kernels.h"

namespace lshmoe::eval {

struct KMeansResult {
  std::vector<float> centroids;  // [k][row_elems]
  std::vector<uint32_t> assignment;
};

// `iterations` Lloyd steps from k distinct rows chosen with `seed`; an empty
// cluster keeps its previous centroid.
KMeansResult kmeans(const cpu::Kernels& kernels, const float* x, size_t n, size_t row_elems,
                    size_t k, int iterations, uint64_t seed);

}  // namespace lshmoe::eval
