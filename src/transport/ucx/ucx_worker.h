// One UCP worker with an endpoint to every rank of a job: tagged, non-blocking
// sends and receives of host buffers, progressed by the caller's thread. The
// exchange engine and the NCCL net plugin both stand on this.
//
// Failures never hang: an endpoint whose peer dies (UCX peer-failure
// handling) fails the requests that involve that peer, and every wait has a
// deadline after which the pending requests are cancelled.
#pragma once

#include <ucp/api/ucp.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "common/status.h"
#include "transport/bootstrap.h"

namespace lshmoe::transport {

// Tags: the channel (who uses the worker) in the top byte, the sender's rank
// in the next 24 bits and the operation number in the low 32, matched exactly.
inline constexpr int kMaxUcxRanks = 1 << 24;
uint64_t ucx_tag(uint8_t channel, int source_rank, uint32_t operation);

class UcxWorker {
 public:
  // Creates the worker, exchanges worker addresses through the bootstrap and
  // creates an endpoint to every other rank.
  static Status create(const BootstrapConfig& bootstrap, std::unique_ptr<UcxWorker>* out);
  ~UcxWorker();  // closes the endpoints (bounded by the bootstrap timeout)
  UcxWorker(const UcxWorker&) = delete;
  UcxWorker& operator=(const UcxWorker&) = delete;

  int rank() const { return rank_; }
  int world_size() const { return int(endpoints_.size()); }

  struct Request {
    bool done = false;
    bool receive = false;
    int peer = -1;
    size_t bytes = 0;     // posted size; for a receive, the size expected
    size_t received = 0;  // a receive's actual size, once done
    ucs_status_t status = UCS_INPROGRESS;
    void* handle = nullptr;  // UCX's request, while in flight
  };

  // Posts a send or receive of `bytes` bytes with `tag`; `request` must stay
  // where it is until it completes or is cancelled by a wait.
  Status post_send(int peer, uint64_t tag, const void* data, size_t bytes, Request* request);
  Status post_receive(int peer, uint64_t tag, void* data, size_t bytes, Request* request);

  // Makes progress; true when some operation advanced.
  bool progress();

  // Progresses until every request is done. `on_receive(i)` runs as soon as
  // requests[i], a receive, completes with the expected size (the engine
  // decodes there while the rest is in flight).
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

  // The status UCX reported for a peer's endpoint (UCS_OK while it is healthy).
  ucs_status_t peer_status(int peer) const { return peer_status_[size_t(peer)]; }
  int timeout_ms() const { return timeout_ms_; }

 private:
  UcxWorker() = default;
  Status connect(int peer, const std::vector<uint8_t>& address);
  static void on_endpoint_error(void* arg, ucp_ep_h ep, ucs_status_t status);
  Status check_peer(int peer, const char* what) const;

  struct EndpointErrorArg {
    UcxWorker* worker;
    int peer;
  };
  int rank_ = -1;
  int timeout_ms_ = 0;
  ucp_context_h context_ = nullptr;
  ucp_worker_h worker_ = nullptr;
  std::vector<ucp_ep_h> endpoints_;
  std::vector<ucs_status_t> peer_status_;
  std::unique_ptr<EndpointErrorArg[]> error_args_;
};

}  // namespace lshmoe::transport
