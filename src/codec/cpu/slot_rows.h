// Steps 4-8 of the codec, in full space: slot means (centroids and combine
// encode), residuals, expand, and combine decode with compensation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "codec/cpu/kernels.h"
#include "common/dtype.h"
#include "common/thread_pool.h"

namespace lshmoe::cpu {

// Rows grouped by slot, ascending row order inside a slot (a counting sort):
// rows[offsets[s] .. offsets[s+1]) are the rows of slot s.
struct SlotIndex {
  std::vector<uint32_t> offsets;
  std::vector<uint32_t> rows;
};

void build_slot_index(const uint32_t* assignment, size_t n, uint32_t slots, SlotIndex* index);

// out[s] = mean of the rows of slot s, accumulated in fp32 and rounded to
// dtype, for s < used; slots [used, padded_slots) are zero.
void slot_means(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* rows,
                size_t row_elems, const SlotIndex& index, size_t padded_slots, void* out);

// slot_means, and residual[i] = x_i - out[a(i)] (in dtype) for every row,
// in the same pass over a slot's rows (Kernels::mean_and_residuals: one pass
// over the rows from memory instead of two); adds the sums of ||r||^2 and
// ||x||^2 of the finite rows to *rr and *xx.
void slot_means_and_residuals(const Kernels& kernels, ThreadPool& pool, DType dtype,
                              const void* rows, size_t row_elems, const SlotIndex& index,
                              size_t padded_slots, void* out, void* residual,
                              std::vector<double>& scratch, double* rr, double* xx);

enum class SlotScale { kByCount, kOverCount };
// out[s] = round(in[s] * |s|) or round(in[s] / |s|) (|s| the rows of slot s,
// from `index`) for s < used; slots [used, padded_slots) are zero.
void scale_slots(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* in,
                 size_t row_elems, const SlotIndex& index, size_t padded_slots, SlotScale scale,
                 void* out);

// out[i] = slot[a(i)].
void expand_rows(ThreadPool& pool, DType dtype, const void* slots, const uint32_t* assignment,
                 size_t n, size_t row_elems, void* out);

// out[i] = slot[a(i)] + alpha * residual[i].
void compensate_rows(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* slots,
                     const uint32_t* assignment, const void* residual, float alpha, size_t n,
                     size_t row_elems, void* out);

}  // namespace lshmoe::cpu
