// Error reporting: a status code plus a per-thread message naming the problem.
#pragma once

#include "lshmoe/lshmoe.h"

namespace lshmoe {

using Status = lshmoe_status_t;

// Records a formatted message for lshmoe_last_error() and returns `status`.
Status fail(Status status, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

void clear_error();
const char* last_error();
const char* status_string(Status status);

}  // namespace lshmoe

#define LSHMOE_RETURN_IF_ERROR(expr)                             \
  do {                                                           \
    ::lshmoe::Status lshmoe_status_ = (expr);                    \
    if (lshmoe_status_ != LSHMOE_SUCCESS) return lshmoe_status_; \
  } while (0)
