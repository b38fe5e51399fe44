// The real NCCL behind the shim: its entry points, looked up on first use
// (never at load: a process that never calls NCCL is untouched), in the
// libnccl.so.2 the process already has (which Python may have loaded
// privately, RTLD_LOCAL), else in the next object after the shim. pncclXxx
// first: libnccl exports every API function under that name too, and the
// shim never defines it. A function this NCCL lacks (ncclAlltoAll before
// 2.28) stays NULL: calling it through the shim is an NCCL error, not a crash.
#pragma once

#include <nccl.h>

#include "transport/nccl/nccl_ops.h"

namespace lshmoe::interpose {

struct RealNccl {
  // The exchange's subset, for the engines.
  transport::NcclOps ops{};

  ncclResult_t (*comm_init_rank)(ncclComm_t*, int, ncclUniqueId, int) = nullptr;
  ncclResult_t (*comm_init_rank_config)(ncclComm_t*, int, ncclUniqueId, int,
                                        ncclConfig_t*) = nullptr;
  ncclResult_t (*comm_init_all)(ncclComm_t*, int, const int*) = nullptr;
  ncclResult_t (*comm_split)(ncclComm_t, int, int, ncclComm_t*, ncclConfig_t*) = nullptr;
  ncclResult_t (*comm_destroy)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_abort)(ncclComm_t) = nullptr;
  ncclResult_t (*comm_finalize)(ncclComm_t) = nullptr;
  ncclResult_t (*all_to_all)(const void*, void*, size_t, ncclDataType_t, ncclComm_t,
                             cudaStream_t) = nullptr;
  ncclResult_t (*group_simulate_end)(ncclSimInfo_t*) = nullptr;
};

// Resolved once per process; NULL when no NCCL is found at all (the shim's
// entry points then answer ncclSystemError and log why).
const RealNccl* real_nccl();

}  // namespace lshmoe::interpose
