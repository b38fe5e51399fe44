// The rows of the benchmark: what rank `src` sends to rank `dst`, the same
// whoever computes it, so every rank can check what it received.
//   clustered: the documented generator (perf/eval/synthetic.h), a seed per pair;
//   random:    i.i.d. standard Gaussian entries (the codec's worst case);
//   FILE.npy:  real rows, [N, H], split across the ranks in N/ranks chunks;
//              each destination's rows start where the last one's ended,
//              wrapping inside the chunk.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "alltoall/options.h"

namespace lshmoe::perf {

class RowSource {
 public:
  // False, with *error naming the problem, when the file cannot be read or
  // its rows do not have --hidden elements.
  bool open(const PerfOptions& o, int ranks, std::string* error);
  // n rows of src -> dst, row-major floats (then rounded to the dtype by the caller).
  std::vector<float> rows(int src, int dst, size_t n) const;

 private:
  PerfOptions options_;
  int ranks_ = 1;
  std::vector<float> file_rows_;  // [N, hidden]
  size_t file_row_count_ = 0;
};

}  // namespace lshmoe::perf
