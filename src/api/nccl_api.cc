// The public C API of device communicators (over an ncclComm_t): argument
// checks over src/exchange/nccl_engine. Built into liblshmoe.so in every
// build; without CUDA and NCCL it says so.
#include <memory>

#include "api/api_internal.h"
#include "api/comm_internal.h"

#if defined(LSHMOE_WITH_NCCL)
#include "exchange/nccl_engine.h"
#endif

namespace {

using lshmoe::DType;
using lshmoe::fail;
using lshmoe::api::bad_dtype;
using lshmoe::api::guarded;
using lshmoe::api::to_dtype;

#if defined(LSHMOE_WITH_NCCL)

class NcclExchange : public lshmoe::api::DeviceExchange {
 public:
  explicit NcclExchange(std::unique_ptr<lshmoe::exchange::NcclEngine> e) : engine(std::move(e)) {}
  int rank() const override { return engine->rank(); }
  int world_size() const override { return engine->world_size(); }
  lshmoe::Status expert_rows(const size_t* recv_rows, size_t row_elems, DType dtype, bool centroids,
                             size_t* out) const override {
    return engine->expert_rows(recv_rows, row_elems, dtype, centroids, out);
  }
  lshmoe::Status stats(lshmoe_stats_t* out) const override { return engine->stats(out); }
  std::unique_ptr<lshmoe::exchange::NcclEngine> engine;
};

// Freeing a handle returns its device contexts to the engine for reuse.
// The C API frees a communicator's handles before the communicator.
class NcclHandle : public lshmoe::api::DeviceHandle {
 public:
  explicit NcclHandle(lshmoe::exchange::NcclEngine* e) : engine(e) {}
  ~NcclHandle() override { engine->recycle(std::move(impl)); }
  lshmoe::exchange::NcclEngine* engine;
  std::unique_ptr<lshmoe::exchange::DeviceHandle> impl;
};

lshmoe::exchange::NcclEngine* device_engine(lshmoe_comm_t* comm, const char* what,
                                            lshmoe_status_t* status) {
  if (comm == nullptr || !comm->device) {
    *status =
        fail(LSHMOE_ERR_INVALID_ARGUMENT,
             "%s: the communicator is NULL or a host one (use the calls without _async)", what);
    return nullptr;
  }
  return static_cast<NcclExchange*>(comm->device.get())->engine.get();
}

#else

lshmoe_status_t no_nccl() {
  return fail(LSHMOE_ERR_UNSUPPORTED, "this liblshmoe was built without CUDA and NCCL");
}

#endif

}  // namespace

extern "C" {

#if defined(LSHMOE_WITH_NCCL)

lshmoe_status_t lshmoe_comm_create_from_nccl(void* nccl_comm, const lshmoe_config_t* config,
                                             lshmoe_comm_t** comm) {
  return guarded("lshmoe_comm_create_from_nccl", [&] {
    if (comm == nullptr || nccl_comm == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "comm_create_from_nccl: NULL argument");
    }
    lshmoe::Config c;
    if (config != nullptr) {
      c = config->config;
    } else {
      LSHMOE_RETURN_IF_ERROR(lshmoe::config_from_env(c));
    }
    std::unique_ptr<lshmoe::exchange::NcclEngine> engine;
    LSHMOE_RETURN_IF_ERROR(
        lshmoe::exchange::NcclEngine::create(c, static_cast<ncclComm_t>(nccl_comm), &engine));
    auto out = std::make_unique<lshmoe_comm>();
    out->device = std::make_unique<NcclExchange>(std::move(engine));
    *comm = out.release();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_dispatch_async(lshmoe_comm_t* comm, const void* send,
                                      const size_t* send_rows, void* recv, const size_t* recv_rows,
                                      size_t row_elems, lshmoe_dtype_t dtype,
                                      lshmoe_dispatch_mode_t mode, void* stream,
                                      lshmoe_handle_t** handle) {
  return guarded("lshmoe_dispatch_async", [&] {
    lshmoe_status_t s = LSHMOE_SUCCESS;
    lshmoe::exchange::NcclEngine* e = device_engine(comm, "lshmoe_dispatch_async", &s);
    if (e == nullptr) return s;
    if (handle == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch: handle is NULL");
    DType t;
    if (!to_dtype(dtype, &t)) return bad_dtype("lshmoe_dispatch_async", dtype);
    lshmoe::exchange::DispatchMode m;
    LSHMOE_RETURN_IF_ERROR(lshmoe::api::to_mode("lshmoe_dispatch_async", mode, &m));
    auto impl = std::make_unique<NcclHandle>(e);
    LSHMOE_RETURN_IF_ERROR(e->dispatch(send, send_rows, recv, recv_rows, row_elems, t,
                                       m == lshmoe::exchange::DispatchMode::kCentroids, stream,
                                       &impl->impl));
    auto h = std::make_unique<lshmoe_handle>();
    h->comm = comm;
    h->device = std::move(impl);
    comm->handles.insert(h.get());
    *handle = h.release();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_combine_async(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                     const void* expert_out, void* out, void* stream) {
  return guarded("lshmoe_combine_async", [&] {
    lshmoe_status_t s = LSHMOE_SUCCESS;
    lshmoe::exchange::NcclEngine* e = device_engine(comm, "lshmoe_combine_async", &s);
    if (e == nullptr) return s;
    if (handle == nullptr || handle->comm != comm || !handle->device) {
      return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                  "combine: the handle is NULL or not from this communicator's dispatch_async");
    }
    return e->combine(static_cast<NcclHandle*>(handle->device.get())->impl.get(), expert_out, out,
                      stream);
  });
}

lshmoe_status_t lshmoe_comm_check(lshmoe_comm_t* comm, void* stream) {
  return guarded("lshmoe_comm_check", [&] {
    lshmoe_status_t s = LSHMOE_SUCCESS;
    lshmoe::exchange::NcclEngine* e = device_engine(comm, "lshmoe_comm_check", &s);
    return e == nullptr ? s : e->check(stream);
  });
}

#else  // built without CUDA and NCCL

lshmoe_status_t lshmoe_comm_create_from_nccl(void*, const lshmoe_config_t*, lshmoe_comm_t** comm) {
  if (comm != nullptr) *comm = nullptr;
  return no_nccl();
}
lshmoe_status_t lshmoe_dispatch_async(lshmoe_comm_t*, const void*, const size_t*, void*,
                                      const size_t*, size_t, lshmoe_dtype_t, lshmoe_dispatch_mode_t,
                                      void*, lshmoe_handle_t**) {
  return no_nccl();
}
lshmoe_status_t lshmoe_combine_async(lshmoe_comm_t*, lshmoe_handle_t*, const void*, void*, void*) {
  return no_nccl();
}
lshmoe_status_t lshmoe_comm_check(lshmoe_comm_t*, void*) {
  return no_nccl();
}

#endif

}  // extern "C"
