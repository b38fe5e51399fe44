#include "comm.h"

#include <sched.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <map>
#include <string>
#include <tuple>
#include <utility>

#include "common/status.h"

namespace host_nccl {
namespace {

using lshmoe::transport::UcxChannel;
using lshmoe::transport::UcxWorker;
using Clock = std::chrono::steady_clock;

// As UcxWorker::wait_all: spin while UCX advances, then yield the core on
// each idle turn, so that ranks sharing cores get to send.
constexpr int kSpinTurnsBeforeYield = 64;
constexpr int kListedOperations = 8;

ncclResult_t from_status(lshmoe::Status s) {
  switch (s) {
    case LSHMOE_SUCCESS:
      return ncclSuccess;
    case LSHMOE_ERR_INVALID_ARGUMENT:
    case LSHMOE_ERR_INVALID_CONFIG:
      return ncclInvalidArgument;
    case LSHMOE_ERR_TIMEOUT:
    case LSHMOE_ERR_NETWORK:
      return ncclRemoteError;
    case LSHMOE_ERR_OUT_OF_MEMORY:
      return ncclSystemError;
    default:
      return ncclInternalError;
  }
}

uint64_t tag_of(const ncclComm& comm, int sender, uint32_t sequence) {
  return lshmoe::transport::ucx_tag(UcxChannel::kHostNccl,
                                    (comm.id << kTagRankBits) | uint32_t(sender), sequence);
}

const void* send_source(const Op& op) {
  return op.stage == nullptr ? op.send_data : op.stage->copy.data() + op.stage_offset;
}

std::string describe(const Op& op) {
  std::string s = op.send ? "send of " : "receive of ";
  s += std::to_string(op.bytes) + (op.send ? " bytes to rank " : " bytes from rank ");
  s += std::to_string(op.peer);
  if (op.comm->id != 0) s += " of communicator " + std::to_string(op.comm->id);
  return s;
}

// NCCL matches a send to self with the receive from self of the same
// position on that communicator; both must be in the group.
ncclResult_t match_self(const std::vector<Op>& ops,
                        std::vector<std::pair<const Op*, const Op*>>* pairs) {
  std::map<const ncclComm*, std::pair<std::vector<const Op*>, std::vector<const Op*>>> by_comm;
  for (const Op& op : ops) {
    if (op.peer != op.comm->rank) continue;
    auto& lists = by_comm[op.comm];
    (op.send ? lists.first : lists.second).push_back(&op);
  }
  for (const auto& [comm, lists] : by_comm) {
    const auto& [sends, receives] = lists;
    if (sends.size() != receives.size()) {
      return fail(ncclInvalidUsage,
                  "rank %d: %zu send(s) to itself and %zu receive(s) from itself; each send to "
                  "self needs its receive in the same group",
                  comm->rank, sends.size(), receives.size());
    }
    for (size_t i = 0; i < sends.size(); ++i) {
      if (sends[i]->bytes != receives[i]->bytes) {
        return fail(ncclInvalidUsage,
                    "rank %d: send to self number %zu has %zu bytes, its receive %zu (the counts "
                    "differ)",
                    comm->rank, i + 1, sends[i]->bytes, receives[i]->bytes);
      }
      pairs->emplace_back(sends[i], receives[i]);
    }
  }
  return ncclSuccess;
}

// The requests of one UCX worker (a group may span communicators made by
// several ncclCommInitRank calls).
struct Posted {
  UcxWorker* worker = nullptr;
  std::vector<UcxWorker::Request> requests;
  std::vector<const Op*> ops;
  std::vector<bool> settled;
};

Posted& posted_on(std::vector<Posted>& all, UcxWorker* worker) {
  for (Posted& p : all) {
    if (p.worker == worker) return p;
  }
  all.emplace_back();
  all.back().worker = worker;
  return all.back();
}

// A size that differs leaves both ends in step (UCX consumed the message):
// it is reported once the rest is done. A transport failure is fatal.
void settle(const Posted& p, size_t i, std::string* fatal, std::string* mismatch) {
  const Op& op = *p.ops[i];
  const UcxWorker::Request& r = p.requests[i];
  ncclComm& comm = *op.comm;
  const std::string who = p.worker->name() + ": " + describe(op);
  if (r.status == UCS_ERR_MESSAGE_TRUNCATED) {
    if (mismatch->empty()) {
      *mismatch = who + ": the message is larger than the receive buffer (the counts differ)";
    }
  } else if (r.status != UCS_OK) {
    *fatal =
        who + " failed: " + ucs_status_string(r.status) + " (the peer died or cannot be reached)";
  } else if (!op.send && r.received != op.bytes) {
    if (mismatch->empty()) {
      *mismatch =
          who + ": the message has " + std::to_string(r.received) + " bytes (the counts differ)";
    }
  } else if (!op.control) {
    (op.send ? comm.bytes_sent : comm.bytes_received) += op.bytes;
  }
}

std::string timeout_text(const std::vector<Posted>& posted, int timeout_ms) {
  std::string who, waiting;
  int listed = 0, pending = 0;
  for (const Posted& p : posted) {
    for (size_t i = 0; i < p.requests.size(); ++i) {
      if (p.settled[i]) continue;
      if (who.empty()) who = p.worker->name();
      if (listed < kListedOperations) {
        waiting += (listed++ ? ", " : "") + describe(*p.ops[i]);
      }
      ++pending;
    }
  }
  if (pending > listed) waiting += ", ... (" + std::to_string(pending) + " in all)";
  return who + ": timed out after " + std::to_string(timeout_ms) +
         " ms (LSHMOE_TIMEOUT_MS) waiting for: " + waiting +
         "; a peer died, is stuck, or never posted the matching operation";
}

Op control_op(ncclComm* comm, bool send, int peer, void* data, size_t bytes) {
  Op op;
  op.comm = comm;
  op.send = send;
  op.peer = peer;
  op.bytes = bytes;
  op.control = true;
  if (send) {
    op.send_data = data;
  } else {
    op.recv_data = data;
  }
  return op;
}

// Ends ncclCommInitRank as NCCL's does, collectively: a message each way
// between every pair wires every endpoint while all ranks are alive (UCX
// cannot connect to a rank that has already left, and may abort if a peer
// dies mid-wireup), then a barrier through rank 0 keeps every rank in the
// call until every pair has been wired.
ncclResult_t handshake(ncclComm* comm) {
  const int me = comm->rank, n = comm->size;
  uint32_t mine = uint32_t(me);
  std::vector<uint32_t> theirs(size_t(n), ~uint32_t(0));
  std::vector<Op> ops;
  for (int p = 0; p < n; ++p) {
    if (p == me) continue;
    ops.push_back(control_op(comm, false, p, &theirs[size_t(p)], sizeof(uint32_t)));
    ops.push_back(control_op(comm, true, p, &mine, sizeof(uint32_t)));
  }
  if (const ncclResult_t r = run(ops); r != ncclSuccess) return r;
  for (int p = 0; p < n; ++p) {
    if (p != me && theirs[size_t(p)] != uint32_t(p)) {
      return fail(ncclInternalError, "rank %d: rank %d's handshake names rank %u", me, p,
                  theirs[size_t(p)]);
    }
  }
  ops.clear();
  uint32_t token = 0;
  if (me == 0) {
    for (int p = 1; p < n; ++p)
      ops.push_back(control_op(comm, false, p, &theirs[size_t(p)], sizeof(uint32_t)));
    if (const ncclResult_t r = run(ops); r != ncclSuccess) return r;
    ops.clear();
    for (int p = 1; p < n; ++p) ops.push_back(control_op(comm, true, p, &token, sizeof(uint32_t)));
  } else {
    ops.push_back(control_op(comm, false, 0, &token, sizeof(uint32_t)));
    ops.push_back(control_op(comm, true, 0, &mine, sizeof(uint32_t)));
  }
  return run(ops);
}

}  // namespace

ncclResult_t run(std::vector<Op>& ops) {
  for (const Op& op : ops) {
    const ncclComm& c = *op.comm;
    if (c.async_error != ncclSuccess) {
      return fail(c.async_error, "rank %d of %d: the communicator failed earlier (%s); destroy it",
                  c.rank, c.size, c.async_error_text.c_str());
    }
  }
  std::vector<std::pair<const Op*, const Op*>> self_pairs;
  if (const ncclResult_t r = match_self(ops, &self_pairs); r != ncclSuccess) return r;
  int timeout_ms = 0;
  for (Op& op : ops) {
    timeout_ms = std::max(timeout_ms, op.comm->mesh->timeout_ms);
    if (op.stage != nullptr && !op.stage->copied) {
      op.stage->copy.assign(op.stage->source, op.stage->source + op.stage->bytes);
      op.stage->copied = true;
    }
  }

  std::vector<Posted> posted;
  std::string fatal, mismatch;
  auto post = [&](const Op& op) {
    ncclComm& c = *op.comm;
    UcxWorker& worker = c.mesh->ucx->worker();
    Posted& p = posted_on(posted, &worker);
    p.requests.emplace_back();
    const int endpoint = c.endpoint[size_t(op.peer)];
    const size_t peer = size_t(op.peer);
    const lshmoe::Status s =
        op.send ? worker.post_send(endpoint, tag_of(c, c.rank, c.send_seq[peer]++), send_source(op),
                                   op.bytes, &p.requests.back())
                : worker.post_receive(endpoint, tag_of(c, op.peer, c.recv_seq[peer]++),
                                      lshmoe::transport::kFullTagMask, op.recv_data, op.bytes,
                                      &p.requests.back());
    if (s != LSHMOE_SUCCESS) {
      p.requests.pop_back();
      fatal = worker.name() + ": " + describe(op) + ": " + lshmoe::last_error();
      return false;
    }
    p.ops.push_back(&op);
    p.settled.push_back(false);
    return true;
  };
  // Receives first, so that every message has its place before any arrives.
  for (const Op& op : ops) {
    if (!op.send && op.peer != op.comm->rank && !post(op)) break;
  }
  if (fatal.empty()) {
    for (const auto& [send, receive] : self_pairs) {
      if (send->bytes > 0) memmove(receive->recv_data, send_source(*send), send->bytes);
    }
    for (const Op& op : ops) {
      if (op.send && op.peer != op.comm->rank && !post(op)) break;
    }
  }

  if (fatal.empty()) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    size_t remaining = 0;
    for (const Posted& p : posted) remaining += p.requests.size();
    int idle_turns = 0;
    while (fatal.empty() && remaining > 0) {
      bool advanced = false;
      for (Posted& p : posted) advanced |= p.worker->progress();
      if (advanced) {
        idle_turns = 0;
      } else if (++idle_turns > kSpinTurnsBeforeYield) {
        sched_yield();
      }
      for (Posted& p : posted) {
        for (size_t i = 0; i < p.requests.size() && fatal.empty(); ++i) {
          if (p.settled[i] || !p.worker->test(p.requests[i])) continue;
          p.settled[i] = true;
          --remaining;
          settle(p, i, &fatal, &mismatch);
        }
      }
      if (fatal.empty() && remaining > 0 && Clock::now() > deadline) {
        fatal = timeout_text(posted, timeout_ms);
      }
    }
  }

