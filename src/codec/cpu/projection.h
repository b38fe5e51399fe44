// Step 1 of the codec: project rows with T d x H matrices (sparse signs or
// Gaussian, codec/lsh_math.h), centre the projections, and turn them into
// cross-polytope bucket keys.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/cpu/kernels.h"
#include "codec/lsh_math.h"
#include "common/dtype.h"
#include "common/thread_pool.h"

namespace lshmoe::cpu {

// A Gaussian projection is a dense matrix; for 16-bit messages its entries
// are rounded to the message's dtype, so that hardware multiplying 16-bit
// pairs exactly (AVX-512 BF16, tensor cores) computes the same products as
// the fp32 kernels. A sparse one is its nonzeros' columns and signs.
struct Projection {
  ProjectionSpec spec;
  DType dtype = DType::kFloat32;
  int tables = 0;
  int dim = 0;
  size_t cols = 0;  // tables * dim, padded to kProjectColBlock
  size_t row_elems = 0;
  size_t stride = 0;                  // row_elems padded to kRowPad
  std::vector<float> matrix;          // [cols][stride]; row t*dim + j is row j of table t
  std::vector<uint16_t> matrix_bf16;  // the same entries as bf16, for bf16 messages
  size_t per_col = 0;                 // sparse: nonzeros of each output
  std::vector<uint32_t> nonzeros;     // sparse: [tables * dim][per_col] (Kernels::project_sparse)
};

void build_projection(const ProjectionSpec& spec, int tables, int dim, DType dtype,
                      Projection* out);

// y[i] = P x_i - mean_i(P x_i) (just P x_i unless `center`), as [n][cols] fp32.
void project_rows(const Kernels& kernels, ThreadPool& pool, const Projection& projection,
                  DType dtype, const void* rows, size_t n, bool center, float* y);

// False when a projected row holds a NaN or an infinity (a non-finite input).
bool row_finite(const float* v, size_t cols);

// Bucket key of every row of y (centred projections).
void hash_keys(const float* y, size_t n, size_t cols, int tables, int dim, uint64_t* keys);

}  // namespace lshmoe::cpu
