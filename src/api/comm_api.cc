// The public C API of communicators: argument checks and handle ownership
// over src/exchange, the same for host and device communicators (only the
// memory they take differs: host buffers here, device buffers and a stream
// with the _async calls).
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
using lshmoe::exchange::Exchange;
using lshmoe::exchange::Memory;

// The communicator's engine when it works on `memory`; else NULL and a
// status that says which calls to use.
Exchange* engine_for(lshmoe_comm_t* comm, Memory memory, const char* what,
                     lshmoe_status_t* status) {
  if (comm == nullptr) {
    *status = fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: the communicator is NULL", what);
    return nullptr;
  }
  if (comm->exchange->memory() != memory) {
    *status = fail(LSHMOE_ERR_INVALID_ARGUMENT,
                   memory == Memory::kHost
                       ? "%s: this communicator works on device buffers: use the _async calls"
                       : "%s: this is a host communicator: use the calls without _async",
                   what);
    return nullptr;
  }
  return comm->exchange.get();
}

lshmoe_status_t bad_experts(const char* what, int experts) {
  return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: %d experts per rank (at least 1)", what, experts);
}

lshmoe_status_t expert_rows(const lshmoe_comm_t* comm, const char* what, const size_t* recv_rows,
                            int experts, size_t row_elems, lshmoe_dtype_t dtype,
                            lshmoe_dispatch_mode_t mode, size_t* out) {
  return guarded(what, [&] {
    if (comm == nullptr)
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: the communicator is NULL", what);
    DType t;
    if (!to_dtype(dtype, &t)) return bad_dtype(what, dtype);
    DispatchMode m = DispatchMode::kRows;
    LSHMOE_RETURN_IF_ERROR(to_mode(what, mode, &m));
    if (experts < 1) return bad_experts(what, experts);
    return comm->exchange->expert_rows(recv_rows, size_t(experts), row_elems, t, m, out);
  });
}

lshmoe_status_t no_comm(const char* what) {
  return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: the communicator is NULL", what);
}

lshmoe_status_t dispatch(lshmoe_comm_t* comm, Memory memory, const char* what, const void* send,
                         const size_t* send_rows, void* recv, const size_t* recv_rows, int experts,
                         size_t row_elems, lshmoe_dtype_t dtype, lshmoe_dispatch_mode_t mode,
                         void* stream, lshmoe_handle_t** handle) {
  return guarded(what, [&] {
    lshmoe_status_t s = LSHMOE_SUCCESS;
    Exchange* e = engine_for(comm, memory, what, &s);
    if (e == nullptr) return s;
    if (handle == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch: handle is NULL");
    DType t;
    if (!to_dtype(dtype, &t)) return bad_dtype(what, dtype);
    DispatchMode m = DispatchMode::kRows;
    LSHMOE_RETURN_IF_ERROR(to_mode(what, mode, &m));
    if (experts < 1) return bad_experts(what, experts);
    auto h = std::make_unique<lshmoe_handle>();
    h->comm = comm;
    LSHMOE_RETURN_IF_ERROR(e->dispatch(send, send_rows, recv, recv_rows, size_t(experts), row_elems,
                                       t, m, stream, &h->impl));
    comm->handles.insert(h.get());
    *handle = h.release();
    return LSHMOE_SUCCESS;
  });
}

// The steps of a pair after its dispatch, on the handle's communicator.
enum class PairStep { kCombine, kCombineBackward, kDispatchBackward };

lshmoe_status_t pair_step(lshmoe_comm_t* comm, Memory memory, const char* what, PairStep step,
                          lshmoe_handle_t* handle, const void* in, void* out, void* stream) {
  return guarded(what, [&] {
    lshmoe_status_t s = LSHMOE_SUCCESS;
    Exchange* e = engine_for(comm, memory, what, &s);
    if (e == nullptr) return s;
    if (handle == nullptr || handle->comm != comm) {
      return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                  "%s: the handle is NULL or comes from another communicator", what);
    }
    switch (step) {
      case PairStep::kCombine:
        return e->combine(handle->impl.get(), in, out, stream);
      case PairStep::kCombineBackward:
        return e->combine_backward(handle->impl.get(), in, out, stream);
      case PairStep::kDispatchBackward:
        break;
    }
    return e->dispatch_backward(handle->impl.get(), in, out, stream);
  });
}

}  // namespace

