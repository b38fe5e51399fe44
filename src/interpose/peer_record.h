// What two ranks tell each other about a call, beside its data: at their
// first all-to-all-shaped call together, the shared settings and the host
// each is on; with LSHMOE_VERIFY=1, before every such call, how each
// classified the messages between them. Fixed size, so that its exchange
// never depends on what it says.
#pragma once

#include <cstdint>
#include <string>

#include "interpose/pairing.h"
#include "interpose/shim_settings.h"

namespace lshmoe::interpose {

struct PeerRecord {
  uint32_t magic = kMagic;
  uint32_t version = 1;
  uint32_t host = 0;         // hash of NCCL_HOSTID, else the host name
  uint32_t forward = 0;      // the call came from the communicator's forward thread
  uint32_t shaped = 0;       // the sender judged the call all-to-all shaped
  uint32_t compressing = 0;  // the sender compresses on this communicator
  uint32_t unused = 0;
  Fingerprint settings{};
  uint32_t out_count = 0, in_count = 0;  // messages to and from the receiving rank
  uint64_t out_hash = 0, in_hash = 0;    // their (treatment, role, rows, pair id), in order

  static constexpr uint32_t kMagic = 0x5248534cu;  // "LSHR"
};

// Accumulates one direction's messages into a record's hash.
void add_message(uint64_t* hash, uint32_t* count, int treatment, Role role, size_t rows,
                 uint64_t pair_id);

uint32_t this_host();

// Empty when the records agree; else what differs, naming the variable or
// the classification. `theirs` came from `their_rank`.
std::string settings_mismatch(const PeerRecord& mine, const PeerRecord& theirs);
std::string classification_mismatch(const PeerRecord& mine, int my_rank, const PeerRecord& theirs,
                                    int their_rank);

}  // namespace lshmoe::interpose
