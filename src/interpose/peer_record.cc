#include "interpose/peer_record.h"

#include <unistd.h>

#include <cstdlib>

namespace lshmoe::interpose {

static_assert(sizeof(PeerRecord) % 8 == 0, "a record travels as whole words");

void add_message(uint64_t* hash, uint32_t* count, int treatment, Role role, size_t rows,
                 uint64_t pair_id) {
  const uint64_t words[] = {uint64_t(treatment), uint64_t(role), rows, pair_id};
  uint64_t h = *hash ^ 0xcbf29ce484222325ull;
  for (uint64_t w : words) h = (h ^ w) * 0x100000001b3ull;
  *hash = h;
  ++*count;
}

uint32_t this_host() {
  std::string id;
  if (const char* hostid = getenv("NCCL_HOSTID")) {
    id = hostid;  // NCCL's own notion: several ranks of one machine as different hosts
  } else {
    char name[256] = {};
    gethostname(name, sizeof(name) - 1);
    id = name;
  }
  uint32_t h = 2166136261u;
  for (unsigned char c : id) h = (h ^ c) * 16777619u;
  return h;
}

std::string settings_mismatch(const PeerRecord& mine, const PeerRecord& theirs) {
  if (theirs.magic != PeerRecord::kMagic || theirs.version != mine.version) {
    return "the peer's shim record is not one of this version (magic " +
           std::to_string(theirs.magic) + ", version " + std::to_string(theirs.version) +
           "): are both ranks preloading the same lshmoe?";
  }
  for (size_t i = 0; i < kMaxFingerprint; ++i) {
    if (mine.settings[i] != theirs.settings[i]) {
      return std::string(fingerprint_name(i)) + " differs between the ranks";
    }
  }
  if (mine.compressing != theirs.compressing) {
    return std::string("one rank compresses on this communicator and the other does not (") +
           "LSHMOE_COMMS selects communicators by a creation index or size each process counts "
           "for itself, and a rank without a codec says so in its log)";
  }
  return {};
}

std::string classification_mismatch(const PeerRecord& mine, int my_rank, const PeerRecord& theirs,
                                    int their_rank) {
  const std::string us = "ranks " + std::to_string(my_rank) + " and " + std::to_string(their_rank);
  if (mine.shaped != theirs.shaped) {
    return us + " disagree on the call's shape: rank " + std::to_string(my_rank) +
           (mine.shaped ? " sends to several peers" : " sends to one peer at most") + ", rank " +
           std::to_string(their_rank) + (theirs.shaped ? " to several" : " to one at most") +
           " (an all-to-all is recognised by its sends to two or more peers)";
  }
  if (mine.forward != theirs.forward) {
    return us + " disagree on the forward thread: rank " + std::to_string(my_rank) +
           " calls from " + (mine.forward ? "its forward thread" : "another thread") + ", rank " +
           std::to_string(their_rank) + " from " +
           (theirs.forward ? "its forward thread" : "another thread");
  }
  if (mine.out_count != theirs.in_count || mine.out_hash != theirs.in_hash ||
      mine.in_count != theirs.out_count || mine.in_hash != theirs.out_hash) {
    return us + " classify the messages between them differently (" +
           std::to_string(mine.out_count) + " out / " + std::to_string(mine.in_count) +
           " in against " + std::to_string(theirs.in_count) + " / " +
           std::to_string(theirs.out_count) + ", or other sizes or roles): different settings, " +
           "or a rank that skipped a call";
  }
  return {};
}

}  // namespace lshmoe::interpose
