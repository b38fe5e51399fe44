// NCCL's point-to-point and communicator queries behind a table, so that
// the device exchange calls whichever NCCL it is handed: the library it was
// linked against (through the pncclXxx names, which an LD_PRELOAD shim never
// defines), the real NCCL behind the shim, or a test's stand-in.
#pragma once

#include <nccl.h>

#include "common/status.h"

namespace lshmoe::transport {

struct NcclOps {
  ncclResult_t (*group_start)();
  ncclResult_t (*group_end)();
  ncclResult_t (*send)(const void* buffer, size_t count, ncclDataType_t type, int peer,
                       ncclComm_t comm, cudaStream_t stream);
  ncclResult_t (*recv)(void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                       cudaStream_t stream);
  ncclResult_t (*comm_count)(const ncclComm_t comm, int* count);
  ncclResult_t (*comm_user_rank)(const ncclComm_t comm, int* rank);
  ncclResult_t (*comm_cu_device)(const ncclComm_t comm, int* device);
  ncclResult_t (*comm_get_async_error)(ncclComm_t comm, ncclResult_t* state);
  const char* (*get_error_string)(ncclResult_t result);
};

// The entry points of the library behind `handle` (a dlopen handle, or
// RTLD_NEXT): pncclXxx where it exports them, else ncclXxx. Fails naming
// the first function it lacks.
Status resolve_nccl_ops(void* handle, NcclOps* out);

// Bytes of one element of `type`; 0 for a type this NCCL header does not know.
size_t nccl_type_size(ncclDataType_t type);

// An NCCL failure as a library status: network trouble is LSHMOE_ERR_NETWORK.
Status nccl_failure(const NcclOps& ops, const char* what, ncclResult_t result);

}  // namespace lshmoe::transport
