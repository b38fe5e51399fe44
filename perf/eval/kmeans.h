// The k-means baseline LSH quality is compared with: what a centroid code
// with K slots reaches with a standard clustering (Lloyd's algorithm in full
// space, fp32). Random-row seeding matches the shared reference figures;
// k-means++ seeding gives a tighter baseline.
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

enum class KMeansInit { kRandomRows, kPlusPlus };

// Seeding with `seed`, then `iterations` Lloyd steps; an empty cluster keeps
// its previous centroid.
KMeansResult kmeans(const cpu::Kernels& kernels, const float* x, size_t n, size_t row_elems,
                    size_t k, int iterations, uint64_t seed,
                    KMeansInit init = KMeansInit::kRandomRows);

}  // namespace lshmoe::eval
