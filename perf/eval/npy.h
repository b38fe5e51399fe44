// Minimal .npy (NumPy format 1.0/2.0/3.0) reader and writer for row matrices:
// little-endian f4, f2, and bf16 stored as u2, C order.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "common/status.h"

namespace lshmoe::eval {

struct Array {
  DType dtype = DType::kFloat32;
  std::vector<size_t> shape;
  std::vector<uint8_t> data;

  size_t elems() const;
  size_t rows() const { return shape.empty() ? 0 : shape[0]; }
  // Elements per row: the product of the dimensions after the first.
  size_t row_elems() const {
    size_t n = 1;
    for (size_t d = 1; d < shape.size(); ++d) n *= shape[d];
    return n;
  }
  float at(size_t i) const { return load_elem(dtype, data.data(), i); }
};

// Reads `path`; u2 is taken as bf16 (NumPy has no bf16 type).
Status read_npy(const std::string& path, Array* out);

Status write_npy(const std::string& path, const Array& array);

// All elements as fp32.
std::vector<float> to_float(const Array& array);

// An fp32 array converted to `dtype` (rounded to nearest even).
Array from_float(const std::vector<float>& values, std::vector<size_t> shape, DType dtype);

}  // namespace lshmoe::eval
