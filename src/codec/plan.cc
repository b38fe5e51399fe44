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

Status plan_message(const Config& config, uint32_t dtype_mask, size_t n_rows, size_t row_elems,
                    DType dtype, lshmoe_plan_t* plan) {
  size_t logical = 0;
  if (!wire::checked_product(n_rows, row_elems, dtype_size(dtype), &logical)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "a message of %zu rows of %zu elements is too large to address", n_rows, row_elems);
  }
  *plan = lshmoe_plan_t{};
  plan->logical_bytes = logical;
  plan->dispatch_bytes = logical;
  plan->combine_bytes = logical;
  // The header's fields are 32-bit: larger messages travel raw.
  const bool shape_ok =
      n_rows > 0 && row_elems > 0 && n_rows <= UINT32_MAX && row_elems <= UINT32_MAX;
  const bool eligible = config.enable && shape_ok && (dtype_mask >> unsigned(dtype)) & 1u &&
                        (config.hidden == 0 || static_cast<size_t>(config.hidden) == row_elems) &&
                        n_rows >= static_cast<size_t>(config.min_rows);
  if (!eligible) return LSHMOE_SUCCESS;
  const size_t k = slots_for(config.ratio, n_rows);
  // No overflow: the slots are fewer than the rows and the parts are padded
  // by less than the header adds.
  const size_t dispatch = wire::layout(LSHMOE_DISPATCH, n_rows, row_elems, dtype, k).total_bytes;
  if (dispatch >= logical) return LSHMOE_SUCCESS;
  plan->compressed = 1;
  plan->slots = k;
  plan->dispatch_bytes = dispatch;
  plan->combine_bytes = wire::layout(LSHMOE_COMBINE, n_rows, row_elems, dtype, k).total_bytes;
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe
