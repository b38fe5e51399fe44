#include "net_adapter.h"

#include <atomic>
#include <climits>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>

#include "common/config.h"
#include "common/log.h"
#include "common/status.h"
#include "net_compression.h"
#include "transport/ucx/ucx_net.h"

namespace lshmoe::plugin {
namespace {

namespace net = lshmoe::transport::net;

constexpr size_t kMaxMessageBytes = size_t(1) << 30;  // test() reports sizes as int
constexpr int kMaxComms = 65536;

static_assert(net::kListenHandleBytes <= NCCL_NET_HANDLE_MAXSIZE,
              "NCCL carries NCCL_NET_HANDLE_MAXSIZE bytes of listen handle");
static_assert(net::kRequestsPerComm >= NCCL_NET_MAX_REQUESTS,
              "NCCL keeps up to NCCL_NET_MAX_REQUESTS requests in flight per comm");

std::atomic<ncclDebugLogger_t> g_logger{nullptr};

// Set once by init (LSHMOE_NET_COMPRESS=1); NULL: requests are the transport's.
std::unique_ptr<NetCompression> g_compression;

Status init_once() {
  static std::once_flag once;
  static Status status = LSHMOE_SUCCESS;
  static std::string error;
  std::call_once(once, [] {
    status = net::init();
    Config config;
    if (status == LSHMOE_SUCCESS) status = config_from_env(config);
    if (status == LSHMOE_SUCCESS) status = NetCompression::create(config, &g_compression);
    if (status != LSHMOE_SUCCESS) error = last_error();
  });
  return status == LSHMOE_SUCCESS ? status : fail(status, "%s", error.c_str());
}

void to_nccl_logger(LogLevel level, const char* line) {
  if (ncclDebugLogger_t logger = g_logger.load()) {
    const ncclDebugLogLevel l = level == LogLevel::kWarn   ? NCCL_LOG_WARN
                                : level == LogLevel::kInfo ? NCCL_LOG_INFO
                                                           : NCCL_LOG_TRACE;
    logger(l, NCCL_NET, __FILE__, __LINE__, "NET/lshmoe %s", line);
  }
}

// What went wrong between the hosts (a failed connection, a corrupt
// message) is ncclSystemError; what the caller asked wrongly, ncclInternalError.
ncclResult_t to_nccl(Status s) {
  if (s == LSHMOE_SUCCESS) return ncclSuccess;
  LSHMOE_WARN("%s", last_error());
  const bool remote = s == LSHMOE_ERR_NETWORK || s == LSHMOE_ERR_TIMEOUT ||
                      (s >= LSHMOE_ERR_WIRE_TRUNCATED && s <= LSHMOE_ERR_WIRE_BAD_SEQUENCE);
  return remote ? ncclSystemError : ncclInternalError;
}

// No exception crosses into NCCL.
template <typename Fn>
ncclResult_t guarded(Fn&& fn) {
  try {
    return to_nccl(fn());
  } catch (const std::bad_alloc&) {
    return to_nccl(fail(LSHMOE_ERR_OUT_OF_MEMORY, "net: out of memory"));
  } catch (const std::exception& e) {
    return to_nccl(fail(LSHMOE_ERR_INTERNAL, "net: %s", e.what()));
  }
}

Status misuse(const char* what) {
  return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: %s", what);
}

}  // namespace

ncclResult_t init(ncclDebugLogger_t logger) {
  if (logger != nullptr) {
    g_logger.store(logger);
    set_log_sink(&to_nccl_logger);
  }
  return guarded([] { return init_once(); });
}

ncclResult_t devices(int* ndev) {
  return guarded([&] {
    if (ndev == nullptr) return misuse("devices: ndev is NULL");
    LSHMOE_RETURN_IF_ERROR(init_once());
    *ndev = net::device_count();
    return LSHMOE_SUCCESS;
  });
}

ncclResult_t properties(int dev, ncclNetProperties_v11_t* props) {
  return guarded([&] {
    if (props == nullptr) return misuse("getProperties: props is NULL");
    LSHMOE_RETURN_IF_ERROR(init_once());
    if (dev < 0 || dev >= net::device_count()) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: getProperties of device %d of %d", dev,
                  net::device_count());
    }
    const net::DeviceInfo& d = net::device(dev);
    *props = ncclNetProperties_v11_t{};
    props->name = const_cast<char*>(d.name.c_str());
    props->pciPath = d.pci_path.empty() ? nullptr : const_cast<char*>(d.pci_path.c_str());
    props->guid = d.guid;
    // A compressing net decodes on the host: it takes host buffers only.
    props->ptrSupport =
        NCCL_PTR_HOST | (net::supports_cuda_memory() && !g_compression ? NCCL_PTR_CUDA : 0);
    props->regIsGlobal = 0;
    props->forceFlush = 0;
    props->speed = d.speed_mbps;
    props->port = 0;
    props->latency = 0.0f;
    props->maxComms = kMaxComms;
    props->maxRecvs = 1;
    props->netDeviceType = NCCL_NET_DEVICE_HOST;
    props->netDeviceVersion = NCCL_NET_DEVICE_INVALID_VERSION;
    props->vProps.ndevs = 1;
    props->vProps.devs[0] = dev;
    props->maxP2pBytes = kMaxMessageBytes;
    props->maxCollBytes = kMaxMessageBytes;
    props->maxMultiRequestSize = 1;
    return LSHMOE_SUCCESS;
  });
}

