#include "codec/cpu/slot_rows.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "codec/cpu/stream_store.h"

namespace lshmoe::cpu {
namespace {

template <typename Fn>
void for_rows(ThreadPool& pool, size_t n, size_t row_elems, Fn&& fn) {
  pool.parallel_for(n, n * row_elems, fn);
}

// Gathered rows are read in pieces of this many bytes, each while the same
// piece of the next row to be read is fetched.
constexpr size_t kPieceBytes = 1024;

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

namespace {

// Slot means; with `residual`, each slot's residuals in the same pass over
// its rows (mean_and_residuals).
void means(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* rows,
           size_t row_elems, const SlotIndex& index, size_t padded_slots, void* out, char* residual,
           double* energies) {
  const size_t used = index.offsets.size() - 1;
  const size_t row_bytes = row_elems * dtype_size(dtype);
  const char* x = static_cast<const char*>(rows);
  char* dst = static_cast<char*>(out);
  const size_t rows_per_slot = index.rows.size() / (used ? used : 1);
  const bool stream = residual != nullptr && index.rows.size() * row_bytes > kStreamBytes;
  for_rows(pool, used, row_elems * rows_per_slot, [&](size_t s0, size_t s1) {
    thread_local std::vector<const char*> members_in;
    thread_local std::vector<char*> members_out;
    thread_local std::vector<double> member_energies;
    for (size_t s = s0; s < s1; ++s) {
      const uint32_t begin = index.offsets[s], count = index.offsets[s + 1] - begin;
      const uint32_t* members = index.rows.data() + begin;
      char* mean = dst + s * row_bytes;
      if (count == 0) {  // decoders reject empty slots; stay defined regardless
        memset(mean, 0, row_bytes);
        continue;
      }
      const char* next = s + 1 < s1 && index.offsets[s + 2] > index.offsets[s + 1]
                             ? x + size_t(index.rows[index.offsets[s + 1]]) * row_bytes
                             : nullptr;
      members_in.resize(count);
      for (uint32_t k = 0; k < count; ++k) members_in[k] = x + size_t(members[k]) * row_bytes;
      if (residual == nullptr) {
        kernels.mean_and_residuals(dtype, members_in.data(), count, row_elems, next, mean, nullptr,
                                   nullptr, false);
        continue;
      }
      members_out.resize(count);
      member_energies.assign(2 * size_t(count), 0.0);
      for (uint32_t k = 0; k < count; ++k)
        members_out[k] = residual + size_t(members[k]) * row_bytes;
      kernels.mean_and_residuals(dtype, members_in.data(), count, row_elems, next, mean,
                                 members_out.data(), member_energies.data(), stream);
      for (uint32_t k = 0; k < count; ++k) {
        energies[2 * size_t(members[k])] += member_energies[2 * size_t(k)];
        energies[2 * size_t(members[k]) + 1] += member_energies[2 * size_t(k) + 1];
      }
    }
    if (stream) stream_fence();
  });
  if (padded_slots > used) memset(dst + used * row_bytes, 0, (padded_slots - used) * row_bytes);
}

}  // namespace

void slot_means(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* rows,
                size_t row_elems, const SlotIndex& index, size_t padded_slots, void* out) {
  means(kernels, pool, dtype, rows, row_elems, index, padded_slots, out, nullptr, nullptr);
}

void slot_means_and_residuals(const Kernels& kernels, ThreadPool& pool, DType dtype,
                              const void* rows, size_t row_elems, const SlotIndex& index,
                              size_t padded_slots, void* out, void* residual,
                              std::vector<double>& scratch, double* rr, double* xx) {
  const size_t n = index.rows.size();
  scratch.assign(2 * n, 0.0);
  means(kernels, pool, dtype, rows, row_elems, index, padded_slots, out,
        static_cast<char*>(residual), scratch.data());
  for (size_t i = 0; i < n; ++i) {
    // Non-finite rows would make the counters useless for the whole codec.
    if (!std::isfinite(scratch[2 * i]) || !std::isfinite(scratch[2 * i + 1])) continue;
    *rr += scratch[2 * i];
    *xx += scratch[2 * i + 1];
  }
}

void scale_slots(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* in,
                 size_t row_elems, const SlotIndex& index, size_t padded_slots, SlotScale scale,
                 void* out) {
  const size_t used = index.offsets.size() - 1;
  const size_t row_bytes = row_elems * dtype_size(dtype);
  const char* src = static_cast<const char*>(in);
  char* dst = static_cast<char*>(out);
  for_rows(pool, used, row_elems, [&](size_t s0, size_t s1) {
    float* acc = thread_accumulator(row_elems).data();
    for (size_t s = s0; s < s1; ++s) {
      const float count = float(index.offsets[s + 1] - index.offsets[s]);
      std::fill(acc, acc + row_elems, 0.0f);
      kernels.accumulate(dtype, src + s * row_bytes, row_elems, acc);
      kernels.store_scaled(dtype, acc, scale == SlotScale::kByCount ? count : 1.0f / count,
                           row_elems, dst + s * row_bytes);
    }
  });
  if (padded_slots > used) memset(dst + used * row_bytes, 0, (padded_slots - used) * row_bytes);
}

void expand_rows(ThreadPool& pool, DType dtype, const void* slots, const uint32_t* assignment,
                 size_t n, size_t row_elems, void* out) {
  const size_t row_bytes = row_elems * dtype_size(dtype);
  const bool stream = n * row_bytes > kStreamBytes;
  for_rows(pool, n, row_elems, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
      char* dst = static_cast<char*>(out) + i * row_bytes;
      const char* src = static_cast<const char*>(slots) + size_t(assignment[i]) * row_bytes;
      copy_row(dst, src, row_bytes, stream);
    }
    if (stream) stream_fence();
  });
}

void compensate_rows(const Kernels& kernels, ThreadPool& pool, DType dtype, const void* slots,
                     const uint32_t* assignment, const void* residual, float alpha, size_t n,
                     size_t row_elems, void* out) {
  const size_t row_bytes = row_elems * dtype_size(dtype);
  const bool stream = n * row_bytes > kStreamBytes;
  // In row order: the residuals and outputs are sequential streams (visiting
  // rows slot by slot instead, each slot row read once, measured slower).
  // The slot rows are gathered: each piece of a row is written while the
  // same piece of the next row's slot is fetched.
  const size_t esize = dtype_size(dtype), piece = std::max<size_t>(1, kPieceBytes / esize);
  const char* slot_rows = static_cast<const char*>(slots);
  for_rows(pool, n, row_elems, [&](size_t r0, size_t r1) {
    for (size_t i = r0; i < r1; ++i) {
      const char* slot = slot_rows + size_t(assignment[i]) * row_bytes;
      const char* next = i + 1 < r1 ? slot_rows + size_t(assignment[i + 1]) * row_bytes : nullptr;
      char* y = static_cast<char*>(out) + i * row_bytes;
      const char* r = static_cast<const char*>(residual) + i * row_bytes;
      for (size_t e = 0; e < row_elems; e += piece) {
        const size_t len = std::min(piece, row_elems - e), at = e * esize;
        if (next != nullptr) prefetch_bytes(next + at, len * esize);
        if (alpha == 0.0f) {
          copy_row(y + at, slot + at, len * esize, stream);
        } else {
          kernels.compensate(dtype, slot + at, r + at, alpha, len, y + at, stream);
        }
      }
    }
    if (stream) stream_fence();
  });
}

}  // namespace lshmoe::cpu
