// Communicators of the host NCCL stand-in and the point-to-point engine under
// every NCCL call: a list of sends and receives of host buffers, completed
// over the UCX worker that the communicator shares with those split from it.
//
// Tags (channel kHostNccl, see transport/ucx/ucx_tags.h): the 24-bit field is
// the communicator id above the sender's rank in that communicator, the
// 32-bit field the sequence number of the ordered pair, so the n-th send from
// a to b matches b's n-th receive from a, as NCCL orders them.
#pragma once

#include <nccl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "rendezvous.h"
#include "transport/ucx/ucx_mesh.h"
#include "transport/ucx/ucx_tags.h"

namespace host_nccl {

inline constexpr int kTagRankBits = 12;
inline constexpr int kMaxRanks = 1 << kTagRankBits;
inline constexpr uint32_t kMaxCommId =
    (uint32_t(1) << (lshmoe::transport::kUcxTagHighBits - kTagRankBits)) - 1;

// One process's UCX worker, with endpoints to every rank of the communicator
// ncclCommInitRank made.
struct Mesh {
  std::unique_ptr<lshmoe::transport::UcxMesh> ucx;
  int timeout_ms = 0;
  // Above every id this process has used on the mesh. A split takes the
  // largest over its members, so two communicators that share a pair of
  // processes never share an id, however the members have split before.
  uint32_t next_comm_id = 1;
};

// Records the text ncclGetLastError returns (per thread) and passes
// `result` on.
ncclResult_t fail(ncclResult_t result, const char* fmt, ...) __attribute__((format(printf, 2, 3)));
const char* last_error_text();

}  // namespace host_nccl

struct ncclComm {
  // Cleared on destroy, so that a stale or foreign handle is most likely
  // refused rather than used.
  static constexpr uint64_t kMagic = 0x686f73744e43434cull;
  uint64_t magic = kMagic;
  std::shared_ptr<host_nccl::Mesh> mesh;
  uint32_t id = 0;
  int rank = 0;
  int size = 0;
  std::vector<int> endpoint;                 // by rank: the mesh's endpoint id
  std::vector<uint32_t> send_seq, recv_seq;  // by peer: the next sequence number
  uint64_t bytes_sent = 0, bytes_received = 0;
  // Once a transport failure has left messages unmatched, the sequence
  // numbers no longer agree with the peers': every later call fails.
  ncclResult_t async_error = ncclSuccess;
  std::string async_error_text;
};

namespace host_nccl {

// Send data copied when the operations start, so that an all-to-all whose
// buffers overlap reads what NCCL would.
struct Stage {
  const uint8_t* source = nullptr;
  size_t bytes = 0;
  bool copied = false;
  std::vector<uint8_t> copy;
};

struct Op {
  ncclComm* comm = nullptr;
  bool send = false;
  int peer = 0;
  const void* send_data = nullptr;  // a send's (or, with `stage`, the offset in it)
  void* recv_data = nullptr;
  size_t bytes = 0;
  bool control = false;  // the stand-in's own traffic (a split): not counted
  std::shared_ptr<Stage> stage;
  size_t stage_offset = 0;
};

// Completes every operation: receives posted first, then the copies to self
// (each send to self matches the receive from self of the same position on
// that communicator), then the sends, then a wait for all, bounded by the
// communicators' timeout.
ncclResult_t run(std::vector<Op>& ops);

ncclResult_t create_comm(const Rendezvous& rendezvous, int nranks, int rank, int timeout_ms,
                         ncclComm** out);
// Collective over `parent`; *out is null for NCCL_SPLIT_NOCOLOR.
ncclResult_t split_comm(ncclComm* parent, int color, int key, ncclComm** out);
// `abort`: the last communicator on a mesh drops its endpoints by force
// instead of flushing them to peers that may be gone.
void destroy_comm(ncclComm* comm, bool abort);

}  // namespace host_nccl
