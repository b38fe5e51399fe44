#include "transport/ucx/ucx_worker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "common/log.h"

namespace lshmoe::transport {
namespace {

using Clock = std::chrono::steady_clock;
constexpr auto kOrphanGrace = std::chrono::milliseconds(200);
constexpr int kSpinTurnsBeforeYield = 64;
// Idle this long, a wait sleeps on the worker's descriptor, at most kSleepLimit at a time.
constexpr auto kYieldBeforeSleep = std::chrono::microseconds(200);
constexpr auto kSleepLimit = std::chrono::milliseconds(2);

Status ucx_error(const char* what, ucs_status_t status) {
  return fail(LSHMOE_ERR_NETWORK, "ucx: %s failed: %s", what, ucs_status_string(status));
}

// Requests are polled, never called back, so a request abandoned on an error
// path completes into UCX's own memory, not ours.
ucp_request_param_t poll_only_params() {
  ucp_request_param_t param{};
  return param;
}

}  // namespace

std::string sockaddr_string(const sockaddr* address) {
  char host[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (address->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(address);
    inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
    port = ntohs(in->sin_port);
  } else if (address->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(address);
    inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
    port = ntohs(in6->sin6_port);
  }
  return std::string(host) + ":" + std::to_string(port);
}

Status UcxWorker::create(const UcxWorkerOptions& options, std::unique_ptr<UcxWorker>* out) {
  std::unique_ptr<UcxWorker> w(new UcxWorker(options));
  ucp_config_t* ucp_config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &ucp_config);
  if (st != UCS_OK) return ucx_error("reading the UCX_* configuration", st);
  if (!options.net_devices.empty()) {
    st = ucp_config_modify(ucp_config, "NET_DEVICES", options.net_devices.c_str());
    if (st != UCS_OK) {
      ucp_config_release(ucp_config);
      return fail(LSHMOE_ERR_INVALID_CONFIG, "ucx: network devices \"%s\": %s",
                  options.net_devices.c_str(), ucs_status_string(st));
    }
  }
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  // Wakeup lets an idle wait sleep on the worker's descriptor; transports
  // that cannot signal make ucp_init refuse it, and waits then yield.
  params.features = UCP_FEATURE_TAG | UCP_FEATURE_WAKEUP;
  st = ucp_init(&params, ucp_config, &w->context_);
  bool wakeup = st == UCS_OK;
  if (!wakeup) {
    params.features = UCP_FEATURE_TAG;
    st = ucp_init(&params, ucp_config, &w->context_);
  }
  ucp_config_release(ucp_config);
  if (st != UCS_OK) return ucx_error("ucp_init", st);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  st = ucp_worker_create(w->context_, &worker_params, &w->worker_);
  if (st != UCS_OK) return ucx_error("ucp_worker_create", st);
  if (wakeup && ucp_worker_get_efd(w->worker_, &w->event_fd_) != UCS_OK) w->event_fd_ = -1;
  *out = std::move(w);
  return LSHMOE_SUCCESS;
}

UcxWorker::~UcxWorker() {
  if (worker_ != nullptr) {
    std::vector<void*> closing;
    for (auto& e : endpoints_) {
      if (e == nullptr || e->ep == nullptr) continue;
      ucp_request_param_t param = poll_only_params();
      if (e->status != UCS_OK) {
        param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = UCP_EP_CLOSE_FLAG_FORCE;
      }
      void* req = ucp_ep_close_nbx(e->ep, &param);
      e->ep = nullptr;
      if (UCS_PTR_IS_PTR(req)) closing.push_back(req);
    }
    wait_closed(closing);
    for (auto& l : listeners_) ucp_listener_destroy(l->handle);
    ucp_worker_destroy(worker_);
  }
  if (context_ != nullptr) ucp_cleanup(context_);
}

void UcxWorker::wait_closed(std::vector<void*>& closing) {
  // A peer that already left cannot acknowledge a flush: bounded wait.
  const auto deadline =
      Clock::now() + std::chrono::milliseconds(std::min(options_.timeout_ms, 5000));
  for (void* req : closing) {
    while (ucp_request_check_status(req) == UCS_INPROGRESS && Clock::now() < deadline) {
      ucp_worker_progress(worker_);
    }
    ucp_request_free(req);
  }
  closing.clear();
}

Status UcxWorker::address(std::vector<uint8_t>* out) const {
  ucp_address_t* address = nullptr;
  size_t bytes = 0;
  const ucs_status_t st = ucp_worker_get_address(worker_, &address, &bytes);
  if (st != UCS_OK) return ucx_error("ucp_worker_get_address", st);
  const auto* p = reinterpret_cast<const uint8_t*>(address);
  out->assign(p, p + bytes);
  ucp_worker_release_address(worker_, address);
  return LSHMOE_SUCCESS;
}

int UcxWorker::reserve_endpoint(const std::string& label) {
  auto e = std::make_unique<Endpoint>();
  e->worker = this;
  e->label = label;
  endpoints_.push_back(std::move(e));
  return int(endpoints_.size() - 1);
}

Status UcxWorker::create_endpoint(ucp_ep_params_t params, const std::string& label, int* id) {
  const int new_id = reserve_endpoint(label);
  Endpoint* e = endpoints_.back().get();
  params.field_mask |= UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE | UCP_EP_PARAM_FIELD_ERR_HANDLER;
  params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  params.err_handler.cb = &UcxWorker::on_endpoint_error;
  params.err_handler.arg = e;
  ucs_status_t st = ucp_ep_create(worker_, &params, &e->ep);
  if (st == UCS_ERR_UNREACHABLE && !(params.field_mask & UCP_EP_PARAM_FIELD_CONN_REQUEST)) {
    // Transports that cannot report a dead peer (UCX 1.13's shared memory)
    // refuse peer-failure mode; the deadline then bounds every wait.
    params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    st = ucp_ep_create(worker_, &params, &e->ep);
    if (st == UCS_OK) {
      LSHMOE_INFO(
          "ucx: %s reaches %s without peer-failure detection; a dead peer shows as a "
          "timeout",
          name().c_str(), label.c_str());
    }
  }
  if (st != UCS_OK) {
    e->ep = nullptr;
    e->status = st;
    return fail(LSHMOE_ERR_NETWORK, "ucx: %s cannot reach %s: %s (UCX_TLS=%s)", name().c_str(),
                label.c_str(), ucs_status_string(st),
                getenv("UCX_TLS") ? getenv("UCX_TLS") : "all");
  }
  *id = new_id;
  return LSHMOE_SUCCESS;
}

Status UcxWorker::connect_address(const std::vector<uint8_t>& worker_address,
                                  const std::string& label, int* id) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS;
  params.address = reinterpret_cast<const ucp_address_t*>(worker_address.data());
  return create_endpoint(params, label, id);
}

