#include "transport/ucx/ucx_net.h"

#include <netinet/in.h>

#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <vector>

#include "common/config.h"
#include "common/log.h"
#include "transport/net_devices.h"
#include "transport/ucx/ucx_tags.h"
#include "transport/ucx/ucx_worker.h"

namespace lshmoe::transport::net {

// Comms of one device share its worker, under its lock.
struct Device {
  DeviceInfo info;
  std::mutex mu;
  std::unique_ptr<UcxWorker> worker;  // created on first use
  uint32_t next_comm_id = 1;
};

struct Comm;
struct Request {
  Comm* comm = nullptr;
  bool used = false;
  UcxWorker::Request ucx;
  size_t size = 0;  // a send's size; a receive's capacity
};

struct Comm {
  Device* device = nullptr;
  int endpoint = -1;
  uint32_t comm_id = 0;
  Request requests[kRequestsPerComm];
};
struct SendComm : Comm {
  UcxWorker::Request hello{};
  uint64_t hello_word = 0;
};
struct RecvComm : Comm {};

struct ListenComm {
  Device* device = nullptr;
  ucp_listener_h listener = nullptr;
  uint32_t comm_id = 0;
  std::deque<ucp_conn_request_h> pending;  // filled by the listener, under the device lock
  // The accepted comm, until its peer's hello arrives.
  std::unique_ptr<RecvComm> accepting;
  UcxWorker::Request hello{};
  uint64_t hello_word = 0;
};

namespace {

constexpr uint32_t kHandleMagic = 0x4c534d4eu;  // "LSMN"
// Receives match marked and unmarked sends: the sender's tag says which arrived.
static_assert((uint8_t(UcxChannel::kNet) ^ uint8_t(UcxChannel::kNetMarked)) == 1,
              "the two net channels differ in their lowest bit");
constexpr uint64_t kAnyMarkMask = ~(uint64_t(1) << 56);
// A connection is ready once the connector's hello (this tag, never one of
// NCCL's: NCCL tags are ranks) has gone through: both ends are wired up.
constexpr int kHelloTag = -1;

// What listen() writes into NCCL's handle for the peer's connect().
struct Handle {
  uint32_t magic;
  uint32_t comm_id;
  union {
    sockaddr sa;
    sockaddr_in in;
    sockaddr_in6 in6;
  } address;
  // The connector's side: NCCL calls connect() again with the same handle
  // until it returns a comm; the comm being connected waits here.
  SendComm* connecting;
};
static_assert(sizeof(Handle) <= kListenHandleBytes, "the listen handle outgrew its size");

struct Net {
  Status status = LSHMOE_SUCCESS;
  std::string error;
  Config config;
  bool cuda = false;
  std::vector<std::unique_ptr<Device>> devices;
};

Net& the_net() {
  static Net net;
  return net;
}

uint64_t net_tag(uint32_t comm_id, int tag, bool marked = false) {
  return ucx_tag(marked ? UcxChannel::kNetMarked : UcxChannel::kNet, comm_id, uint32_t(tag));
}

bool probe_cuda_memory() {
  ucp_config_t* config = nullptr;
  if (ucp_config_read(nullptr, nullptr, &config) != UCS_OK) return false;
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG;
  ucp_context_h context = nullptr;
  const ucs_status_t st = ucp_init(&params, config, &context);
  ucp_config_release(config);
  if (st != UCS_OK) return false;
  ucp_context_attr_t attr{};
  attr.field_mask = UCP_ATTR_FIELD_MEMORY_TYPES;
  const bool cuda = ucp_context_query(context, &attr) == UCS_OK &&
                    (attr.memory_types & UCS_BIT(UCS_MEMORY_TYPE_CUDA));
  ucp_cleanup(context);
  return cuda;
}

Status do_init(Net& net) {
  LSHMOE_RETURN_IF_ERROR(config_from_env(net.config));
  const char* ucx_devices = getenv("UCX_NET_DEVICES");
  std::vector<DeviceInfo> found;
  LSHMOE_RETURN_IF_ERROR(
      find_net_devices(net.config.net_if, ucx_devices ? ucx_devices : "", &found));
  for (DeviceInfo& info : found) {
    auto d = std::make_unique<Device>();
    d->info = std::move(info);
    net.devices.push_back(std::move(d));
  }
  net.cuda = probe_cuda_memory();
  LSHMOE_INFO("net: %zu device(s), first %s; CUDA memory %s", net.devices.size(),
              net.devices[0]->info.name.c_str(), net.cuda ? "supported" : "not supported");
  return LSHMOE_SUCCESS;
}

Status device_of(int dev, Device** out) {
  Net& net = the_net();
  if (net.status != LSHMOE_SUCCESS || dev < 0 || size_t(dev) >= net.devices.size()) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: device %d of %zu (initialised: %s)", dev,
                net.devices.size(), net.status == LSHMOE_SUCCESS ? "yes" : "no");
  }
  *out = net.devices[size_t(dev)].get();
  return LSHMOE_SUCCESS;
}

