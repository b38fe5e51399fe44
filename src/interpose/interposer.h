// The shim's logic behind the NCCL entry points of plugin/preload: groups
// (per thread, nested, the outermost end launches), the state kept per
// communicator, the classification of each call's messages and their
// compression. Nothing here is exported; nothing runs before the first NCCL
// call of the process.
//
// A group's ncclSend/ncclRecv/ncclAlltoAll are held until the outermost
// ncclGroupEnd and launched there, inside NCCL's own group (opened at the
// outermost ncclGroupStart, so the group's other NCCL calls stay in it).
// With LSHMOE_VERIFY=1 NCCL's group opens at ncclGroupEnd instead, after the
// ranks have compared their classifications of the call.
#pragma once

#include <nccl.h>

namespace lshmoe::interpose {

ncclResult_t send(const void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                  cudaStream_t stream);
ncclResult_t recv(void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                  cudaStream_t stream);
ncclResult_t all_to_all(const void* send, void* recv, size_t count, ncclDataType_t type,
                        ncclComm_t comm, cudaStream_t stream);
ncclResult_t group_start();
ncclResult_t group_end();
ncclResult_t group_simulate_end(ncclSimInfo_t* info);

ncclResult_t comm_init_rank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank);
ncclResult_t comm_init_rank_config(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                   ncclConfig_t* config);
ncclResult_t comm_init_all(ncclComm_t* comms, int ndev, const int* devices);
ncclResult_t comm_split(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                        ncclConfig_t* config);
ncclResult_t comm_destroy(ncclComm_t comm);
ncclResult_t comm_abort(ncclComm_t comm);
ncclResult_t comm_finalize(ncclComm_t comm);

}  // namespace lshmoe::interpose
