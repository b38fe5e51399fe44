// Bootstrap: how the ranks of a job find each other before any transport
// exists. Every rank contributes one blob (a UCX worker address, an
// ncclUniqueId) and receives every rank's blob, in rank order, over TCP:
// rank 0 listens on MASTER_PORT, the others connect to MASTER_ADDR.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace lshmoe::transport {

struct BootstrapConfig {
  std::string master_addr;  // host name or address of rank 0
  int master_port = 0;
  int rank = -1;
  int world_size = 0;
  int timeout_ms = 60000;  // for the whole exchange
};

// torchrun's MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE; RANK and
// WORLD_SIZE may come from mpirun's OMPI_COMM_WORLD_RANK and
// OMPI_COMM_WORLD_SIZE instead. An absent or invalid variable is an error
// that names it.
Status bootstrap_config_from_env(BootstrapConfig* config);

// Blobs of at most this many bytes.
inline constexpr size_t kMaxBootstrapBlob = size_t(1) << 20;

// Every rank calls this once with its blob; on success blobs[r] is rank r's.
// Fails with LSHMOE_ERR_TIMEOUT naming the ranks that never arrived (rank 0)
// or the address it could not reach (the others), and with
// LSHMOE_ERR_NETWORK when a peer breaks the exchange.
Status bootstrap_allgather(const BootstrapConfig& config, const void* blob, size_t size,
                           std::vector<std::vector<uint8_t>>* blobs);

}  // namespace lshmoe::transport