Status UcxWorker::connect_sockaddr(const sockaddr* address, socklen_t length,
                                   const std::string& label, int* id) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR;
  params.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
  params.sockaddr.addr = address;
  params.sockaddr.addrlen = length;
  return create_endpoint(params, label, id);
}

Status UcxWorker::accept(ucp_conn_request_h request, const std::string& label, int* id) {
  ucp_ep_params_t params{};
  params.field_mask = UCP_EP_PARAM_FIELD_CONN_REQUEST;
  params.conn_request = request;
  return create_endpoint(params, label, id);
}

void UcxWorker::close_endpoint(int id, bool force) {
  if (id < 0 || size_t(id) >= endpoints_.size()) return;
  Endpoint& e = *endpoints_[size_t(id)];
  if (e.ep == nullptr) return;
  ucp_request_param_t param = poll_only_params();
  if (force || e.status != UCS_OK) {
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
  }
  void* req = ucp_ep_close_nbx(e.ep, &param);
  e.ep = nullptr;
  if (e.status == UCS_OK) e.status = UCS_ERR_CANCELED;
  std::vector<void*> closing;
  if (UCS_PTR_IS_PTR(req)) closing.push_back(req);
  wait_closed(closing);
}

ucs_status_t UcxWorker::endpoint_status(int id) const {
  if (id < 0 || size_t(id) >= endpoints_.size()) return UCS_ERR_INVALID_PARAM;
  return endpoints_[size_t(id)]->status;
}

