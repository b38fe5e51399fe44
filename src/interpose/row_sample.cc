#include "interpose/row_sample.h"

#include <algorithm>

namespace lshmoe::interpose {
void RowSample::take(const void* rows, size_t n_rows, size_t row_elems, DType dtype) {
  n_rows_ = n_rows;
  row_elems_ = row_elems;
  const size_t count = std::min(n_rows, kRows);
  values_.resize(count * row_elems);
  for (size_t k = 0; k < count; ++k) {
    const size_t row = k * n_rows / count;
    for (size_t j = 0; j < row_elems; ++j) {
      values_[k * row_elems + j] = load_elem(dtype, rows, row * row_elems + j);
    }
  }
}

bool RowSample::matches(const void* rows, size_t n_rows, size_t row_elems, DType dtype) const {
  if (n_rows != n_rows_ || row_elems != row_elems_ || values_.empty()) return false;
  const size_t count = values_.size() / row_elems;
  double diff = 0.0, norm = 0.0;
  for (size_t k = 0; k < count; ++k) {
    const size_t row = k * n_rows / count;
    for (size_t j = 0; j < row_elems; ++j) {
      const double kept = values_[k * row_elems + j];
      const double d = double(load_elem(dtype, rows, row * row_elems + j)) - kept;
      diff += d * d;
      norm += kept * kept;
    }
  }
  return norm > 0.0 && diff <= 1e-4 * norm;
}

}  // namespace lshmoe::interpose
