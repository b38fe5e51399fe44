#include "codec/cpu/projection.h"

#include "codec/lsh_math.h"

namespace lshmoe::cpu {

namespace {
constexpr size_t kMaxCols = 16 * 32;  // LSHMOE_HASHES * LSHMOE_PROJ_DIM at most
}  // namespace

void build_projection(const ProjectionSpec& spec, int tables, int dim, DType dtype,
                      Projection* out) {
  const size_t used_cols = size_t(tables) * size_t(dim);
  const size_t row_elems = spec.row_elems;
  out->spec = spec;
  out->dtype = dtype;
  out->tables = tables;
  out->dim = dim;
  out->cols = (used_cols + kProjectColBlock - 1) / kProjectColBlock * kProjectColBlock;
  out->row_elems = row_elems;
  out->stride = (row_elems + kRowPad - 1) / kRowPad * kRowPad;
  out->matrix.clear();
  out->matrix_bf16.clear();
  out->nonzeros.clear();
  if (spec.kind == ProjectionKind::kSparseSign) {
    out->per_col = sparse_blocks(spec);
    out->nonzeros.resize(used_cols * out->per_col);
    for (int t = 0; t < tables; ++t) {
      for (int j = 0; j < dim; ++j) {
        uint32_t* e = &out->nonzeros[(size_t(t) * dim + j) * out->per_col];
        for (uint32_t b = 0; b < out->per_col; ++b) {
          bool negative = false;
          e[b] = sparse_nonzero(spec, uint32_t(t), uint32_t(j), b, &negative) |
                 (negative ? kSparseNegative : 0u);
        }
      }
    }
    return;
  }
  out->per_col = 0;
  out->matrix.assign(out->cols * out->stride, 0.0f);
  for (int t = 0; t < tables; ++t) {
    for (int j = 0; j < dim; ++j) {
      float* row = &out->matrix[(size_t(t) * dim + j) * out->stride];
      for (size_t k = 0; k < row_elems; ++k) {
        row[k] =
            round_to(dtype, projection_entry(spec.seed, uint32_t(t), uint32_t(j), uint32_t(k)));
      }
    }
  }
  if (dtype == DType::kBFloat16) {
    out->matrix_bf16.resize(out->matrix.size());
    for (size_t i = 0; i < out->matrix.size(); ++i)
      out->matrix_bf16[i] = float_to_bf16(out->matrix[i]);
  }
}

void project_rows(const Kernels& kernels, ThreadPool& pool, const Projection& projection,
                  DType dtype, const void* rows, size_t n, bool center, float* y) {
  if (projection.spec.kind == ProjectionKind::kSparseSign) {
    const size_t used_cols = size_t(projection.tables) * size_t(projection.dim);
    pool.parallel_for(n, n * used_cols * projection.per_col, [&](size_t r0, size_t r1) {
      kernels.project_sparse(dtype, rows, r0, r1, projection.row_elems, projection.nonzeros.data(),
                             projection.per_col, sparse_block_elems(projection.spec), used_cols,
                             projection.cols, y);
    });
  } else {
    const size_t blocks = (n + kProjectRowBlock - 1) / kProjectRowBlock;
    pool.parallel_for(
        blocks, n * projection.row_elems * projection.cols, [&](size_t b0, size_t b1) {
          const size_t r0 = b0 * kProjectRowBlock;
          const size_t r1 = b1 * kProjectRowBlock < n ? b1 * kProjectRowBlock : n;
          kernels.project(dtype, rows, r0, r1, projection.row_elems, projection.matrix.data(),
                          projection.matrix_bf16.empty() ? nullptr : projection.matrix_bf16.data(),
                          projection.stride, projection.cols, y);
        });
  }
  if (!center) return;
  // Centring is linear: subtracting the mean projection equals projecting
  // x - mu. Rows with a non-finite projection stay out of the mean.
  const size_t cols = projection.cols;
  double mean[kMaxCols] = {};
  size_t finite = 0;
  for (size_t i = 0; i < n; ++i) {
    if (!row_finite(y + i * cols, cols)) continue;
    ++finite;
    for (size_t c = 0; c < cols; ++c) mean[c] += y[i * cols + c];
  }
  if (finite == 0) return;
  float shift[kMaxCols];
  for (size_t c = 0; c < cols; ++c) shift[c] = float(mean[c] / double(finite));
  pool.parallel_for(n, n * cols, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i)
      for (size_t c = 0; c < cols; ++c) y[i * cols + c] -= shift[c];
  });
}

bool row_finite(const float* v, size_t cols) {
  float sum = 0.0f;
  for (size_t c = 0; c < cols; ++c) sum += v[c] * 0.0f;  // NaN iff some v[c] is NaN or inf
  return sum == 0.0f;
}

void hash_keys(const float* y, size_t n, size_t cols, int tables, int dim, uint64_t* keys) {
  const int bits = code_bits(dim);
  for (size_t i = 0; i < n; ++i) {
    uint64_t key = 0;
    for (int t = 0; t < tables; ++t) {
      key = key_with_code(key, cross_polytope_code(y + i * cols + size_t(t) * dim, dim), t, tables,
                          bits);
    }
    keys[i] = key;
  }
}

}  // namespace lshmoe::cpu