const std::string& UcxWorker::endpoint_label(int id) const {
  static const std::string kNone = "no endpoint";
  if (id < 0 || size_t(id) >= endpoints_.size()) return kNone;
  return endpoints_[size_t(id)]->label;
}

void UcxWorker::on_endpoint_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* e = static_cast<Endpoint*>(arg);
  if (e->status == UCS_OK) {
    e->status = status;
    LSHMOE_INFO("ucx: %s lost %s: %s", e->worker->name().c_str(), e->label.c_str(),
                ucs_status_string(status));
  }
}

Status UcxWorker::listen(const sockaddr* address, socklen_t length,
                         std::function<void(ucp_conn_request_h)> on_connect,
                         ucp_listener_h* listener, sockaddr_storage* bound) {
  auto l = std::make_unique<Listener>();
  l->on_connect = std::move(on_connect);
  ucp_listener_params_t params{};
  params.field_mask = UCP_LISTENER_PARAM_FIELD_SOCK_ADDR | UCP_LISTENER_PARAM_FIELD_CONN_HANDLER;
  params.sockaddr.addr = address;
  params.sockaddr.addrlen = length;
  params.conn_handler.cb = [](ucp_conn_request_h request, void* arg) {
    static_cast<Listener*>(arg)->on_connect(request);
  };
  params.conn_handler.arg = l.get();
  ucs_status_t st = ucp_listener_create(worker_, &params, &l->handle);
  if (st != UCS_OK) {
    return fail(LSHMOE_ERR_NETWORK, "ucx: %s cannot listen on %s: %s", name().c_str(),
                sockaddr_string(address).c_str(), ucs_status_string(st));
  }
  ucp_listener_attr_t attr{};
  attr.field_mask = UCP_LISTENER_ATTR_FIELD_SOCKADDR;
  st = ucp_listener_query(l->handle, &attr);
  if (st != UCS_OK) {
    ucp_listener_destroy(l->handle);
    return ucx_error("ucp_listener_query", st);
  }
  *bound = attr.sockaddr;
  *listener = l->handle;
  listeners_.push_back(std::move(l));
  return LSHMOE_SUCCESS;
}

void UcxWorker::close_listener(ucp_listener_h listener) {
  for (auto it = listeners_.begin(); it != listeners_.end(); ++it) {
    if ((*it)->handle != listener) continue;
    ucp_listener_destroy(listener);
    listeners_.erase(it);
    return;
  }
}

Status UcxWorker::check_endpoint(int id, const char* what) const {
  if (id < 0 || size_t(id) >= endpoints_.size() || endpoints_[size_t(id)]->ep == nullptr) {
    if (id >= 0 && size_t(id) < endpoints_.size() && endpoints_[size_t(id)]->status != UCS_OK) {
      return fail(LSHMOE_ERR_NETWORK, "ucx: %s: %s %s: it failed earlier (%s)", name().c_str(),
                  what, endpoint_label(id).c_str(),
                  ucs_status_string(endpoints_[size_t(id)]->status));
    }
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "ucx: %s: %s endpoint %d: there is none",
                name().c_str(), what, id);
  }
  const Endpoint& e = *endpoints_[size_t(id)];
  if (e.status != UCS_OK) {
    return fail(LSHMOE_ERR_NETWORK, "ucx: %s: %s %s: it failed earlier (%s)", name().c_str(), what,
                e.label.c_str(), ucs_status_string(e.status));
  }
  return LSHMOE_SUCCESS;
}

Status UcxWorker::post_send(int endpoint, uint64_t tag, const void* data, size_t bytes,
                            Request* request) {
  LSHMOE_RETURN_IF_ERROR(check_endpoint(endpoint, "send to"));
  *request = Request{};
  request->endpoint = endpoint;
  request->bytes = bytes;
  ucp_request_param_t param = poll_only_params();
  void* req = ucp_tag_send_nbx(endpoints_[size_t(endpoint)]->ep, data, bytes, tag, &param);
  if (UCS_PTR_IS_ERR(req)) return ucx_error("send", UCS_PTR_STATUS(req));
  if (req == nullptr) {
    request->done = true;
    request->status = UCS_OK;
  } else {
    request->handle = req;
  }
  return LSHMOE_SUCCESS;
}

