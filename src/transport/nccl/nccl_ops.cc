#include "transport/nccl/nccl_ops.h"

#include <dlfcn.h>

#include <string>

namespace lshmoe::transport {

namespace {

// `name` without its "nccl" prefix.
template <typename Fn>
Status resolve(void* handle, const char* name, Fn* out) {
  const std::string profiled = std::string("pnccl") + name;
  void* fn = dlsym(handle, profiled.c_str());
  if (fn == nullptr) fn = dlsym(handle, (std::string("nccl") + name).c_str());
  if (fn == nullptr) {
    return fail(LSHMOE_ERR_UNSUPPORTED, "nccl: the library in use has neither %s nor nccl%s",
                profiled.c_str(), name);
  }
  *out = reinterpret_cast<Fn>(fn);
  return LSHMOE_SUCCESS;
}

}  // namespace

Status resolve_nccl_ops(void* handle, NcclOps* out) {
  NcclOps ops{};
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "GroupStart", &ops.group_start));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "GroupEnd", &ops.group_end));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "Send", &ops.send));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "Recv", &ops.recv));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "CommCount", &ops.comm_count));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "CommUserRank", &ops.comm_user_rank));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "CommCuDevice", &ops.comm_cu_device));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "CommGetAsyncError", &ops.comm_get_async_error));
  LSHMOE_RETURN_IF_ERROR(resolve(handle, "GetErrorString", &ops.get_error_string));
  *out = ops;
  return LSHMOE_SUCCESS;
}

size_t nccl_type_size(ncclDataType_t type) {
  switch (type) {
    case ncclInt8:
    case ncclUint8:
    case ncclFloat8e4m3:
    case ncclFloat8e5m2:
      return 1;
    case ncclFloat16:
    case ncclBfloat16:
      return 2;
    case ncclInt32:
    case ncclUint32:
    case ncclFloat32:
      return 4;
    case ncclInt64:
    case ncclUint64:
    case ncclFloat64:
      return 8;
    default:
      return 0;
  }
}

Status nccl_failure(const NcclOps& ops, const char* what, ncclResult_t result) {
  return fail(result == ncclSystemError || result == ncclRemoteError ? LSHMOE_ERR_NETWORK
                                                                     : LSHMOE_ERR_INTERNAL,
              "nccl: %s: %s", what, ops.get_error_string(result));
}

}  // namespace lshmoe::transport
