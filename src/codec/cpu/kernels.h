// The inner loops of the CPU back end, one table per instruction set. The
// loops are written once (kernels_impl.h) over a small vector abstraction and
// compiled twice: AVX2+FMA+F16C and portable scalar. A third table replaces
// the projection of bf16 messages with AVX-512 BF16 dot products. The table
// is picked at run time from what the processor supports.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"

namespace lshmoe::cpu {

// Row blocks of the projection kernel; callers split work on multiples of it.
inline constexpr size_t kProjectRowBlock = 3;
// The projection's output width is padded to a multiple of this.
inline constexpr size_t kProjectColBlock = 4;
// The nearest kernel's centroid stride is a multiple of this (a multiple of
// every instruction set's centroid block).
inline constexpr size_t kNearestBlock = 24;
// Projection matrices pad their rows (length row_elems) to a multiple of this
// (one 512-bit register of bf16).
inline constexpr size_t kRowPad = 32;
// An entry of a sparse projection: the element index, and the sign bit.
inline constexpr uint32_t kSparseNegative = 0x80000000u;
inline constexpr uint32_t kSparseIndexMask = 0x7fffffffu;

struct Kernels {
  const char* isa;

  // y[r][j] = sum_k x[r][k] * p[j][k] for rows [row_begin, row_end).
  // p: [cols][p_stride] fp32, zero beyond row_elems; cols % kProjectColBlock == 0.
  // p_bf16: the same matrix as bf16 (exact: p is bf16-rounded for bf16
  // messages), or nullptr. y: [n][cols].
  void (*project)(DType dtype, const void* x, size_t row_begin, size_t row_end, size_t row_elems,
                  const float* p, const uint16_t* p_bf16, size_t p_stride, size_t cols, float* y);

  // The sparse sign projection: for rows [row_begin, row_end) and columns
  // j < used_cols, y[r][j] = sum_i s_i x[r][k_i] over the per_col entries
  // e_i = nonzeros[j * per_col + i] (k_i = e_i & kSparseIndexMask, in
  // [i * block, (i + 1) * block); s_i = -1 when e_i & kSparseNegative, else
  // +1), added in order i to
  // one fp32 sum from +0 on every ISA: the terms are exact, so every table
  // gives the same bits. A row holding a NaN or an infinity anywhere, sampled
  // or not, gets NaN in every used output (so the codec isolates it, as the
  // dense projection's sums do). y[r][j] = 0 for used_cols <= j < cols.
  // y: [n][cols].
  void (*project_sparse)(DType dtype, const void* x, size_t row_begin, size_t row_end,
                         size_t row_elems, const uint32_t* nonzeros, size_t per_col, size_t block,
                         size_t used_cols, size_t cols, float* y);

  // best[r] = argmin_k score(r, k) (ties: lowest k) for rows [row_begin,
  // row_end), and best_score[r] = that score when best_score is not null;
  // score(r, k) = fma(-2, dot, c_norm[k]) with dot = fma(y[r][d], c[k][d],
  // dot) for d = 0, 1, ... from +0 (a product and a sum where the table has
  // no FMA): a pair of row and centroid scores the same bits wherever the
  // centroid sits in ct. y: [n][dims]; ct: [dims][k_stride] (centroids
  // transposed, k_stride a multiple of kNearestBlock, c_norm = +inf beyond k).
  void (*nearest)(const float* y, size_t row_begin, size_t row_end, size_t dims, const float* ct,
                  const float* c_norm, size_t k_stride, uint32_t* best, float* best_score);

  // acc[i] += x[i], i < n.
  void (*accumulate)(DType dtype, const void* x, size_t n, float* acc);

  // out[i] = round_dtype(acc[i] * scale).
  void (*store_scaled)(DType dtype, const float* acc, float scale, size_t n, void* out);

  // r[i] = round_dtype(x[i] - c[i]); adds sum r^2 and sum x^2 (in the
  // dtype's values) to *rr and *xx. stream: r is not read back soon, so it
  // is written with non-temporal stores (the caller calls stream_fence()
  // before another thread reads it); the values are the same either way.
  void (*residual)(DType dtype, const void* x, const void* c, size_t n, void* r, double* rr,
                   double* xx, bool stream);

  // A slot's mean and its rows' residuals in one pass over the rows: for
  // count >= 1 rows of n elements, mean = their mean (count = 1: a copy of
  // the row; else accumulate of rows[0], rows[1], ... in order from +0, then
  // store_scaled by 1 / count), and residuals[k] = residual(rows[k], mean)
  // with its sums added to energies[2k] and energies[2k + 1] (the sums may
  // be split at other places than residual's: the same values, rounded
  // differently); residuals == nullptr: the mean alone (energies unused).
  // next: the row the caller reads after these (nullptr: none), fetched
  // early. stream as for residual.
  void (*mean_and_residuals)(DType dtype, const char* const* rows, size_t count, size_t n,
                             const char* next, void* mean, char* const* residuals, double* energies,
                             bool stream);

  // y[i] = round_dtype(c[i] + alpha * r[i]); stream as for residual.
  void (*compensate)(DType dtype, const void* c, const void* r, float alpha, size_t n, void* y,
                     bool stream);
};

const Kernels& scalar_kernels();
const Kernels& avx2_kernels();        // only valid when avx2_supported()
const Kernels& avx512bf16_kernels();  // only valid when avx512bf16_supported()
bool avx2_supported();
bool avx512bf16_supported();

// "auto" | "avx512bf16" | "avx2" | "scalar"; nullptr when the name is unknown
// or the ISA is not available on this processor. auto takes the best one.
const Kernels* select_kernels(const char* isa);

}  // namespace lshmoe::cpu