Status UcxWorker::post_receive(int endpoint, uint64_t tag, uint64_t tag_mask, void* data,
                               size_t bytes, Request* request) {
  // A peer that failed, or closed after its last send, may have delivered
  // this message already: the receive is posted, and test() fails it only
  // if it is still pending. An endpoint this side closed takes no more.
  if (endpoint < 0 || size_t(endpoint) >= endpoints_.size() ||
      endpoints_[size_t(endpoint)]->ep == nullptr) {
    return check_endpoint(endpoint, "receive from");
  }
  *request = Request{};
  request->receive = true;
  request->endpoint = endpoint;
  request->bytes = bytes;
  // Always a request, even for a message already here: its size is read
  // from the request.
  ucp_request_param_t param = poll_only_params();
  param.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  void* req = ucp_tag_recv_nbx(worker_, data, bytes, tag, tag_mask, &param);
  if (UCS_PTR_IS_ERR(req)) return ucx_error("receive", UCS_PTR_STATUS(req));
  if (req == nullptr) return fail(LSHMOE_ERR_INTERNAL, "ucx: a receive returned no request");
  request->handle = req;
  return LSHMOE_SUCCESS;
}

bool UcxWorker::progress() {
  return ucp_worker_progress(worker_) != 0;
}

bool UcxWorker::test(Request& r) {
  if (r.done) return true;
  if (r.receive) {
    ucp_tag_recv_info_t info{};
    r.status = ucp_tag_recv_request_test(r.handle, &info);
    r.received = info.length;
    r.sender_tag = info.sender_tag;
  } else {
    r.status = ucp_request_check_status(r.handle);
  }
  if (r.status == UCS_INPROGRESS) {
    const ucs_status_t peer = endpoint_status(r.endpoint);
    if (peer == UCS_OK) return false;
    // The peer is gone. What it sent before leaving may still be on its way
    // through this worker (the disconnect can overtake the data), so the
    // request gets a short grace period of progress before it fails.
    const auto now = Clock::now();
    if (r.orphaned == Clock::time_point{}) r.orphaned = now;
    if (now - r.orphaned < kOrphanGrace) return false;
    if (r.receive) ucp_request_cancel(worker_, r.handle);  // UCX releases it later
    r.status = peer;
  }
  ucp_request_free(r.handle);
  r.handle = nullptr;
  r.done = true;
  return true;
}

void UcxWorker::cancel(Request& r) {
  std::vector<Request> one{r};
  cancel(one);
  r = one[0];
}

void UcxWorker::cancel(std::vector<Request>& requests) {
  // Receives are cancelled. Sends cannot be: the endpoint of a peer with a
  // send in flight is closed by force, which fails the send, so no buffer of
  // the caller is read after the error is returned.
  std::vector<void*> closing;
  for (Request& r : requests) {
    if (r.handle == nullptr || r.done) continue;
    if (r.receive) {
      ucp_request_cancel(worker_, r.handle);
      continue;
    }
    Endpoint& e = *endpoints_[size_t(r.endpoint)];
    if (e.ep == nullptr) continue;
    ucp_request_param_t param = poll_only_params();
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* req = ucp_ep_close_nbx(e.ep, &param);
    if (UCS_PTR_IS_PTR(req)) closing.push_back(req);
    e.ep = nullptr;
    if (e.status == UCS_OK) e.status = UCS_ERR_CANCELED;
  }
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  auto pending = [&] {
    for (Request& r : requests) {
      if (r.handle != nullptr && ucp_request_check_status(r.handle) == UCS_INPROGRESS) return true;
    }
    for (void* req : closing) {
      if (ucp_request_check_status(req) == UCS_INPROGRESS) return true;
    }
    return false;
  };
  while (pending() && Clock::now() < deadline) ucp_worker_progress(worker_);
  for (Request& r : requests) {
    if (r.handle != nullptr) ucp_request_free(r.handle);
    r.handle = nullptr;
    if (!r.done) r.status = UCS_ERR_CANCELED;
    r.done = true;
  }
  for (void* req : closing) ucp_request_free(req);
}

