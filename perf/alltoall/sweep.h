// The sizes of a run and the figures of one row, computed as nccl-tests'
// alltoall_perf computes them, so that the two tools' tables compare.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "alltoall/options.h"

namespace lshmoe::perf {

// One size of the sweep: `bytes` each rank sends in one all-to-all (to every
// rank, itself included, as in nccl-tests), rounded down to whole rows per
// peer.
struct SizePoint {
  size_t bytes = 0;
  size_t count = 0;          // elements: bytes / element size
  size_t rows_per_peer = 0;  // bytes / (ranks * row bytes)
};

// -b to -e by -f (above 1) or -i, each rounded down to whole rows; sizes
// below one row per peer are left out, and a size that rounds to the one
// before it is not repeated.
std::vector<SizePoint> size_sweep(const PerfOptions& o, int ranks, size_t elem_bytes);

// algbw = bytes / time; busbw = algbw (n - 1) / n (nccl-tests' alltoall).
double alg_bandwidth_gbs(double bytes, double seconds);
double bus_bandwidth_gbs(double alg_gbs, int ranks);

// The time of the table from every rank's: rank 0's, the mean, min or max (-a).
double time_over_ranks(const std::vector<double>& per_rank, Average average);

// The compressed half's check: rows of `got` whose distance to `want` is
// above `bound` times the row's norm (a zero row must come back zero).
// Adds the squared error and norm to *err2 and *norm2 for rel_err.
size_t rows_beyond(const float* got, const float* want, size_t rows, size_t row_elems, double bound,
                   double* err2, double* norm2);

}  // namespace lshmoe::perf
