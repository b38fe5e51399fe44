#include "codec/cpu/slot_rows.h"

#include <cstring>

namespace lshmoe::cpu {
namespace {

// Below this many elements a message is handled by the calling thread alone.
constexpr size_t kParallelElems = size_t(1) << 16;

template <typename Fn>
void for_rows(ThreadPool& pool, size_t n, size_t row_elems, Fn&& fn) {
  if (n * row_elems < kParallelElems) {
    fn(size_t(0), n);
  } else {
    pool.parallel_for(n, fn);
  }
}

void prefetch_row(const char* row, size_t bytes) {
  constexpr size_t kLine = 64, kAhead = 16 * kLine;
  for (size_t off = 0; off < bytes && off < kAhead; off += kLine) __builtin_prefetch(row + off);
}

std::vector<float>& thread_accumulator(size_t n) {
  thread_local std::vector<float> acc;
  if (acc.size() < n) acc.resize(n);
  return acc;
}

}  // namespace

void build_slot_index(const uint32_t* assignment, size_t n, uint32_t slots, SlotIndex* index) {
  index->offsets.assign(size_t(slots) + 1, 0);
  index->rows.resize(n);
  for (size_t i = 0; i < n; ++i) ++index->offsets[assignment[i] + 1];
  for (uint32_t s = 0; s < slots; ++s) index->offsets[s + 1] += index->offsets[s];
  // offsets[s] doubles as the write cursor, then is restored.
  for (size_t i = 0; i < n; ++i) index->rows[index->offsets[assignment[i]]++] = uint32_t(i);
  for (uint32_t s = slots; s > 0; --s) index->offsets[s] = index->offsets[s - 1];
  index->offsets[0] = 0;
}

void slot_means(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* rows,
                size_t row_elems, const SlotIndex& index, size_t padded_slots, void* out) {
  const size_t used = index.offsets.size() - 1;
  const size_t row_bytes = row_elems * dtype_size(dtype);
  const char* in = static_cast<const char*>(rows);
  char* dst = static_cast<char*>(out);
  for_rows(pool, used, row_elems * (index.rows.size() / (used ? used : 1)),
           [&](size_t s0, size_t s1) {
             std::vector<float>& acc = thread_accumulator(row_elems);
             for (size_t s = s0; s < s1; ++s) {
               const uint32_t begin = index.offsets[s], end = index.offsets[s + 1];
               if (end - begin == 1) {  // a singleton travels exactly
                 memcpy(dst + s * row_bytes, in + size_t(index.rows[begin]) * row_bytes, row_bytes);
                 continue;
               }
               std::fill(acc.begin(), acc.begin() + row_elems, 0.0f);
               for (uint32_t k = begin; k < end; ++k) {
                 kernels.accumulate(dtype, in + size_t(index.rows[k]) * row_bytes, row_elems,
                                    acc.data());
               }
               kernels.store_scaled(dtype, acc.data(), 1.0f / float(end - begin), row_elems,
                                    dst + s * row_bytes);
             }
           });
  if (padded_slots > used) memset(dst + used * row_bytes, 0, (padded_slots - used) * row_bytes);
}

void residuals(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* rows, size_t n,
               size_t row_elems, const uint32_t* assignment, const void* slots, void* residual,
               std::vector<double>& scratch, double* rr, double* xx) {
  const size_t row_bytes = row_elems * dtype_size(dtype);
  scratch.assign(2 * n, 0.0);
  for_rows(pool, n, row_elems, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
      kernels.residual(dtype, static_cast<const char*>(rows) + i * row_bytes,
                       static_cast<const char*>(slots) + size_t(assignment[i]) * row_bytes,
                       row_elems, static_cast<char*>(residual) + i * row_bytes, &scratch[2 * i],
                       &scratch[2 * i + 1]);
    }
  });
  for (size_t i = 0; i < n; ++i) {
    *rr += scratch[2 * i];
    *xx += scratch[2 * i + 1];
  }
}

template <typename Index>
void expand_rows(ThreadPool& pool, DType dtype, const void* slots, const Index* assignment,
                 size_t n, size_t row_elems, void* out) {
  const size_t row_bytes = row_elems * dtype_size(dtype);
  for_rows(pool, n, row_elems, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
      memcpy(static_cast<char*>(out) + i * row_bytes,
             static_cast<const char*>(slots) + size_t(assignment[i]) * row_bytes, row_bytes);
    }
  });
}
template void expand_rows<uint16_t>(ThreadPool&, DType, const void*, const uint16_t*, size_t,
                                    size_t, void*);
template void expand_rows<uint32_t>(ThreadPool&, DType, const void*, const uint32_t*, size_t,
                                    size_t, void*);

void compensate_rows(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* slots,
                     const uint32_t* assignment, const void* residual, float alpha, size_t n,
                     size_t row_elems, void* out) {
  const size_t row_bytes = row_elems * dtype_size(dtype);
  for_rows(pool, n, row_elems, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
      const char* slot = static_cast<const char*>(slots) + size_t(assignment[i]) * row_bytes;
      char* y = static_cast<char*>(out) + i * row_bytes;
      if (alpha == 0.0f) {
        memcpy(y, slot, row_bytes);
      } else {
        kernels.compensate(dtype, slot, static_cast<const char*>(residual) + i * row_bytes, alpha,
                           row_elems, y);
      }
    }
  });
}

}  // namespace lshmoe::cpu
