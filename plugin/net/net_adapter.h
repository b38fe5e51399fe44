// The ncclNet entry points shared by the v11 and v8 tables: NCCL types in,
// src/transport/ucx/ucx_net out. Network failures are ncclSystemError,
// misuse and unsupported requests ncclInternalError; every failure is
// logged through NCCL's logger with the message that names it.
#pragma once

#include "nccl_net_abi.h"

namespace lshmoe::plugin {

ncclResult_t init(ncclDebugLogger_t logger);
ncclResult_t devices(int* ndev);
// The v11 properties; v8 takes its prefix fields.
ncclResult_t properties(int dev, ncclNetProperties_v11_t* props);
ncclResult_t listen(int dev, void* handle, void** listen_comm);
ncclResult_t connect(int dev, void* handle, void** send_comm);
ncclResult_t accept(void* listen_comm, void** recv_comm);
ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mhandle);
ncclResult_t reg_mr_dma_buf(void* comm, void* data, size_t size, int type, uint64_t offset, int fd,
                            void** mhandle);
ncclResult_t dereg_mr(void* comm, void* mhandle);
ncclResult_t isend(void* send_comm, void* data, size_t size, int tag, void* mhandle,
                   void** request);
ncclResult_t irecv(void* recv_comm, int n, void** data, const size_t* sizes, const int* tags,
                   void** request);
ncclResult_t iflush(void* recv_comm, int n, void** data, int* sizes, void** mhandles,
                    void** request);
ncclResult_t test(void* request, int* done, int* sizes);
ncclResult_t close_send(void* send_comm);
ncclResult_t close_recv(void* recv_comm);
ncclResult_t close_listen(void* listen_comm);

}  // namespace lshmoe::plugin
