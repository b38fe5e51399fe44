// The ranks of a job joined by UCX: a worker per rank, worker addresses
// exchanged through the bootstrap, an endpoint to every other rank. Endpoint
// ids are ranks (a rank's own id holds no endpoint: messages to self are
// copied by the caller).
#pragma once

#include <memory>

#include "transport/bootstrap.h"
#include "transport/ucx/ucx_tags.h"
#include "transport/ucx/ucx_worker.h"

namespace lshmoe::transport {

// Ranks fit the 24-bit field of a tag (ucx_tags.h).
inline constexpr int kMaxUcxRanks = 1 << kUcxTagHighBits;

class UcxMesh {
 public:
  static Status create(const BootstrapConfig& bootstrap, std::unique_ptr<UcxMesh>* out);

  int rank() const { return rank_; }
  int world_size() const { return world_size_; }
  UcxWorker& worker() { return *worker_; }

 private:
  int rank_ = -1;
  int world_size_ = 0;
  std::unique_ptr<UcxWorker> worker_;
};

}  // namespace lshmoe::transport
