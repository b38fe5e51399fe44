// The projection a codec hashes rows of one length with, from its
// configuration: the same function on the CPU and CUDA back ends.
#pragma once

#include <cstddef>

#include "codec/lsh_math.h"
#include "common/config.h"

namespace lshmoe {

inline ProjectionSpec projection_spec(const Config& config, size_t row_elems) {
  ProjectionSpec spec;
  spec.seed = uint64_t(config.seed);
  spec.kind =
      config.projection == "gaussian" ? ProjectionKind::kGaussian : ProjectionKind::kSparseSign;
  spec.nnz = uint32_t(config.proj_nnz);
  spec.row_elems = uint32_t(row_elems);
  return spec;
}

}  // namespace lshmoe
