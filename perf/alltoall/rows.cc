#include "alltoall/rows.h"

#include <random>

#include "eval/npy.h"
#include "eval/synthetic.h"

namespace lshmoe::perf {

bool RowSource::open(const PerfOptions& o, int ranks, std::string* error) {
  options_ = o;
  ranks_ = ranks;
  if (o.data != DataKind::kFile) return true;
  eval::Array array;
  if (eval::read_npy(o.data_file, &array) != LSHMOE_SUCCESS) {
    *error = "--data " + o.data_file + ": " + lshmoe_last_error();
    return false;
  }
  if (array.row_elems() != o.hidden) {
    *error = "--data " + o.data_file + ": rows of " + std::to_string(array.row_elems()) +
             " elements, --hidden is " + std::to_string(o.hidden);
    return false;
  }
  if (array.rows() < size_t(ranks)) {
    *error = "--data " + o.data_file + ": " + std::to_string(array.rows()) + " rows for " +
             std::to_string(ranks) + " ranks";
    return false;
  }
  file_rows_ = eval::to_float(array);
  file_row_count_ = array.rows();
  return true;
}

std::vector<float> RowSource::rows(int src, int dst, size_t n) const {
  const size_t h = options_.hidden;
  const uint64_t seed = uint64_t(src) * 1000003u + uint64_t(dst) + 1;
  switch (options_.data) {
    case DataKind::kClustered: {
      eval::SyntheticSpec spec;
      spec.rows = n;
      spec.row_elems = h;
      spec.seed = seed;
      return eval::clustered_tokens(spec);
    }
    case DataKind::kRandom: {
      std::mt19937_64 gen(seed);
      std::normal_distribution<float> normal(0.0f, 1.0f);
      std::vector<float> out(n * h);
      for (float& v : out) v = normal(gen);
      return out;
    }
    case DataKind::kFile: {
      const size_t chunk = file_row_count_ / size_t(ranks_);
      const size_t first = size_t(src) * chunk;
      std::vector<float> out(n * h);
      for (size_t i = 0; i < n; ++i) {
        const size_t r = first + (size_t(dst) * n + i) % chunk;
        std::copy(file_rows_.begin() + long(r * h), file_rows_.begin() + long((r + 1) * h),
                  out.begin() + long(i * h));
      }
      return out;
    }
  }
  return {};
}

}  // namespace lshmoe::perf
