// ncclNetPlugin_v8 (NCCL 2.19 to 2.22 load it): a thin table over net_adapter.
#include <climits>

#include "net_adapter.h"

namespace {

namespace p = lshmoe::plugin;

ncclResult_t get_properties(int dev, ncclNetProperties_v8_t* props) {
  if (props == nullptr) return ncclInternalError;
  ncclNetProperties_v11_t v11;
  const ncclResult_t r = p::properties(dev, &v11);
  if (r != ncclSuccess) return r;
  *props = ncclNetProperties_v8_t{
      v11.name, v11.pciPath, v11.guid,     v11.ptrSupport, v11.regIsGlobal,   v11.speed,
      v11.port, v11.latency, v11.maxComms, v11.maxRecvs,   v11.netDeviceType, v11.netDeviceVersion};
  return ncclSuccess;
}

ncclResult_t connect(int dev, void* handle, void** send_comm, ncclNetDeviceHandle_v8_t**) {
  return p::connect(dev, handle, send_comm);
}

ncclResult_t accept(void* listen_comm, void** recv_comm, ncclNetDeviceHandle_v8_t**) {
  return p::accept(listen_comm, recv_comm);
}

ncclResult_t isend(void* send_comm, void* data, int size, int tag, void* mhandle, void** request) {
  if (size < 0) return ncclInternalError;
  return p::isend(send_comm, data, size_t(size), tag, mhandle, request);
}

ncclResult_t irecv(void* recv_comm, int n, void** data, int* sizes, int* tags, void**,
                   void** request) {
  if (n != 1 || sizes == nullptr || sizes[0] < 0)
    return p::irecv(recv_comm, n, data, nullptr, tags, request);
  const size_t size = size_t(sizes[0]);
  return p::irecv(recv_comm, n, data, &size, tags, request);
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const ncclNet_v8_t ncclNetPlugin_v8 = {
    .name = "lshmoe",
    .init = p::init,
    .devices = p::devices,
    .getProperties = get_properties,
    .listen = p::listen,
    .connect = connect,
    .accept = accept,
    .regMr = p::reg_mr,
    .regMrDmaBuf = p::reg_mr_dma_buf,
    .deregMr = p::dereg_mr,
    .isend = isend,
    .irecv = irecv,
    .iflush = p::iflush,
    .test = p::test,
    .closeSend = p::close_send,
    .closeRecv = p::close_recv,
    .closeListen = p::close_listen,
    .getDeviceMr = nullptr,
    .irecvConsumed = nullptr,
};
