// Device communicators: an lshmoe communicator over the caller's
// ncclComm_t. The calls on it are comm_api.cc's; this file only makes one,
// and is built into liblshmoe.so in every build (without CUDA and NCCL it
// says so).
#include <memory>

#include "api/api_internal.h"
#include "api/comm_internal.h"

#if defined(LSHMOE_WITH_NCCL)
#include "exchange/nccl_engine.h"
#endif

namespace {

#if defined(LSHMOE_WITH_NCCL)

// The NCCL liblshmoe was linked against, through its pncclXxx names: where
// an LD_PRELOAD shim defines ncclSend, the engine still reaches NCCL itself.
const lshmoe::transport::NcclOps& linked_nccl() {
  static const lshmoe::transport::NcclOps ops = {
      .group_start = pncclGroupStart,
      .group_end = pncclGroupEnd,
      .send = pncclSend,
      .recv = pncclRecv,
      .comm_count = pncclCommCount,
      .comm_user_rank = pncclCommUserRank,
      .comm_cu_device = pncclCommCuDevice,
      .comm_get_async_error = pncclCommGetAsyncError,
      .get_error_string = pncclGetErrorString,
  };
  return ops;
}

#endif

}  // namespace

extern "C" {

lshmoe_status_t lshmoe_comm_create_from_nccl(void* nccl_comm, const lshmoe_config_t* config,
                                             lshmoe_comm_t** comm) {
  return lshmoe::api::guarded("lshmoe_comm_create_from_nccl", [&] {
    if (comm != nullptr) *comm = nullptr;
#if defined(LSHMOE_WITH_NCCL)
    if (comm == nullptr || nccl_comm == nullptr) {
      return lshmoe::fail(LSHMOE_ERR_INVALID_ARGUMENT, "comm_create_from_nccl: NULL argument");
    }
    lshmoe::Config c;
    if (config != nullptr) {
      c = config->config;
    } else {
      LSHMOE_RETURN_IF_ERROR(lshmoe::config_from_env(c));
    }
    std::unique_ptr<lshmoe::exchange::NcclEngine> engine;
    LSHMOE_RETURN_IF_ERROR(lshmoe::exchange::NcclEngine::create(
        c, linked_nccl(), static_cast<ncclComm_t>(nccl_comm), &engine));
    auto out = std::make_unique<lshmoe_comm>();
    out->exchange = std::move(engine);
    *comm = out.release();
    return LSHMOE_SUCCESS;
#else
    return lshmoe::fail(LSHMOE_ERR_UNSUPPORTED, "this liblshmoe was built without CUDA and NCCL");
#endif
  });
}

}  // extern "C"