// Under d.mu.
Status ensure_worker(Device& d) {
  if (d.worker) return LSHMOE_SUCCESS;
  UcxWorkerOptions options;
  options.name = "net " + d.info.name;
  options.net_devices = d.info.name == "lo" ? "" : d.info.name;
  options.timeout_ms = int(the_net().config.timeout_ms);
  return UcxWorker::create(options, &d.worker);
}

Request* free_slot(Comm* comm) {
  for (Request& r : comm->requests) {
    if (!r.used) return &r;
  }
  return nullptr;
}

// Under the device lock.
Status post(Comm* comm, bool receive, void* data, size_t size, int tag, bool marked,
            Request** out) {
  *out = nullptr;
  Request* slot = free_slot(comm);
  if (slot == nullptr) return LSHMOE_SUCCESS;  // all in flight: NCCL tries again
  UcxWorker& w = *comm->device->worker;
  slot->size = size;
  const Status s = receive ? w.post_receive(comm->endpoint, net_tag(comm->comm_id, tag),
                                            kAnyMarkMask, data, size, &slot->ucx)
                           : w.post_send(comm->endpoint, net_tag(comm->comm_id, tag, marked), data,
                                         size, &slot->ucx);
  if (s != LSHMOE_SUCCESS) return s;
  slot->comm = comm;
  slot->used = true;
  *out = slot;
  return LSHMOE_SUCCESS;
}

template <typename C>
Status close_comm(C* comm) {
  if (comm == nullptr) return LSHMOE_SUCCESS;
  {
    std::lock_guard<std::mutex> lock(comm->device->mu);
    std::vector<UcxWorker::Request> pending;
    for (Request& r : comm->requests) {
      if (r.used && !r.ucx.done) pending.push_back(r.ucx);
    }
    UcxWorker& w = *comm->device->worker;
    if (!pending.empty()) w.cancel(pending);
    w.close_endpoint(comm->endpoint, !pending.empty());
  }
  delete comm;
  return LSHMOE_SUCCESS;
}

}  // namespace

Status init() {
  static std::once_flag once;
  Net& net = the_net();
  std::call_once(once, [&net] {
    net.status = do_init(net);
    if (net.status != LSHMOE_SUCCESS) net.error = last_error();
  });
  if (net.status != LSHMOE_SUCCESS) return fail(net.status, "%s", net.error.c_str());
  return LSHMOE_SUCCESS;
}

int device_count() {
  return int(the_net().devices.size());
}

const DeviceInfo& device(int dev) {
  return the_net().devices[size_t(dev)]->info;
}

bool supports_cuda_memory() {
  return the_net().cuda;
}

Status listen(int dev, void* handle, ListenComm** out) {
  Device* d = nullptr;
  LSHMOE_RETURN_IF_ERROR(device_of(dev, &d));
  if (handle == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: listen needs a handle and an output");
  }
  std::lock_guard<std::mutex> lock(d->mu);
  LSHMOE_RETURN_IF_ERROR(ensure_worker(*d));
  auto comm = std::make_unique<ListenComm>();
  comm->device = d;
  comm->comm_id = d->next_comm_id++ & 0xffffffu;
  sockaddr_storage address = d->info.address;
  if (address.ss_family == AF_INET) {
    reinterpret_cast<sockaddr_in*>(&address)->sin_port = 0;
  } else {
    reinterpret_cast<sockaddr_in6*>(&address)->sin6_port = 0;
  }
  ListenComm* raw = comm.get();
  sockaddr_storage bound{};
  LSHMOE_RETURN_IF_ERROR(d->worker->listen(
      reinterpret_cast<sockaddr*>(&address), d->info.address_length,
      [raw](ucp_conn_request_h request) { raw->pending.push_back(request); }, &comm->listener,
      &bound));
  Handle h{};
  h.magic = kHandleMagic;
  h.comm_id = comm->comm_id;
  memcpy(&h.address, &bound, d->info.address_length);
  memset(handle, 0, kListenHandleBytes);
  memcpy(handle, &h, sizeof(h));
  LSHMOE_INFO("net: listening on %s (%s), comm %u",
              sockaddr_string(reinterpret_cast<sockaddr*>(&bound)).c_str(), d->info.name.c_str(),
              comm->comm_id);
  *out = comm.release();
  return LSHMOE_SUCCESS;
}