  if (!fatal.empty()) {
    // Nothing of the caller's is touched once this returns; every
    // communicator of the group now disagrees with its peers on what was
    // matched.
    for (Posted& p : posted) p.worker->cancel(p.requests);
    for (const Op& op : ops) {
      op.comm->async_error = ncclRemoteError;
      op.comm->async_error_text = fatal;
    }
    return fail(ncclRemoteError, "%s", fatal.c_str());
  }
  if (!mismatch.empty()) return fail(ncclInvalidUsage, "%s", mismatch.c_str());
  return ncclSuccess;
}

ncclResult_t create_comm(const Rendezvous& rendezvous, int nranks, int rank, int timeout_ms,
                         ncclComm** out) {
  lshmoe::transport::BootstrapConfig bootstrap;
  bootstrap.master_addr = rendezvous.address;
  bootstrap.master_port = rendezvous.port;
  bootstrap.rank = rank;
  bootstrap.world_size = nranks;
  bootstrap.timeout_ms = timeout_ms;  // the UCX worker takes it from here
  auto mesh = std::make_shared<Mesh>();
  mesh->timeout_ms = timeout_ms;
  const lshmoe::Status s = lshmoe::transport::UcxMesh::create(bootstrap, &mesh->ucx);
  if (s != LSHMOE_SUCCESS) {
    return fail(from_status(s), "rank %d of %d (rendezvous %s:%d): %s", rank, nranks,
                rendezvous.address.c_str(), rendezvous.port, lshmoe::last_error());
  }
  auto comm = std::make_unique<ncclComm>();
  comm->mesh = std::move(mesh);
  comm->rank = rank;
  comm->size = nranks;
  for (int p = 0; p < nranks; ++p) comm->endpoint.push_back(p);  // the mesh's ids are ranks
  comm->send_seq.assign(size_t(nranks), 0);
  comm->recv_seq.assign(size_t(nranks), 0);
  if (const ncclResult_t r = handshake(comm.get()); r != ncclSuccess) {
    return fail(r, "rank %d of %d, connecting: %s", rank, nranks, last_error_text());
  }
  *out = comm.release();
  return ncclSuccess;
}

