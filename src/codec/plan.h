// When a message is compressed, and its sizes: a pure function of facts both
// ends of the message share (shape, dtype, configuration), never of data.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/config.h"
#include "common/dtype.h"
#include "common/status.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe {

// K = ceil(ratio * n_rows), at least 1 and at most n_rows.
size_t slots_for(double ratio, size_t n_rows);

// How a message travels; fails only when its size cannot be addressed.
Status plan_message(const Config& config, uint32_t dtype_mask, size_t n_rows, size_t row_elems,
                    DType dtype, lshmoe_plan_t* plan);

}  // namespace lshmoe
