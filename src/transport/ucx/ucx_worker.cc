#include "transport/ucx/ucx_worker.h"

#include <cstdlib>
#include <string>

#include "common/log.h"

namespace lshmoe::transport {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kFullTagMask = ~uint64_t(0);

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

uint64_t ucx_tag(uint8_t channel, int source_rank, uint32_t operation) {
  return (uint64_t(channel) << 56) | (uint64_t(uint32_t(source_rank) & 0xffffffu) << 32) |
         operation;
}

Status UcxWorker::create(const BootstrapConfig& bootstrap, std::unique_ptr<UcxWorker>* out) {
  if (bootstrap.world_size < 1 || bootstrap.world_size > kMaxUcxRanks) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "ucx: world size %d is outside [1, %d]",
                bootstrap.world_size, kMaxUcxRanks);
  }
  std::unique_ptr<UcxWorker> w(new UcxWorker());
  w->rank_ = bootstrap.rank;
  w->timeout_ms_ = bootstrap.timeout_ms;

  ucp_config_t* ucp_config = nullptr;
  ucs_status_t st = ucp_config_read(nullptr, nullptr, &ucp_config);
  if (st != UCS_OK) return ucx_error("reading the UCX_* configuration", st);
  ucp_params_t params{};
  params.field_mask = UCP_PARAM_FIELD_FEATURES;
  params.features = UCP_FEATURE_TAG;
  st = ucp_init(&params, ucp_config, &w->context_);
  ucp_config_release(ucp_config);
  if (st != UCS_OK) return ucx_error("ucp_init", st);

  ucp_worker_params_t worker_params{};
  worker_params.field_mask = UCP_WORKER_PARAM_FIELD_THREAD_MODE;
  worker_params.thread_mode = UCS_THREAD_MODE_SINGLE;
  st = ucp_worker_create(w->context_, &worker_params, &w->worker_);
  if (st != UCS_OK) return ucx_error("ucp_worker_create", st);

  ucp_address_t* address = nullptr;
  size_t address_bytes = 0;
  st = ucp_worker_get_address(w->worker_, &address, &address_bytes);
  if (st != UCS_OK) return ucx_error("ucp_worker_get_address", st);
  std::vector<std::vector<uint8_t>> addresses;
  const Status gathered = bootstrap_allgather(bootstrap, address, address_bytes, &addresses);
  ucp_worker_release_address(w->worker_, address);
  LSHMOE_RETURN_IF_ERROR(gathered);

  const size_t n = size_t(bootstrap.world_size);
  w->endpoints_.assign(n, nullptr);
  w->peer_status_.assign(n, UCS_OK);
  w->error_args_.reset(new EndpointErrorArg[n]);
  for (size_t p = 0; p < n; ++p) {
    if (int(p) == w->rank_) continue;  // messages to self never reach UCX
    w->error_args_[p] = {w.get(), int(p)};
    LSHMOE_RETURN_IF_ERROR(w->connect(int(p), addresses[p]));
  }
  LSHMOE_INFO("ucx: rank %d of %zu ready, worker address %zu bytes", w->rank_, n, address_bytes);
  *out = std::move(w);
  return LSHMOE_SUCCESS;
}

Status UcxWorker::connect(int peer, const std::vector<uint8_t>& address) {
  ucp_ep_params_t ep_params{};
  ep_params.field_mask = UCP_EP_PARAM_FIELD_REMOTE_ADDRESS | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE |
                         UCP_EP_PARAM_FIELD_ERR_HANDLER;
  ep_params.address = reinterpret_cast<const ucp_address_t*>(address.data());
  ep_params.err_mode = UCP_ERR_HANDLING_MODE_PEER;
  ep_params.err_handler.cb = &UcxWorker::on_endpoint_error;
  ep_params.err_handler.arg = &error_args_[size_t(peer)];
  ucp_ep_h* ep = &endpoints_[size_t(peer)];
  ucs_status_t st = ucp_ep_create(worker_, &ep_params, ep);
  if (st == UCS_ERR_UNREACHABLE) {
    // Transports that cannot report a dead peer (shared memory in some UCX
    // builds) refuse peer-failure mode; the deadline then bounds every wait.
    ep_params.err_mode = UCP_ERR_HANDLING_MODE_NONE;
    st = ucp_ep_create(worker_, &ep_params, ep);
    if (st == UCS_OK) {
      LSHMOE_INFO(
          "ucx: rank %d reaches rank %d without peer-failure detection; a dead peer "
          "shows as a timeout",
          rank_, peer);
    }
  }
  if (st != UCS_OK) {
    *ep = nullptr;
    return fail(LSHMOE_ERR_NETWORK, "ucx: rank %d cannot reach rank %d: %s (UCX_TLS=%s)", rank_,
                peer, ucs_status_string(st), getenv("UCX_TLS") ? getenv("UCX_TLS") : "all");
  }
  return LSHMOE_SUCCESS;
}