ncclResult_t split_comm(ncclComm* parent, int color, int key, ncclComm** out) {
  struct Entry {
    int32_t color;
    int32_t key;
    uint32_t next_comm_id;
  };
  const int me = parent->rank;
  std::vector<Entry> all(size_t(parent->size));
  all[size_t(me)] = Entry{color, key, parent->mesh->next_comm_id};
  std::vector<Op> ops;
  for (int p = 0; p < parent->size; ++p) {
    if (p == me) continue;
    ops.push_back(control_op(parent, false, p, &all[size_t(p)], sizeof(Entry)));
    ops.push_back(control_op(parent, true, p, &all[size_t(me)], sizeof(Entry)));
  }
  if (const ncclResult_t r = run(ops); r != ncclSuccess) {
    return fail(r, "ncclCommSplit: %s", last_error_text());
  }
  uint32_t id = 0;
  for (const Entry& e : all) id = std::max(id, e.next_comm_id);
  if (id > kMaxCommId) {
    return fail(ncclInternalError,
                "ncclCommSplit: this stand-in's communicator ids are used up (at most %u "
                "communicators per ncclCommInitRank)",
                kMaxCommId + 1);
  }
  parent->mesh->next_comm_id = id + 1;
  if (color == NCCL_SPLIT_NOCOLOR) {
    *out = nullptr;
    return ncclSuccess;
  }
  std::vector<int> members;
  for (int p = 0; p < parent->size; ++p) {
    if (all[size_t(p)].color == color) members.push_back(p);
  }
  std::sort(members.begin(), members.end(), [&](int a, int b) {
    return std::tie(all[size_t(a)].key, a) < std::tie(all[size_t(b)].key, b);
  });
  auto comm = std::make_unique<ncclComm>();
  comm->mesh = parent->mesh;
  comm->id = id;
  comm->size = int(members.size());
  for (size_t i = 0; i < members.size(); ++i) {
    if (members[i] == me) comm->rank = int(i);
    comm->endpoint.push_back(parent->endpoint[size_t(members[i])]);
  }
  comm->send_seq.assign(members.size(), 0);
  comm->recv_seq.assign(members.size(), 0);
  *out = comm.release();
  return ncclSuccess;
}

void destroy_comm(ncclComm* comm, bool abort) {
  comm->magic = 0;
  if (abort && comm->mesh.use_count() == 1) {
    lshmoe::transport::UcxMesh& ucx = *comm->mesh->ucx;
    for (int p = 0; p < ucx.world_size(); ++p) ucx.worker().close_endpoint(p, true);
  }
  delete comm;
}

}  // namespace host_nccl
