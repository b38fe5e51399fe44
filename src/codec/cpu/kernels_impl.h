// Kernel bodies over a vector type V (see kernels_scalar.cc, kernels_avx2.cc).
// Included once per instruction set; do not include elsewhere.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "codec/cpu/kernels.h"
#include "codec/cpu/stream_store.h"

namespace lshmoe::cpu {
namespace LSHMOE_KERNEL_NS {

// Elements of a row converted per step of the projection.
constexpr size_t kTileElems = 2048;

template <typename V>
void project(DType dtype, const void* x, size_t row_begin, size_t row_end, size_t row_elems,
             const float* p, const uint16_t* /*p_bf16*/, size_t p_stride, size_t cols, float* y) {
  constexpr size_t R = kProjectRowBlock, J = kProjectColBlock, W = V::W;
  alignas(64) float tile[R][kTileElems];
  const size_t esize = dtype_size(dtype);
  for (size_t rb = row_begin; rb < row_end; rb += R) {
    const size_t rows = row_end - rb < R ? row_end - rb : R;
    for (size_t r = 0; r < rows; ++r) {
      for (size_t j = 0; j < cols; ++j) y[(rb + r) * cols + j] = 0.0f;
    }
    for (size_t kb = 0; kb < row_elems; kb += kTileElems) {
      const size_t klen = row_elems - kb < kTileElems ? row_elems - kb : kTileElems;
      const size_t kpad = (klen + kRowPad - 1) / kRowPad * kRowPad;
      // Convert the block once to fp32, zero-padded (missing rows and tail).
      for (size_t r = 0; r < R; ++r) {
        size_t k = 0;
        if (r < rows) {
          const char* src = static_cast<const char*>(x) + ((rb + r) * row_elems + kb) * esize;
          for (; k + W <= klen; k += W) V::store(&tile[r][k], V::load(dtype, src, k));
          for (; k < klen; ++k) tile[r][k] = load_elem(dtype, src, k);
        }
        for (; k < kpad; ++k) tile[r][k] = 0.0f;
      }
      for (size_t jb = 0; jb < cols; jb += J) {
        typename V::T acc[R][J];
        for (size_t r = 0; r < R; ++r)
          for (size_t j = 0; j < J; ++j) acc[r][j] = V::zero();
        const float* pj[J];
        for (size_t j = 0; j < J; ++j) pj[j] = p + (jb + j) * p_stride + kb;
        for (size_t k = 0; k < kpad; k += W) {
          typename V::T xv[R], pv[J];
          for (size_t r = 0; r < R; ++r) xv[r] = V::load(&tile[r][k]);
          for (size_t j = 0; j < J; ++j) pv[j] = V::load(pj[j] + k);
          for (size_t r = 0; r < R; ++r)
            for (size_t j = 0; j < J; ++j) acc[r][j] = V::fma(xv[r], pv[j], acc[r][j]);
        }
        for (size_t r = 0; r < rows; ++r)
          for (size_t j = 0; j < J; ++j) y[(rb + r) * cols + jb + j] += V::hsum(acc[r][j]);
      }
    }
  }
}

// The portable sparse projection: one row and one output at a time, in the
// contract's order (ISA tables may replace it with a faster one).
template <typename V>
void project_sparse(DType dtype, const void* x, size_t row_begin, size_t row_end, size_t row_elems,
                    const uint32_t* nonzeros, size_t per_col, size_t /*block*/, size_t used_cols,
                    size_t cols, float* y) {
  const size_t esize = dtype_size(dtype);
  for (size_t r = row_begin; r < row_end; ++r) {
    const char* row = static_cast<const char*>(x) + r * row_elems * esize;
    float* out = y + r * cols;
    bool finite = true;
    for (size_t k = 0; k < row_elems; ++k)
      finite = finite && std::isfinite(load_elem(dtype, row, k));
    for (size_t j = 0; j < used_cols; ++j) {
      const uint32_t* e = nonzeros + j * per_col;
      float acc = 0.0f;
      for (size_t i = 0; i < per_col; ++i) {
        const float v = load_elem(dtype, row, e[i] & kSparseIndexMask);
        acc += (e[i] & kSparseNegative) ? -v : v;
      }
      out[j] = finite ? acc : std::numeric_limits<float>::quiet_NaN();
    }
    for (size_t j = used_cols; j < cols; ++j) out[j] = 0.0f;
  }
}

template <typename V>
void nearest(const float* y, size_t row_begin, size_t row_end, size_t dims, const float* ct,
             const float* c_norm, size_t k_stride, uint32_t* best, float* best_score_out) {
  constexpr size_t R = 4, C = 3, W = V::W;
  static_assert(kNearestBlock % (C * W) == 0, "centroid stride must cover whole blocks");
  for (size_t rb = row_begin; rb < row_end; rb += R) {
    const size_t rows = row_end - rb < R ? row_end - rb : R;
    typename V::T best_score[R], best_index[R];
    for (size_t r = 0; r < R; ++r) {
      best_score[r] = V::set1(std::numeric_limits<float>::infinity());
      best_index[r] = V::index_bits(0);
    }
    const float* yr[R];
    for (size_t r = 0; r < R; ++r) yr[r] = y + (rb + (r < rows ? r : 0)) * dims;
    for (size_t kb = 0; kb < k_stride; kb += C * W) {
      typename V::T acc[R][C];
      for (size_t r = 0; r < R; ++r)
        for (size_t c = 0; c < C; ++c) acc[r][c] = V::zero();
      for (size_t d = 0; d < dims; ++d) {
        typename V::T cv[C];
        for (size_t c = 0; c < C; ++c) cv[c] = V::load(ct + d * k_stride + kb + c * W);
        for (size_t r = 0; r < R; ++r) {
          const typename V::T yv = V::set1(yr[r][d]);
          for (size_t c = 0; c < C; ++c) acc[r][c] = V::fma(yv, cv[c], acc[r][c]);
        }
      }
      for (size_t c = 0; c < C; ++c) {
        const typename V::T norm = V::load(c_norm + kb + c * W);
        const typename V::T index = V::index_bits(uint32_t(kb + c * W));
        for (size_t r = 0; r < R; ++r) {
          const typename V::T score = V::fma(V::set1(-2.0f), acc[r][c], norm);
          const typename V::T better = V::less(score, best_score[r]);
          best_score[r] = V::select(better, score, best_score[r]);
          best_index[r] = V::select(better, index, best_index[r]);
        }
      }
    }
    for (size_t r = 0; r < rows; ++r) {
      alignas(64) float scores[W];
      alignas(64) uint32_t indices[W];
      V::store(scores, best_score[r]);
      V::store_bits(indices, best_index[r]);
      size_t pick = 0;
      for (size_t l = 1; l < W; ++l) {
        if (scores[l] < scores[pick] || (scores[l] == scores[pick] && indices[l] < indices[pick]))
          pick = l;
      }
      best[rb + r] = indices[pick];
      if (best_score_out != nullptr) best_score_out[rb + r] = scores[pick];
    }
  }
}

template <typename V>
void accumulate(DType dtype, const void* x, size_t n, float* acc) {
  size_t i = 0;
  for (; i + V::W <= n; i += V::W)
    V::store(acc + i, V::add(V::load(acc + i), V::load(dtype, x, i)));
  for (; i < n; ++i) acc[i] += load_elem(dtype, x, i);
}

template <typename V>
void store_scaled(DType dtype, const float* acc, float scale, size_t n, void* out) {
  size_t i = 0;
  const typename V::T s = V::set1(scale);
  for (; i + V::W <= n; i += V::W) V::store(dtype, out, i, V::mul(V::load(acc + i), s));
  for (; i < n; ++i) store_elem(dtype, out, i, acc[i] * scale);
}

// fn(begin, len, dst) writes elements [begin, begin + len) of an output of n
// elements to dst[0, len). Streamed outputs are composed a chunk at a time in
// a cache-resident buffer and copied out with non-temporal stores.
template <typename Fn>
void write_out(DType dtype, size_t n, void* out, bool stream, Fn&& fn) {
  if (!stream) {
    fn(size_t(0), n, out);
    return;
  }
  constexpr size_t kChunkBytes = 2048;
  alignas(64) char chunk[kChunkBytes];
  const size_t esize = dtype_size(dtype), step = kChunkBytes / esize;
  for (size_t i = 0; i < n; i += step) {
    const size_t len = n - i < step ? n - i : step;
    fn(i, len, static_cast<void*>(chunk));
    stream_bytes(static_cast<char*>(out) + i * esize, chunk, len * esize);
  }
}

template <typename V>
void residual(DType dtype, const void* x, const void* c, size_t n, void* r, double* rr, double* xx,
              bool stream) {
  const size_t esize = dtype_size(dtype);
  const char* xs = static_cast<const char*>(x);
  const char* cs = static_cast<const char*>(c);
  write_out(dtype, n, r, stream, [&](size_t begin, size_t len, void* out) {
    const char* xb = xs + begin * esize;
    const char* cb = cs + begin * esize;
    size_t i = 0;
    typename V::T rr_acc = V::zero(), xx_acc = V::zero();
    for (; i + V::W <= len; i += V::W) {
      const typename V::T xv = V::load(dtype, xb, i);
      V::store(dtype, out, i, V::sub(xv, V::load(dtype, cb, i)));
      const typename V::T rv = V::load(dtype, out, i);
      rr_acc = V::fma(rv, rv, rr_acc);
      xx_acc = V::fma(xv, xv, xx_acc);
    }
    double rr_sum = V::hsum(rr_acc), xx_sum = V::hsum(xx_acc);
    for (; i < len; ++i) {
      const float xv = load_elem(dtype, xb, i);
      store_elem(dtype, out, i, xv - load_elem(dtype, cb, i));
      const float rv = load_elem(dtype, out, i);
      rr_sum += double(rv) * rv;
      xx_sum += double(xv) * xv;
    }
    *rr += rr_sum;
    *xx += xx_sum;
  });
}

// The rows of a slot lie anywhere in the message, out of the hardware
// prefetcher's reach: a row is read in pieces of kMeanPieceBytes, each while
// the same piece of the row read next is fetched.
constexpr size_t kMeanPieceBytes = 1024;

// Row after row: the rows summed into a row of fp32 sums, then each row's
// residual against the rounded mean. Residual: the table's residual kernel,
// when it has its own.
template <typename V, auto Residual = &residual<V>>
void mean_and_residuals(DType dtype, const char* const* rows, size_t count, size_t n,
                        const char* next, void* mean, char* const* residuals, double* energies,
                        bool stream) {
  const size_t esize = dtype_size(dtype), row_bytes = n * esize;
  if (count == 1) {
    if (next != nullptr)
      prefetch_bytes(next, row_bytes < kMeanPieceBytes ? row_bytes : kMeanPieceBytes);
    memcpy(mean, rows[0], row_bytes);
  } else {
    thread_local std::vector<float> sums;
    if (sums.size() < n) sums.resize(n);
    float* acc = sums.data();
    std::fill(acc, acc + n, 0.0f);
    const size_t piece = kMeanPieceBytes / esize;
    for (size_t k = 0; k < count; ++k) {
      const char* following = k + 1 < count ? rows[k + 1] : next;
      for (size_t e = 0; e < n; e += piece) {
        const size_t len = n - e < piece ? n - e : piece;
        if (following != nullptr) prefetch_bytes(following + e * esize, len * esize);
        accumulate<V>(dtype, rows[k] + e * esize, len, acc + e);
      }
    }
    store_scaled<V>(dtype, acc, 1.0f / float(count), n, mean);
  }
  if (residuals == nullptr) return;
  for (size_t k = 0; k < count; ++k)
    Residual(dtype, rows[k], mean, n, residuals[k], &energies[2 * k], &energies[2 * k + 1], stream);
}

template <typename V>
void compensate(DType dtype, const void* c, const void* r, float alpha, size_t n, void* y,
                bool stream) {
  const size_t esize = dtype_size(dtype);
  const char* cs = static_cast<const char*>(c);
  const char* rs = static_cast<const char*>(r);
  const typename V::T a = V::set1(alpha);
  write_out(dtype, n, y, stream, [&](size_t begin, size_t len, void* out) {
    const char* cb = cs + begin * esize;
    const char* rb = rs + begin * esize;
    size_t i = 0;
    for (; i + V::W <= len; i += V::W)
      V::store(dtype, out, i, V::fma(a, V::load(dtype, rb, i), V::load(dtype, cb, i)));
    for (; i < len; ++i)
      store_elem(dtype, out, i, load_elem(dtype, cb, i) + alpha * load_elem(dtype, rb, i));
  });
}

template <typename V>
Kernels make_kernels(const char* isa) {
  return Kernels{isa,           project<V>,      project_sparse<V>, nearest<V>,
                 accumulate<V>, store_scaled<V>, residual<V>,       mean_and_residuals<V>,
                 compensate<V>};
}

}  // namespace LSHMOE_KERNEL_NS
}  // namespace lshmoe::cpu
