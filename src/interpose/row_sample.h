// A few rows of a kept pair's dispatch, to tell a replay of that dispatch
// (activation recomputation sends the same rows again, on the backward
// thread) from the combine's gradient, which has the same shape.
#pragma once

#include <cstddef>
#include <vector>

#include "common/dtype.h"

namespace lshmoe::interpose {

class RowSample {
 public:
  // Rows spread over the message, as fp32.
  void take(const void* rows, size_t n_rows, size_t row_elems, DType dtype);
  // `rows` are the sampled ones again, within 1 % (relative L2 over the
  // sample): a recomputation need not be bit-exact (atomics), a gradient
  // is nowhere near its activations. An all-zero sample matches nothing.
  bool matches(const void* rows, size_t n_rows, size_t row_elems, DType dtype) const;

 private:
  static constexpr size_t kRows = 16;
  size_t n_rows_ = 0, row_elems_ = 0;
  std::vector<float> values_;
};

}  // namespace lshmoe::interpose
