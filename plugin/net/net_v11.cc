// ncclNetPlugin_v11 (NCCL 2.28): a thin table over net_adapter.
#include <new>

#include "net_adapter.h"

namespace {

namespace p = lshmoe::plugin;

// What a communicator's init hands back to listen, connect and finalize.
struct Context {
  uint64_t comm_id;
  int traffic_class;
};

ncclResult_t init(void** ctx, uint64_t comm_id, ncclNetCommConfig_v11_t* config,
                  ncclDebugLogger_t logger, ncclProfilerCallback_t) {
  const ncclResult_t r = p::init(logger);
  if (r != ncclSuccess) return r;
  if (ctx != nullptr) {
    *ctx = new (std::nothrow)
        Context{comm_id, config != nullptr ? config->trafficClass : NCCL_NET_TRAFFIC_CLASS_UNDEF};
    if (*ctx == nullptr) return ncclInternalError;
  }
  return ncclSuccess;
}

ncclResult_t finalize(void* ctx) {
  delete static_cast<Context*>(ctx);  // NULL when init never set one
  return ncclSuccess;
}

ncclResult_t listen(void*, int dev, void* handle, void** listen_comm) {
  return p::listen(dev, handle, listen_comm);
}

ncclResult_t connect(void*, int dev, void* handle, void** send_comm, ncclNetDeviceHandle_v11_t**) {
  return p::connect(dev, handle, send_comm);
}

ncclResult_t accept(void* listen_comm, void** recv_comm, ncclNetDeviceHandle_v11_t**) {
  return p::accept(listen_comm, recv_comm);
}

ncclResult_t isend(void* send_comm, void* data, size_t size, int tag, void* mhandle, void*,
                   void** request) {
  return p::isend(send_comm, data, size, tag, mhandle, request);
}

ncclResult_t irecv(void* recv_comm, int n, void** data, size_t* sizes, int* tags, void**, void**,
                   void** request) {
  return p::irecv(recv_comm, n, data, sizes, tags, request);
}

ncclResult_t set_net_attr(void*, ncclNetAttr_v11_t*) {
  return ncclSuccess;  // one flow per comm whatever the hints
}

}  // namespace

extern "C" __attribute__((visibility("default"))) const ncclNet_v11_t ncclNetPlugin_v11 = {
    .name = "lshmoe",
    .init = init,
    .devices = p::devices,
    .getProperties = p::properties,
    .listen = listen,
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
    .makeVDevice = nullptr,
    .finalize = finalize,
    .setNetAttr = set_net_attr,
};
