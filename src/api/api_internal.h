// What the C API's translation units share: the config object, exception
// fencing and dtype checks.
#pragma once

#include <exception>
#include <new>

#include "common/config.h"
#include "common/dtype.h"
#include "common/log.h"
#include "common/status.h"
#include "lshmoe/lshmoe.h"

struct lshmoe_config {
  lshmoe::Config config;
};

namespace lshmoe::api {

// Runs `fn`, turning a thrown std::bad_alloc into LSHMOE_ERR_OUT_OF_MEMORY.
template <typename Fn>
lshmoe_status_t guarded(const char* what, Fn&& fn) {
  clear_error();
  try {
    const lshmoe_status_t status = fn();
    if (status != LSHMOE_SUCCESS) LSHMOE_INFO("%s: %s", what, last_error());
    return status;
  } catch (const std::bad_alloc&) {
    return fail(LSHMOE_ERR_OUT_OF_MEMORY, "%s: out of memory", what);
  } catch (const std::exception& e) {
    // e.g. std::system_error when the system refuses a worker thread
    return fail(LSHMOE_ERR_INTERNAL, "%s: %s", what, e.what());
  } catch (...) {
    return fail(LSHMOE_ERR_INTERNAL, "%s: unexpected exception", what);
  }
}

inline bool to_dtype(lshmoe_dtype_t in, DType* out) {
  if (!dtype_valid(uint32_t(in))) return false;
  *out = DType(in);
  return true;
}

inline lshmoe_status_t bad_dtype(const char* what, lshmoe_dtype_t dtype) {
  return fail(LSHMOE_ERR_INVALID_ARGUMENT,
              "%s: dtype %d is not LSHMOE_FLOAT32, LSHMOE_FLOAT16 or LSHMOE_BFLOAT16", what,
              int(dtype));
}

}  // namespace lshmoe::api
