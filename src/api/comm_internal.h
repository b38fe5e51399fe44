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