lshmoe_comm::~lshmoe_comm() {
  for (lshmoe_handle* h : handles) {
    exchange->release(std::move(h->impl));
    delete h;
  }
}

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
    std::unique_ptr<lshmoe::exchange::Engine> engine;
    LSHMOE_RETURN_IF_ERROR(lshmoe::exchange::Engine::create(c, std::move(mesh), &engine));
    auto out = std::make_unique<lshmoe_comm>();
    out->exchange = std::move(engine);
    *comm = out.release();
    return LSHMOE_SUCCESS;
  });
}

void lshmoe_comm_destroy(lshmoe_comm_t* comm) {
  delete comm;
}

lshmoe_status_t lshmoe_comm_rank(const lshmoe_comm_t* comm, int* rank) {
  return guarded("lshmoe_comm_rank", [&] {
    if (comm == nullptr || rank == nullptr) return no_comm("lshmoe_comm_rank");
    *rank = comm->exchange->rank();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_comm_size(const lshmoe_comm_t* comm, int* size) {
  return guarded("lshmoe_comm_size", [&] {
    if (comm == nullptr || size == nullptr) return no_comm("lshmoe_comm_size");
    *size = comm->exchange->world_size();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_comm_expert_rows(const lshmoe_comm_t* comm, const size_t* recv_rows,
                                        size_t row_elems, lshmoe_dtype_t dtype,
                                        lshmoe_dispatch_mode_t mode, size_t* expert_rows_out) {
  return expert_rows(comm, "lshmoe_comm_expert_rows", recv_rows, 1, row_elems, dtype, mode,
                     expert_rows_out);
}

lshmoe_status_t lshmoe_comm_expert_rows_experts(const lshmoe_comm_t* comm, const size_t* recv_rows,
                                                int experts_per_rank, size_t row_elems,
                                                lshmoe_dtype_t dtype, lshmoe_dispatch_mode_t mode,
                                                size_t* expert_rows_out) {
  return expert_rows(comm, "lshmoe_comm_expert_rows_experts", recv_rows, experts_per_rank,
                     row_elems, dtype, mode, expert_rows_out);
}

lshmoe_status_t lshmoe_dispatch(lshmoe_comm_t* comm, const void* send, const size_t* send_rows,
                                void* recv, const size_t* recv_rows, size_t row_elems,
                                lshmoe_dtype_t dtype, lshmoe_dispatch_mode_t mode,
                                lshmoe_handle_t** handle) {
  return dispatch(comm, Memory::kHost, "lshmoe_dispatch", send, send_rows, recv, recv_rows, 1,
                  row_elems, dtype, mode, nullptr, handle);
}

lshmoe_status_t lshmoe_dispatch_experts(lshmoe_comm_t* comm, const void* send,
                                        const size_t* send_rows, void* recv,
                                        const size_t* recv_rows, int experts_per_rank,
                                        size_t row_elems, lshmoe_dtype_t dtype,
                                        lshmoe_dispatch_mode_t mode, lshmoe_handle_t** handle) {
  return dispatch(comm, Memory::kHost, "lshmoe_dispatch_experts", send, send_rows, recv, recv_rows,
                  experts_per_rank, row_elems, dtype, mode, nullptr, handle);
}

lshmoe_status_t lshmoe_dispatch_async(lshmoe_comm_t* comm, const void* send,
                                      const size_t* send_rows, void* recv, const size_t* recv_rows,
                                      size_t row_elems, lshmoe_dtype_t dtype,
                                      lshmoe_dispatch_mode_t mode, void* stream,
                                      lshmoe_handle_t** handle) {
  return dispatch(comm, Memory::kDevice, "lshmoe_dispatch_async", send, send_rows, recv, recv_rows,
                  1, row_elems, dtype, mode, stream, handle);
}

lshmoe_status_t lshmoe_dispatch_experts_async(lshmoe_comm_t* comm, const void* send,
                                              const size_t* send_rows, void* recv,
                                              const size_t* recv_rows, int experts_per_rank,
                                              size_t row_elems, lshmoe_dtype_t dtype,
                                              lshmoe_dispatch_mode_t mode, void* stream,
                                              lshmoe_handle_t** handle) {
  return dispatch(comm, Memory::kDevice, "lshmoe_dispatch_experts_async", send, send_rows, recv,
                  recv_rows, experts_per_rank, row_elems, dtype, mode, stream, handle);
}

lshmoe_status_t lshmoe_handle_used_rows(const lshmoe_handle_t* handle, size_t* used_rows) {
  return guarded("lshmoe_handle_used_rows", [&] {
    if (handle == nullptr || used_rows == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "handle_used_rows: handle and used_rows are required");
    }
    return handle->comm->exchange->used_rows(*handle->impl, used_rows);
  });
}

lshmoe_status_t lshmoe_handle_assignment(const lshmoe_handle_t* handle, size_t part,
                                         uint32_t* slots) {
  return guarded("lshmoe_handle_assignment", [&] {
    if (handle == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "handle_assignment: the handle is NULL");
    }
    return handle->comm->exchange->assignment(*handle->impl, part, slots);
  });
}

lshmoe_status_t lshmoe_combine(lshmoe_comm_t* comm, lshmoe_handle_t* handle, const void* expert_out,
                               void* out) {
  return pair_step(comm, Memory::kHost, "lshmoe_combine", PairStep::kCombine, handle, expert_out,
                   out, nullptr);
}

lshmoe_status_t lshmoe_combine_async(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                     const void* expert_out, void* out, void* stream) {
  return pair_step(comm, Memory::kDevice, "lshmoe_combine_async", PairStep::kCombine, handle,
                   expert_out, out, stream);
}

lshmoe_status_t lshmoe_combine_backward(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                        const void* grad_out, void* grad_expert_out) {
  return pair_step(comm, Memory::kHost, "lshmoe_combine_backward", PairStep::kCombineBackward,
                   handle, grad_out, grad_expert_out, nullptr);
}

lshmoe_status_t lshmoe_combine_backward_async(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                              const void* grad_out, void* grad_expert_out,
                                              void* stream) {
  return pair_step(comm, Memory::kDevice, "lshmoe_combine_backward_async",
                   PairStep::kCombineBackward, handle, grad_out, grad_expert_out, stream);
}

lshmoe_status_t lshmoe_dispatch_backward(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                         const void* grad_expert_in, void* grad_in) {
  return pair_step(comm, Memory::kHost, "lshmoe_dispatch_backward", PairStep::kDispatchBackward,
                   handle, grad_expert_in, grad_in, nullptr);
}

lshmoe_status_t lshmoe_dispatch_backward_async(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                               const void* grad_expert_in, void* grad_in,
                                               void* stream) {
  return pair_step(comm, Memory::kDevice, "lshmoe_dispatch_backward_async",
                   PairStep::kDispatchBackward, handle, grad_expert_in, grad_in, stream);
}

lshmoe_status_t lshmoe_comm_check(lshmoe_comm_t* comm, void* stream) {
  return guarded("lshmoe_comm_check", [&] {
    if (comm == nullptr) return no_comm("lshmoe_comm_check");
    return comm->exchange->check(stream);
  });
}

void lshmoe_handle_free(lshmoe_handle_t* handle) {
  if (handle == nullptr) return;
  handle->comm->handles.erase(handle);
  handle->comm->exchange->release(std::move(handle->impl));
  delete handle;
}

lshmoe_status_t lshmoe_comm_stats(const lshmoe_comm_t* comm, lshmoe_stats_t* stats) {
  return guarded("lshmoe_comm_stats", [&] {
    if (comm == nullptr || stats == nullptr) return no_comm("lshmoe_comm_stats");
    return comm->exchange->stats(stats);
  });
}

}  // extern "C"
