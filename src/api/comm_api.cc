// The public C API of communicators: argument checks and handle ownership
// over src/exchange.
#include <memory>
#include <set>

#include "api/api_internal.h"
#include "api/comm_internal.h"
#include "exchange/engine.h"
#include "transport/bootstrap.h"
#include "transport/ucx/ucx_mesh.h"

namespace {

using lshmoe::DType;
using lshmoe::fail;
using lshmoe::api::bad_dtype;
using lshmoe::api::guarded;
using lshmoe::api::to_dtype;
using lshmoe::api::to_mode;
using lshmoe::exchange::DispatchMode;

lshmoe_status_t no_comm(const char* what) {
  return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: the communicator is NULL", what);
}

// Host calls on a device communicator (made from an ncclComm_t).
lshmoe_status_t host_only(const char* what) {
  return fail(LSHMOE_ERR_INVALID_ARGUMENT,
              "%s: this communicator works on device buffers: use the _async calls", what);
}

}  // namespace

extern "C" {

lshmoe_status_t lshmoe_comm_create(const lshmoe_config_t* config, lshmoe_comm_t** comm) {
  return guarded("lshmoe_comm_create", [&] {
    if (comm == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "comm must not be NULL");
    lshmoe::Config c;
    if (config != nullptr) {
      c = config->config;
    } else {
      LSHMOE_RETURN_IF_ERROR(lshmoe::config_from_env(c));
    }
    lshmoe::transport::BootstrapConfig bootstrap;
    LSHMOE_RETURN_IF_ERROR(lshmoe::transport::bootstrap_config_from_env(&bootstrap));
    bootstrap.timeout_ms = int(c.timeout_ms);
    std::unique_ptr<lshmoe::transport::UcxMesh> mesh;
    LSHMOE_RETURN_IF_ERROR(lshmoe::transport::UcxMesh::create(bootstrap, &mesh));
    auto out = std::make_unique<lshmoe_comm>();
    LSHMOE_RETURN_IF_ERROR(lshmoe::exchange::Engine::create(c, std::move(mesh), &out->engine));
    *comm = out.release();
    return LSHMOE_SUCCESS;
  });
}

void lshmoe_comm_destroy(lshmoe_comm_t* comm) {
  if (comm == nullptr) return;
  for (lshmoe_handle* h : comm->handles) delete h;
  delete comm;
}

lshmoe_status_t lshmoe_comm_rank(const lshmoe_comm_t* comm, int* rank) {
  return guarded("lshmoe_comm_rank", [&] {
    if (comm == nullptr || rank == nullptr) return no_comm("lshmoe_comm_rank");
    *rank = comm->engine ? comm->engine->rank() : comm->device->rank();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_comm_size(const lshmoe_comm_t* comm, int* size) {
  return guarded("lshmoe_comm_size", [&] {
    if (comm == nullptr || size == nullptr) return no_comm("lshmoe_comm_size");
    *size = comm->engine ? comm->engine->world_size() : comm->device->world_size();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_comm_expert_rows(const lshmoe_comm_t* comm, const size_t* recv_rows,
                                        size_t row_elems, lshmoe_dtype_t dtype,
                                        lshmoe_dispatch_mode_t mode, size_t* expert_rows) {
  return guarded("lshmoe_comm_expert_rows", [&] {
    if (comm == nullptr) return no_comm("lshmoe_comm_expert_rows");
    DType t;
    if (!to_dtype(dtype, &t)) return bad_dtype("lshmoe_comm_expert_rows", dtype);
    DispatchMode m = DispatchMode::kRows;
    LSHMOE_RETURN_IF_ERROR(to_mode("lshmoe_comm_expert_rows", mode, &m));
    if (!comm->engine) {
      return comm->device->expert_rows(recv_rows, row_elems, t, m == DispatchMode::kCentroids,
                                       expert_rows);
    }
    return comm->engine->expert_rows(recv_rows, row_elems, t, m, expert_rows);
  });
}

lshmoe_status_t lshmoe_dispatch(lshmoe_comm_t* comm, const void* send, const size_t* send_rows,
                                void* recv, const size_t* recv_rows, size_t row_elems,
                                lshmoe_dtype_t dtype, lshmoe_dispatch_mode_t mode,
                                lshmoe_handle_t** handle) {
  return guarded("lshmoe_dispatch", [&] {
    if (comm == nullptr) return no_comm("lshmoe_dispatch");
    if (handle == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch: handle is NULL");
    DType t;
    if (!to_dtype(dtype, &t)) return bad_dtype("lshmoe_dispatch", dtype);
    DispatchMode m = DispatchMode::kRows;
    LSHMOE_RETURN_IF_ERROR(to_mode("lshmoe_dispatch", mode, &m));
    if (!comm->engine) return host_only("lshmoe_dispatch");
    auto h = std::make_unique<lshmoe_handle>();
    h->comm = comm;
    LSHMOE_RETURN_IF_ERROR(
        comm->engine->dispatch(send, send_rows, recv, recv_rows, row_elems, t, m, &h->impl));
    comm->handles.insert(h.get());
    *handle = h.release();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_handle_used_rows(const lshmoe_handle_t* handle, size_t* used_rows) {
  return guarded("lshmoe_handle_used_rows", [&] {
    if (handle == nullptr || used_rows == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "handle_used_rows: handle and used_rows are required");
    }
    if (!handle->impl) {
      return fail(LSHMOE_ERR_UNSUPPORTED,
                  "handle_used_rows: a device communicator keeps the counts on the device");
    }
    const std::vector<size_t>& used = handle->impl->used_rows;
    std::copy(used.begin(), used.end(), used_rows);
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_combine(lshmoe_comm_t* comm, lshmoe_handle_t* handle, const void* expert_out,
                               void* out) {
  return guarded("lshmoe_combine", [&] {
    if (comm == nullptr) return no_comm("lshmoe_combine");
    if (handle == nullptr || handle->comm != comm) {
      return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                  "combine: the handle is NULL or comes from another communicator");
    }
    if (!comm->engine || !handle->impl) return host_only("lshmoe_combine");
    return comm->engine->combine(handle->impl.get(), expert_out, out);
  });
}

void lshmoe_handle_free(lshmoe_handle_t* handle) {
  if (handle == nullptr) return;
  handle->comm->handles.erase(handle);
  delete handle;
}

lshmoe_status_t lshmoe_comm_stats(const lshmoe_comm_t* comm, lshmoe_stats_t* stats) {
  return guarded("lshmoe_comm_stats", [&] {
    if (comm == nullptr || stats == nullptr) return no_comm("lshmoe_comm_stats");
    if (comm->device) return comm->device->stats(stats);
    *stats = comm->engine->stats();
    return LSHMOE_SUCCESS;
  });
}

}  // extern "C"
