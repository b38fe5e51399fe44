// Step 1 of the codec: project rows with T Gaussian d x H matrices, centre
// the projections, and turn them into cross-polytope bucket keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/cpu/kernels.h"
#include "common/dtype.h"
#include "common/thread_pool.h"

namespace lshmoe::cpu {

struct Projection {
  int tables = 0;
  int dim = 0;
  size_t cols = 0;  // tables * dim, padded to kProjectColBlock
  size_t row_elems = 0;
  size_t stride = 0;          // row_elems padded to kRowPad
  std::vector<float> matrix;  // [cols][stride]; row t*dim + j is row j of table t
};

void build_projection(uint64_t seed, int tables, int dim, size_t row_elems, Projection* out);

// y[i] = P x_i - mean_i(P x_i) (just P x_i unless `center`), as [n][cols] fp32.
void project_rows(const Kernels& kernels, ThreadPool& pool, const Projection& projection,
                  DType dtype, const void* rows, size_t n, bool center, float* y);

// Bucket key of every row of y (centred projections).
void hash_keys(const float* y, size_t n, size_t cols, int tables, int dim, uint64_t* keys);

}  // namespace lshmoe::cpu
