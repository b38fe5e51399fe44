#include "alltoall/sweep.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace lshmoe::perf {

std::vector<SizePoint> size_sweep(const PerfOptions& o, int ranks, size_t elem_bytes) {
  std::vector<SizePoint> sizes;
  const size_t row_bytes = o.hidden * elem_bytes;
  const size_t unit = row_bytes * size_t(ranks);
  if (ranks < 1 || unit == 0) return sizes;
  for (size_t size = o.min_bytes; size <= o.max_bytes;) {
    SizePoint p;
    p.rows_per_peer = size / unit;
    p.bytes = p.rows_per_peer * unit;
    p.count = p.bytes / elem_bytes;
    if (p.rows_per_peer > 0 && (sizes.empty() || sizes.back().bytes != p.bytes)) {
      sizes.push_back(p);
    }
    // The next size; a step that would not move ends the sweep.
    const size_t next = o.step_factor > 1 ? size * o.step_factor : size + o.step_bytes;
    if (next <= size || (o.step_factor > 1 && next / o.step_factor != size)) break;
    size = next;
  }
  return sizes;
}

double alg_bandwidth_gbs(double bytes, double seconds) {
  return seconds > 0.0 ? bytes / seconds / 1e9 : 0.0;
}

double bus_bandwidth_gbs(double alg_gbs, int ranks) {
  return ranks > 0 ? alg_gbs * double(ranks - 1) / double(ranks) : 0.0;
}

double time_over_ranks(const std::vector<double>& per_rank, Average average) {
  if (per_rank.empty()) return 0.0;
  switch (average) {
    case Average::kRank0:
      return per_rank[0];
    case Average::kMean:
      return std::accumulate(per_rank.begin(), per_rank.end(), 0.0) / double(per_rank.size());
    case Average::kMin:
      return *std::min_element(per_rank.begin(), per_rank.end());
    case Average::kMax:
      return *std::max_element(per_rank.begin(), per_rank.end());
  }
  return 0.0;
}

size_t rows_beyond(const float* got, const float* want, size_t rows, size_t row_elems, double bound,
                   double* err2, double* norm2) {
  size_t wrong = 0;
  for (size_t r = 0; r < rows; ++r) {
    double e = 0.0, n = 0.0;
    for (size_t k = 0; k < row_elems; ++k) {
      const double d = double(got[r * row_elems + k]) - double(want[r * row_elems + k]);
      e += d * d;
      n += double(want[r * row_elems + k]) * double(want[r * row_elems + k]);
    }
    // NaN anywhere fails the comparison: counted as wrong.
    if (!(e <= bound * bound * n)) ++wrong;
    *err2 += e;
    *norm2 += n;
  }
  return wrong;
}

}  // namespace lshmoe::perf