Status connect(int dev, void* handle, SendComm** out) {
  Device* d = nullptr;
  LSHMOE_RETURN_IF_ERROR(device_of(dev, &d));
  if (handle == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: connect needs a handle and an output");
  }
  *out = nullptr;
  Handle h;
  memcpy(&h, handle, sizeof(h));
  const int family = h.address.sa.sa_family;
  if (h.magic != kHandleMagic || (family != AF_INET && family != AF_INET6)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "net: connect: the handle was not made by this plugin's listen (magic %08x)",
                h.magic);
  }
  std::lock_guard<std::mutex> lock(d->mu);
  LSHMOE_RETURN_IF_ERROR(ensure_worker(*d));
  UcxWorker& w = *d->worker;
  if (h.connecting == nullptr) {
    const socklen_t length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    auto comm = std::make_unique<SendComm>();
    comm->device = d;
    comm->comm_id = h.comm_id;
    const std::string peer = sockaddr_string(&h.address.sa);
    LSHMOE_RETURN_IF_ERROR(w.connect_sockaddr(&h.address.sa, length, peer, &comm->endpoint));
    LSHMOE_RETURN_IF_ERROR(w.post_send(comm->endpoint, net_tag(comm->comm_id, kHelloTag),
                                       &comm->hello_word, sizeof(comm->hello_word), &comm->hello));
    LSHMOE_INFO("net: comm %u connecting to %s", comm->comm_id, peer.c_str());
    h.connecting = comm.release();
    memcpy(handle, &h, sizeof(h));
  }
  SendComm* comm = h.connecting;
  w.progress();
  if (!w.test(comm->hello)) return LSHMOE_SUCCESS;
  h.connecting = nullptr;
  memcpy(handle, &h, sizeof(h));
  if (comm->hello.status != UCS_OK) {
    const Status s =
        fail(LSHMOE_ERR_NETWORK, "net: comm %u: connecting to %s failed: %s", comm->comm_id,
             w.endpoint_label(comm->endpoint).c_str(), ucs_status_string(comm->hello.status));
    w.close_endpoint(comm->endpoint, true);
    delete comm;
    return s;
  }
  *out = comm;
  return LSHMOE_SUCCESS;
}

Status accept(ListenComm* listen, RecvComm** out) {
  if (listen == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: accept needs a listen comm and an output");
  }
  *out = nullptr;
  Device* d = listen->device;
  std::lock_guard<std::mutex> lock(d->mu);
  UcxWorker& w = *d->worker;
  w.progress();
  if (!listen->accepting) {
    if (listen->pending.empty()) return LSHMOE_SUCCESS;
    ucp_conn_request_h request = listen->pending.front();
    listen->pending.pop_front();
    ucp_conn_request_attr_t attr{};
    attr.field_mask = UCP_CONN_REQUEST_ATTR_FIELD_CLIENT_ADDR;
    std::string peer = "a peer of comm " + std::to_string(listen->comm_id);
    if (ucp_conn_request_query(request, &attr) == UCS_OK) {
      peer = sockaddr_string(reinterpret_cast<sockaddr*>(&attr.client_address));
    }
    auto comm = std::make_unique<RecvComm>();
    comm->device = d;
    comm->comm_id = listen->comm_id;
    LSHMOE_RETURN_IF_ERROR(w.accept(request, peer, &comm->endpoint));
    LSHMOE_RETURN_IF_ERROR(w.post_receive(comm->endpoint, net_tag(comm->comm_id, kHelloTag),
                                          kFullTagMask, &listen->hello_word,
                                          sizeof(listen->hello_word), &listen->hello));
    LSHMOE_INFO("net: comm %u accepting %s", comm->comm_id, peer.c_str());
    listen->accepting = std::move(comm);
  }
  if (!w.test(listen->hello)) return LSHMOE_SUCCESS;
  std::unique_ptr<RecvComm> comm = std::move(listen->accepting);
  if (listen->hello.status != UCS_OK) {
    const Status s =
        fail(LSHMOE_ERR_NETWORK, "net: comm %u: accepting %s failed: %s", comm->comm_id,
             w.endpoint_label(comm->endpoint).c_str(), ucs_status_string(listen->hello.status));
    w.close_endpoint(comm->endpoint, true);
    return s;
  }
  *out = comm.release();
  return LSHMOE_SUCCESS;
}