void UcxWorker::on_endpoint_error(void* arg, ucp_ep_h, ucs_status_t status) {
  auto* a = static_cast<EndpointErrorArg*>(arg);
  if (a->worker->peer_status_[size_t(a->peer)] == UCS_OK) {
    a->worker->peer_status_[size_t(a->peer)] = status;
    LSHMOE_INFO("ucx: rank %d lost rank %d: %s", a->worker->rank_, a->peer,
                ucs_status_string(status));
  }
}

UcxWorker::~UcxWorker() {
  if (worker_ != nullptr) {
    std::vector<void*> closing;
    for (size_t p = 0; p < endpoints_.size(); ++p) {
      if (endpoints_[p] == nullptr) continue;
      ucp_request_param_t param = poll_only_params();
      if (peer_status_[p] != UCS_OK) {
        param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
        param.flags = UCP_EP_CLOSE_FLAG_FORCE;
      }
      void* req = ucp_ep_close_nbx(endpoints_[p], &param);
      if (UCS_PTR_IS_PTR(req)) closing.push_back(req);
    }
    // A peer that already left cannot acknowledge a flush: bounded wait.
    const auto deadline = Clock::now() + std::chrono::milliseconds(std::min(timeout_ms_, 5000));
    for (void* req : closing) {
      while (ucp_request_check_status(req) == UCS_INPROGRESS && Clock::now() < deadline) {
        ucp_worker_progress(worker_);
      }
      ucp_request_free(req);
    }
    ucp_worker_destroy(worker_);
  }
  if (context_ != nullptr) ucp_cleanup(context_);
}

Status UcxWorker::check_peer(int peer, const char* what) const {
  if (peer < 0 || peer >= world_size() || peer == rank_) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "ucx: rank %d: %s rank %d of %d (never itself)", rank_,
                what, peer, world_size());
  }
  if (peer_status_[size_t(peer)] != UCS_OK) {
    return fail(LSHMOE_ERR_NETWORK, "ucx: rank %d: %s rank %d: the peer failed earlier (%s)", rank_,
                what, peer, ucs_status_string(peer_status_[size_t(peer)]));
  }
  return LSHMOE_SUCCESS;
}

Status UcxWorker::post_send(int peer, uint64_t tag, const void* data, size_t bytes,
                            Request* request) {
  LSHMOE_RETURN_IF_ERROR(check_peer(peer, "send to"));
  *request = Request{};
  request->peer = peer;
  request->bytes = bytes;
  ucp_request_param_t param = poll_only_params();
  void* req = ucp_tag_send_nbx(endpoints_[size_t(peer)], data, bytes, tag, &param);
  if (UCS_PTR_IS_ERR(req)) return ucx_error("send", UCS_PTR_STATUS(req));
  if (req == nullptr) {
    request->done = true;
    request->status = UCS_OK;
  } else {
    request->handle = req;
  }
  return LSHMOE_SUCCESS;
}

Status UcxWorker::post_receive(int peer, uint64_t tag, void* data, size_t bytes, Request* request) {
  LSHMOE_RETURN_IF_ERROR(check_peer(peer, "receive from"));
  *request = Request{};
  request->receive = true;
  request->peer = peer;
  request->bytes = bytes;
  // Always a request, even for a message already here: its size is read
  // from the request.
  ucp_request_param_t param = poll_only_params();
  param.op_attr_mask = UCP_OP_ATTR_FLAG_NO_IMM_CMPL;
  void* req = ucp_tag_recv_nbx(worker_, data, bytes, tag, kFullTagMask, &param);
  if (UCS_PTR_IS_ERR(req)) return ucx_error("receive", UCS_PTR_STATUS(req));
  if (req == nullptr) return fail(LSHMOE_ERR_INTERNAL, "ucx: a receive returned no request");
  request->handle = req;
  return LSHMOE_SUCCESS;
}