ncclResult_t listen(int dev, void* handle, void** listen_comm) {
  return guarded([&] {
    if (listen_comm == nullptr) return misuse("listen: listenComm is NULL");
    return net::listen(dev, handle, reinterpret_cast<net::ListenComm**>(listen_comm));
  });
}

ncclResult_t connect(int dev, void* handle, void** send_comm) {
  return guarded([&] {
    if (send_comm == nullptr) return misuse("connect: sendComm is NULL");
    *send_comm = nullptr;
    return net::connect(dev, handle, reinterpret_cast<net::SendComm**>(send_comm));
  });
}

ncclResult_t accept(void* listen_comm, void** recv_comm) {
  return guarded([&] {
    if (recv_comm == nullptr) return misuse("accept: recvComm is NULL");
    return net::accept(static_cast<net::ListenComm*>(listen_comm),
                       reinterpret_cast<net::RecvComm**>(recv_comm));
  });
}

ncclResult_t reg_mr(void* comm, void* data, size_t size, int type, void** mhandle) {
  return guarded([&] {
    if (comm == nullptr) return misuse("regMr: comm is NULL");
    if (type != NCCL_PTR_HOST && type != NCCL_PTR_CUDA) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: regMr of memory type %d", type);
    }
    return net::register_memory(type == NCCL_PTR_CUDA, mhandle);
  });
}

ncclResult_t reg_mr_dma_buf(void*, void*, size_t, int, uint64_t, int, void**) {
  return guarded(
      [] { return fail(LSHMOE_ERR_UNSUPPORTED, "net: regMrDmaBuf: DMA-BUF is not supported"); });
}

ncclResult_t dereg_mr(void* comm, void* mhandle) {
  return guarded([&] { return net::deregister_memory(mhandle); });
}

ncclResult_t isend(void* send_comm, void* data, size_t size, int tag, void* mhandle,
                   void** request) {
  return guarded([&] {
    if (request == nullptr) return misuse("isend: request is NULL");
    *request = nullptr;
    if (size > kMaxMessageBytes) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: isend of %zu bytes, at most %zu", size,
                  kMaxMessageBytes);
    }
    auto* comm = static_cast<net::SendComm*>(send_comm);
    if (g_compression) {
      return g_compression->isend(comm, data, size, tag, !net::is_device_memory(mhandle), request);
    }
    return net::isend(comm, data, size, tag, false, reinterpret_cast<net::Request**>(request));
  });
}

ncclResult_t irecv(void* recv_comm, int n, void** data, const size_t* sizes, const int* tags,
                   void** request) {
  return guarded([&] {
    if (request == nullptr) return misuse("irecv: request is NULL");
    *request = nullptr;
    if (n != 1 || data == nullptr || sizes == nullptr || tags == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "net: irecv of %d buffers (maxRecvs is 1) or with NULL arrays", n);
    }
    const size_t capacity = sizes[0] < kMaxMessageBytes ? sizes[0] : kMaxMessageBytes;
    auto* comm = static_cast<net::RecvComm*>(recv_comm);
    if (g_compression) return g_compression->irecv(comm, data[0], capacity, tags[0], request);
    return net::irecv(comm, data[0], capacity, tags[0], reinterpret_cast<net::Request**>(request));
  });
}

ncclResult_t iflush(void*, int, void**, int*, void**, void** request) {
  return guarded([&] {
    if (request == nullptr) return misuse("iflush: request is NULL");
    *request = nullptr;  // UCX completes a receive only once its data is in place
    return LSHMOE_SUCCESS;
  });
}

ncclResult_t test(void* request, int* done, int* sizes) {
  return guarded([&] {
    if (done == nullptr) return misuse("test: done is NULL");
    *done = 0;
    bool finished = false;
    size_t size = 0;
    if (g_compression) {
      LSHMOE_RETURN_IF_ERROR(g_compression->test(request, &finished, &size));
    } else {
      bool marked = false;
      LSHMOE_RETURN_IF_ERROR(
          net::test(static_cast<net::Request*>(request), &finished, &size, &marked));
      if (marked) return refuse_marked(size);
    }
    *done = finished ? 1 : 0;
    if (finished && sizes != nullptr) sizes[0] = int(size);
    return LSHMOE_SUCCESS;
  });
}

ncclResult_t close_send(void* send_comm) {
  return guarded([&] { return net::close_send(static_cast<net::SendComm*>(send_comm)); });
}

ncclResult_t close_recv(void* recv_comm) {
  return guarded([&] { return net::close_recv(static_cast<net::RecvComm*>(recv_comm)); });
}

ncclResult_t close_listen(void* listen_comm) {
  return guarded([&] { return net::close_listen(static_cast<net::ListenComm*>(listen_comm)); });
}

}  // namespace lshmoe::plugin
