// The NCCL entry points an LD_PRELOAD of liblshmoe_preload.so puts in front
// of libnccl: each one the same thin call into src/interpose, which keeps
// every decision. Only these are defined; libnccl's own internal calls
// (ncclCommGetAsyncError, ncclGetUniqueId, ...) never come here. No
// exception crosses into the caller.
#include <nccl.h>

#include <exception>

#include "common/log.h"
#include "interpose/interposer.h"

namespace {

template <typename Fn>
ncclResult_t guarded(const char* name, Fn&& fn) {
  try {
    return fn();
  } catch (const std::exception& e) {
    LSHMOE_WARN("shim: %s: %s", name, e.what());
  } catch (...) {
    LSHMOE_WARN("shim: %s: unexpected exception", name);
  }
  return ncclInternalError;
}

namespace shim = lshmoe::interpose;

}  // namespace

#define LSHMOE_SHIM_API extern "C" __attribute__((visibility("default")))

LSHMOE_SHIM_API ncclResult_t ncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype,
                                      int peer, ncclComm_t comm, cudaStream_t stream) {
  return guarded("ncclSend",
                 [&] { return shim::send(sendbuff, count, datatype, peer, comm, stream); });
}

LSHMOE_SHIM_API ncclResult_t ncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype,
                                      int peer, ncclComm_t comm, cudaStream_t stream) {
  return guarded("ncclRecv",
                 [&] { return shim::recv(recvbuff, count, datatype, peer, comm, stream); });
}

LSHMOE_SHIM_API ncclResult_t ncclAlltoAll(const void* sendbuff, void* recvbuff, size_t count,
                                          ncclDataType_t datatype, ncclComm_t comm,
                                          cudaStream_t stream) {
  return guarded("ncclAlltoAll", [&] {
    return shim::all_to_all(sendbuff, recvbuff, count, datatype, comm, stream);
  });
}

LSHMOE_SHIM_API ncclResult_t ncclGroupStart() {
  return guarded("ncclGroupStart", [] { return shim::group_start(); });
}

LSHMOE_SHIM_API ncclResult_t ncclGroupEnd() {
  return guarded("ncclGroupEnd", [] { return shim::group_end(); });
}

LSHMOE_SHIM_API ncclResult_t ncclGroupSimulateEnd(ncclSimInfo_t* simInfo) {
  return guarded("ncclGroupSimulateEnd", [&] { return shim::group_simulate_end(simInfo); });
}

LSHMOE_SHIM_API ncclResult_t ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId,
                                              int rank) {
  return guarded("ncclCommInitRank",
                 [&] { return shim::comm_init_rank(comm, nranks, commId, rank); });
}

LSHMOE_SHIM_API ncclResult_t ncclCommInitRankConfig(ncclComm_t* comm, int nranks,
                                                    ncclUniqueId commId, int rank,
                                                    ncclConfig_t* config) {
  return guarded("ncclCommInitRankConfig",
                 [&] { return shim::comm_init_rank_config(comm, nranks, commId, rank, config); });
}

LSHMOE_SHIM_API ncclResult_t ncclCommInitAll(ncclComm_t* comm, int ndev, const int* devlist) {
  return guarded("ncclCommInitAll", [&] { return shim::comm_init_all(comm, ndev, devlist); });
}

LSHMOE_SHIM_API ncclResult_t ncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                                           ncclConfig_t* config) {
  return guarded("ncclCommSplit",
                 [&] { return shim::comm_split(comm, color, key, newcomm, config); });
}

LSHMOE_SHIM_API ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  return guarded("ncclCommDestroy", [&] { return shim::comm_destroy(comm); });
}

LSHMOE_SHIM_API ncclResult_t ncclCommAbort(ncclComm_t comm) {
  return guarded("ncclCommAbort", [&] { return shim::comm_abort(comm); });
}

LSHMOE_SHIM_API ncclResult_t ncclCommFinalize(ncclComm_t comm) {
  return guarded("ncclCommFinalize", [&] { return shim::comm_finalize(comm); });
}