bool UcxWorker::progress() {
  return ucp_worker_progress(worker_) != 0;
}

void UcxWorker::cancel(std::vector<Request>& requests) {
  // Receives are cancelled. Sends cannot be: the endpoint of a peer with a
  // send in flight is closed by force, which fails the send, so no buffer of
  // the caller is read after the error is returned.
  std::vector<bool> force_close(endpoints_.size(), false);
  for (Request& r : requests) {
    if (r.handle == nullptr || r.done) continue;
    if (r.receive) {
      ucp_request_cancel(worker_, r.handle);
    } else {
      force_close[size_t(r.peer)] = true;
    }
  }
  std::vector<void*> closing;
  for (size_t p = 0; p < endpoints_.size(); ++p) {
    if (!force_close[p]) continue;
    ucp_request_param_t param = poll_only_params();
    param.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    param.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* req = ucp_ep_close_nbx(endpoints_[p], &param);
    if (UCS_PTR_IS_PTR(req)) closing.push_back(req);
    endpoints_[p] = nullptr;
    if (peer_status_[p] == UCS_OK) peer_status_[p] = UCS_ERR_CANCELED;
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
    r.done = true;
  }
  for (void* req : closing) ucp_request_free(req);
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
  while (fatal == LSHMOE_SUCCESS && remaining > 0) {
    progress();
    for (size_t i = 0; i < requests.size() && fatal == LSHMOE_SUCCESS; ++i) {
      Request& r = requests[i];
      if (delivered[i]) continue;
      if (!r.done) {
        if (r.receive) {
          ucp_tag_recv_info_t info{};
          r.status = ucp_tag_recv_request_test(r.handle, &info);
          r.received = info.length;
        } else {
          r.status = ucp_request_check_status(r.handle);
        }
        if (r.status == UCS_INPROGRESS) {
          if (peer_status_[size_t(r.peer)] != UCS_OK) {
            fatal = fail(LSHMOE_ERR_NETWORK, "ucx: rank %d: rank %d failed (%s) with a %s pending",
                         rank_, r.peer, ucs_status_string(peer_status_[size_t(r.peer)]),
                         r.receive ? "receive" : "send");
          }
          continue;
        }
        ucp_request_free(r.handle);
        r.handle = nullptr;
        r.done = true;
      }
      delivered[i] = true;
      --remaining;
      if (r.status == UCS_ERR_MESSAGE_TRUNCATED) {
        // UCX consumed the message: the worker stays in step with the peer.
        bad_message(fail(LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                         "ucx: rank %d: rank %d sent more than the %zu bytes expected", rank_,
                         r.peer, r.bytes));
      } else if (r.status != UCS_OK) {
        fatal = fail(LSHMOE_ERR_NETWORK, "ucx: rank %d: %s of %zu bytes %s rank %d failed: %s",
                     rank_, r.receive ? "receive" : "send", r.bytes, r.receive ? "from" : "to",
                     r.peer, ucs_status_string(r.status));
      } else if (r.receive && r.received != r.bytes) {
        bad_message(fail(LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                         "ucx: rank %d: rank %d sent %zu bytes where %zu were expected", rank_,
                         r.peer, r.received, r.bytes));
      } else if (r.receive && on_receive) {
        const Status s = on_receive(i);
        if (s != LSHMOE_SUCCESS) bad_message(s);
      }
    }
    if (fatal == LSHMOE_SUCCESS && remaining > 0 && Clock::now() > deadline) {
      std::string peers;
      for (size_t i = 0; i < requests.size(); ++i) {
        if (delivered[i]) continue;
        peers += (peers.empty() ? "" : ", ") +
                 std::string(requests[i].receive ? "from rank " : "to rank ") +
                 std::to_string(requests[i].peer);
      }
      fatal =
          fail(LSHMOE_ERR_TIMEOUT, "ucx: rank %d: timed out after %d ms waiting for messages %s",
               rank_, timeout_ms_, peers.c_str());
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