Status isend(SendComm* comm, const void* data, size_t size, int tag, bool marked, Request** out) {
  if (comm == nullptr || out == nullptr || (data == nullptr && size > 0)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: isend needs a comm, data and an output");
  }
  std::lock_guard<std::mutex> lock(comm->device->mu);
  return post(comm, false, const_cast<void*>(data), size, tag, marked, out);
}

bool can_send(SendComm* comm) {
  if (comm == nullptr) return false;
  std::lock_guard<std::mutex> lock(comm->device->mu);
  return free_slot(comm) != nullptr;
}

Status irecv(RecvComm* comm, void* data, size_t capacity, int tag, Request** out) {
  if (comm == nullptr || out == nullptr || (data == nullptr && capacity > 0)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: irecv needs a comm, a buffer and an output");
  }
  std::lock_guard<std::mutex> lock(comm->device->mu);
  return post(comm, true, data, capacity, tag, false, out);
}

Status test(Request* request, bool* done, size_t* size, bool* marked) {
  if (request == nullptr || !request->used || done == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: test of a request that is not in flight");
  }
  Comm* comm = request->comm;
  std::lock_guard<std::mutex> lock(comm->device->mu);
  UcxWorker& w = *comm->device->worker;
  w.progress();
  *done = false;
  UcxWorker::Request& r = request->ucx;
  if (!w.test(r)) return LSHMOE_SUCCESS;
  request->used = false;  // released, whatever the outcome
  if (r.status != UCS_OK) {
    return fail(LSHMOE_ERR_NETWORK, "net: %s of %zu bytes %s %s (comm %u) failed: %s",
                r.receive ? "receive" : "send", r.bytes, r.receive ? "from" : "to",
                w.endpoint_label(r.endpoint).c_str(), comm->comm_id, ucs_status_string(r.status));
  }
  *done = true;
  if (size != nullptr) *size = r.receive ? r.received : request->size;
  if (marked != nullptr) {
    *marked = r.receive && ucx_tag_channel(r.sender_tag) == UcxChannel::kNetMarked;
  }
  return LSHMOE_SUCCESS;
}

Status close_send(SendComm* comm) {
  return close_comm(comm);
}

Status close_recv(RecvComm* comm) {
  return close_comm(comm);
}

Status close_listen(ListenComm* comm) {
  if (comm == nullptr) return LSHMOE_SUCCESS;
  {
    std::lock_guard<std::mutex> lock(comm->device->mu);
    for (ucp_conn_request_h r : comm->pending) ucp_listener_reject(comm->listener, r);
    if (comm->accepting) {
      comm->device->worker->cancel(comm->hello);
      comm->device->worker->close_endpoint(comm->accepting->endpoint, true);
    }
    comm->device->worker->close_listener(comm->listener);
  }
  delete comm;
  return LSHMOE_SUCCESS;
}

struct MemoryHandle {
  bool cuda;
};

Status register_memory(bool cuda, void** mhandle) {
  if (mhandle == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: regMr needs an output");
  if (cuda && !supports_cuda_memory()) {
    return fail(LSHMOE_ERR_UNSUPPORTED,
                "net: CUDA memory registered, but the UCX in use has no CUDA support");
  }
  *mhandle = new MemoryHandle{cuda};
  return LSHMOE_SUCCESS;
}

bool is_device_memory(const void* mhandle) {
  return mhandle != nullptr && static_cast<const MemoryHandle*>(mhandle)->cuda;
}

Status deregister_memory(void* mhandle) {
  delete static_cast<MemoryHandle*>(mhandle);
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::transport::net
