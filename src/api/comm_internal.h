// The communicator and handle objects of the C API, over one exchange
// surface: a host communicator (UCX) and a device one (an ncclComm_t) differ
// only in the engine they hold and the memory it works on.
#pragma once

#include <memory>
#include <set>

#include "common/status.h"
#include "exchange/exchange.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::api {

inline lshmoe_status_t to_mode(const char* what, lshmoe_dispatch_mode_t in,
                               exchange::DispatchMode* out) {
  switch (in) {
    case LSHMOE_DISPATCH_ROWS:
      *out = exchange::DispatchMode::kRows;
      return LSHMOE_SUCCESS;
    case LSHMOE_DISPATCH_CENTROIDS:
      *out = exchange::DispatchMode::kCentroids;
      return LSHMOE_SUCCESS;
    default:
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "%s: mode %d is not LSHMOE_DISPATCH_ROWS or LSHMOE_DISPATCH_CENTROIDS", what,
                  int(in));
  }
}

}  // namespace lshmoe::api

struct lshmoe_handle;

struct lshmoe_comm {
  ~lshmoe_comm();  // frees the handles still open, then the engine
  std::unique_ptr<lshmoe::exchange::Exchange> exchange;
  std::set<lshmoe_handle*> handles;
};

struct lshmoe_handle {
  lshmoe_comm* comm;
  std::unique_ptr<lshmoe::exchange::Handle> impl;
};