bool UcxWorker::sleep_until_event(std::chrono::milliseconds limit) {
  if (event_fd_ < 0) return false;
  const ucs_status_t st = ucp_worker_arm(worker_);
  if (st == UCS_ERR_BUSY) return true;  // events pending: progress at once
  if (st != UCS_OK) return false;
  pollfd fd{event_fd_, POLLIN, 0};
  poll(&fd, 1, int(limit.count()));
  return true;
}

Status UcxWorker::wait_all(std::vector<Request>& requests, Clock::time_point deadline,
                           const std::function<Status(size_t)>& on_receive) {
  std::vector<bool> delivered(requests.size(), false);
  size_t remaining = requests.size();
  // A bad message (wrong size, failed decode) is reported once the rest is
  // in, so both ends stay in step; a transport failure ends the wait at once.
  Status fatal = LSHMOE_SUCCESS, message = LSHMOE_SUCCESS;
  std::string message_text;
  auto bad_message = [&](Status s) {
    if (message == LSHMOE_SUCCESS) {
      message = s;
      message_text = last_error();
    }
  };
  const char* me = name().c_str();
  // Spin while the worker makes progress; once it has been idle for a few
  // turns, yield the core on each turn, and once idle for longer, sleep on
  // the worker's wakeup descriptor: ranks sharing cores (more ranks than
  // cores, or the kernel's TCP work) then get the whole core to encode and
  // send, where a yielding waiter still took its share of it. The sleep is
  // capped, so a transport that signals late costs at most that much.
  int idle_turns = 0;
  Clock::time_point idle_since{};
  while (fatal == LSHMOE_SUCCESS && remaining > 0) {
    if (progress()) {
      idle_turns = 0;
    } else if (++idle_turns == kSpinTurnsBeforeYield) {
      idle_since = Clock::now();
    } else if (idle_turns > kSpinTurnsBeforeYield) {
      if (Clock::now() - idle_since < kYieldBeforeSleep || !sleep_until_event(kSleepLimit)) {
        sched_yield();
      }
    }
    for (size_t i = 0; i < requests.size() && fatal == LSHMOE_SUCCESS; ++i) {
      Request& r = requests[i];
      if (delivered[i] || !test(r)) continue;
      delivered[i] = true;
      --remaining;
      const char* peer = endpoint_label(r.endpoint).c_str();
      if (r.status == UCS_ERR_MESSAGE_TRUNCATED) {
        // UCX consumed the message: the worker stays in step with the peer.
        bad_message(fail(LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                         "ucx: %s: %s sent more than the %zu bytes expected", me, peer, r.bytes));
      } else if (r.status != UCS_OK) {
        fatal = fail(LSHMOE_ERR_NETWORK, "ucx: %s: %s of %zu bytes %s %s failed: %s", me,
                     r.receive ? "receive" : "send", r.bytes, r.receive ? "from" : "to", peer,
                     ucs_status_string(r.status));
      } else if (r.receive && r.received != r.bytes) {
        bad_message(fail(LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                         "ucx: %s: %s sent %zu bytes where %zu were expected", me, peer, r.received,
                         r.bytes));
      } else if (r.receive && on_receive) {
        const Status s = on_receive(i);
        if (s != LSHMOE_SUCCESS) bad_message(s);
      }
    }
    if (fatal == LSHMOE_SUCCESS && remaining > 0 && Clock::now() > deadline) {
      std::string peers;
      for (size_t i = 0; i < requests.size(); ++i) {
        if (delivered[i]) continue;
        peers += (peers.empty() ? "" : ", ") + std::string(requests[i].receive ? "from " : "to ") +
                 endpoint_label(requests[i].endpoint);
      }
      fatal = fail(LSHMOE_ERR_TIMEOUT, "ucx: %s: timed out after %d ms waiting for messages %s", me,
                   options_.timeout_ms, peers.c_str());
    }
  }
  if (fatal != LSHMOE_SUCCESS) {
    cancel(requests);
    return fatal;
  }
  if (message != LSHMOE_SUCCESS) return fail(message, "%s", message_text.c_str());
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::transport
