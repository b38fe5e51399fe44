#include "codec/plan.h"

#include <cmath>

#include "codec/wire_format.h"

namespace lshmoe {

size_t slots_for(double ratio, size_t n_rows) {
  if (n_rows == 0) return 0;
  const double k = std::ceil(ratio * static_cast<double>(n_rows));
  if (k < 1.0) return 1;
  if (k >= static_cast<double>(n_rows)) return n_rows;
  return static_cast<size_t>(k);
}

lshmoe_plan_t plan_message(const Config& config, uint32_t dtype_mask, size_t n_rows,
                           size_t row_elems, DType dtype) {
  lshmoe_plan_t plan{};
  plan.logical_bytes = n_rows * row_elems * dtype_size(dtype);
  plan.dispatch_bytes = plan.logical_bytes;
  plan.combine_bytes = plan.logical_bytes;
  // Header fields are 32-bit.
  const bool shape_ok =
      n_rows > 0 && row_elems > 0 && n_rows <= UINT32_MAX && row_elems <= UINT32_MAX;
  const bool eligible = config.enable && shape_ok && (dtype_mask >> unsigned(dtype)) & 1u &&
                        (config.hidden == 0 || static_cast<size_t>(config.hidden) == row_elems) &&
                        n_rows >= static_cast<size_t>(config.min_rows);
  if (!eligible) return plan;
  const size_t k = slots_for(config.ratio, n_rows);
  const size_t dispatch = wire::layout(LSHMOE_DISPATCH, n_rows, row_elems, dtype, k).total_bytes;
  if (dispatch >= plan.logical_bytes) return plan;
  plan.compressed = 1;
  plan.slots = k;
  plan.dispatch_bytes = dispatch;
  plan.combine_bytes = wire::layout(LSHMOE_COMBINE, n_rows, row_elems, dtype, k).total_bytes;
  return plan;
}

}  // namespace lshmoe
