// One UCP context and worker: endpoints (to a worker address, to a socket
// address, or accepted from a listener), tagged non-blocking sends and
// receives of host buffers, progressed by the caller's thread. The exchange
// engine's rank mesh and the NCCL net plugin both stand on this.
//
// Failures never hang: an endpoint whose peer dies (UCX peer-failure
// handling) fails the requests that involve it, and every wait has a
// deadline after which the pending requests are cancelled. Not thread-safe:
// one thread at a time.
#pragma once

#include <sys/socket.h>
#include <ucp/api/ucp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

namespace lshmoe::transport {

inline constexpr uint64_t kFullTagMask = ~uint64_t(0);

struct UcxWorkerOptions {
  std::string name;         // for messages: "rank 3", "net eth0"
  std::string net_devices;  // UCX_NET_DEVICES for this context; empty: UCX's own setting
  int timeout_ms = 300000;  // endpoint close and cancel waits are bounded by this too
};

class UcxWorker {
 public:
  static Status create(const UcxWorkerOptions& options, std::unique_ptr<UcxWorker>* out);
  ~UcxWorker();  // closes every endpoint (bounded wait), then the worker
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  const std::string& name() const { return options_.name; }
  int timeout_ms() const { return options_.timeout_ms; }
  ucp_context_h context() const { return context_; }

  Status address(std::vector<uint8_t>* out) const;

  // Endpoints have ids 0, 1, ... in creation order; `label` names the peer in
  // messages ("rank 2"). reserve_endpoint() takes an id with no endpoint
  // (a rank's own place in a mesh).
  int reserve_endpoint(const std::string& label);
  Status connect_address(const std::vector<uint8_t>& worker_address, const std::string& label,
                         int* id);
  Status connect_sockaddr(const sockaddr* address, socklen_t length, const std::string& label,
                          int* id);
  Status accept(ucp_conn_request_h request, const std::string& label, int* id);
  // Flushes (force: drops) and closes an endpoint; its id stays taken.
  void close_endpoint(int id, bool force);

  // The status UCX reported for an endpoint (UCS_OK while it is healthy).
  ucs_status_t endpoint_status(int id) const;
  const std::string& endpoint_label(int id) const;

  // A listener on `address` (port 0: any); `on_connect` runs inside
  // progress() for every connection request. The bound address goes to *bound.
  Status listen(const sockaddr* address, socklen_t length,
                std::function<void(ucp_conn_request_h)> on_connect, ucp_listener_h* listener,
                sockaddr_storage* bound);
  void close_listener(ucp_listener_h listener);

  struct Request {
    bool done = false;
    bool receive = false;
    int endpoint = -1;    // the peer; for a receive, the one whose failure fails it
    size_t bytes = 0;     // posted size; for a receive, the capacity
    size_t received = 0;  // a receive's actual size, once done
    uint64_t sender_tag = 0;
    ucs_status_t status = UCS_INPROGRESS;
    void* handle = nullptr;  // UCX's request, while in flight
    // When test() first saw the peer gone with this request pending.
    std::chrono::steady_clock::time_point orphaned{};
  };

  // Posts a send or receive of `bytes` bytes; `request` may move (UCX never
  // sees it) but must be tested, waited or cancelled until done. A receive
  // from a peer that has failed or gone is still posted (its message may be
  // here already); it fails in test() if nothing arrived.
  Status post_send(int endpoint, uint64_t tag, const void* data, size_t bytes, Request* request);
  Status post_receive(int endpoint, uint64_t tag, uint64_t tag_mask, void* data, size_t bytes,
                      Request* request);

  // Makes progress; true when some operation advanced.
  bool progress();

  // Non-blocking: true once the request is done (r.status then says how).
  // A request pending on an endpoint that failed is done with its status.
  bool test(Request& r);

  // Progresses until every request is done. `on_receive(i)` runs as soon as
  // requests[i], a receive, completes with exactly its posted size (the
  // engine decodes there while the rest is in flight).
  // - A bad message (a size that differs, on_receive failing) is reported
  //   after every other request is done, so the peers stay in step.
  // - A transport failure (a request failing, a dead peer with requests
  //   pending, the deadline passing) returns at once, naming the peers, and
  //   cancels whatever is pending.
  Status wait_all(std::vector<Request>& requests, std::chrono::steady_clock::time_point deadline,
                  const std::function<Status(size_t)>& on_receive = {});

  // Abandons the requests not yet done: receives are cancelled; a peer with a
  // send in flight has its endpoint closed (it counts as failed afterwards),
  // so no buffer of the caller is touched once this returns.
  void cancel(std::vector<Request>& requests);
  void cancel(Request& request);

 private:
  struct Endpoint {
    UcxWorker* worker = nullptr;
    ucp_ep_h ep = nullptr;
    ucs_status_t status = UCS_OK;
    std::string label;
  };
  explicit UcxWorker(const UcxWorkerOptions& options) : options_(options) {}
  static void on_endpoint_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  Status create_endpoint(ucp_ep_params_t params, const std::string& label, int* id);
  Status check_endpoint(int id, const char* what) const;
  void wait_closed(std::vector<void*>& closing);
  // Sleeps until the worker has an event (or `limit` passes); false when
  // the worker cannot be armed this way (then the caller yields instead).
  bool sleep_until_event(std::chrono::milliseconds limit);

  UcxWorkerOptions options_;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  int event_fd_ = -1;  // the worker's wakeup descriptor, or -1 without UCP_FEATURE_WAKEUP
  std::vector<std::unique_ptr<Endpoint>> endpoints_;  // stable: UCX holds pointers
  struct Listener {
    ucp_listener_h handle;
    std::function<void(ucp_conn_request_h)> on_connect;
  };
  std::vector<std::unique_ptr<Listener>> listeners_;
};

// Formats a socket address as "host:port" for messages.
std::string sockaddr_string(const sockaddr* address);

}  // namespace lshmoe::transport
