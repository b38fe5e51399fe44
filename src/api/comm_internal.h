// The communicator and handle objects of the C API. A communicator is either
// a host one (UCX, src/exchange/engine) or a device one (an NCCL
// communicator, defined where liblshmoe is built with NCCL).
#pragma once

#include <memory>
#include <set>

#include "exchange/engine.h"

namespace lshmoe::api {

// A device communicator's engine, behind an interface so that the library's
// host part builds without CUDA.
class DeviceExchange {
 public:
  virtual ~DeviceExchange() = default;
  virtual int rank() const = 0;
  virtual int world_size() const = 0;
  virtual Status expert_rows(const size_t* recv_rows, size_t row_elems, DType dtype, bool centroids,
                             size_t* out) const = 0;
  virtual Status stats(lshmoe_stats_t* out) const = 0;
};

class DeviceHandle {
 public:
  virtual ~DeviceHandle() = default;
};

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
  std::unique_ptr<lshmoe::exchange::Engine> engine;     // host communicators
  std::unique_ptr<lshmoe::api::DeviceExchange> device;  // device communicators
  std::set<lshmoe_handle*> handles;                     // freed with the communicator
};

struct lshmoe_handle {
  lshmoe_comm* comm;
  std::unique_ptr<lshmoe::exchange::Handle> impl;
  std::unique_ptr<lshmoe::api::DeviceHandle> device;
};
