#include "interpose/interposer.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/log.h"
#include "interpose/comm_registry.h"
#include "interpose/device_api.h"
#include "interpose/memory_kind.h"
#include "interpose/peer_record.h"
#include "interpose/real_nccl.h"
#include "interpose/shim_settings.h"

namespace lshmoe::interpose {
namespace {

// ---- the process: settings and the real NCCL, on the first NCCL call ----

struct Process {
  const RealNccl* real = nullptr;
  ShimSettings settings;
  Status status = LSHMOE_SUCCESS;
  std::string error;
  CommRegistry comms;
  uint32_t host = 0;
};

Process& process() {
  static Process p;
  static std::once_flag once;
  std::call_once(once, [] {
    p.real = real_nccl();
    if (p.real == nullptr) {
      p.status = fail(LSHMOE_ERR_UNSUPPORTED, "shim: no NCCL library found in this process");
    } else {
      p.status = shim_settings_from_env(&p.settings);
    }
    if (p.status != LSHMOE_SUCCESS) {
      p.error = last_error();
      LSHMOE_WARN("%s", p.error.c_str());
      return;
    }
    p.host = this_host();
    if (!p.settings.compress) {
      LSHMOE_INFO("shim: %s: every message passes through",
                  p.settings.config.enable ? "LSHMOE_HIDDEN is not set" : "LSHMOE_ENABLE=0");
    }
  });
  return p;
}

// The process when it is usable; else NULL and NCCL's code for why.
Process* ready(ncclResult_t* error) {
  Process& p = process();
  if (p.status == LSHMOE_SUCCESS) return &p;
  LSHMOE_WARN("%s", p.error.c_str());
  *error = p.real == nullptr ? ncclSystemError : ncclInvalidUsage;
  return nullptr;
}

ncclResult_t missing(const char* name) {
  LSHMOE_WARN("shim: the NCCL in use has no %s", name);
  return ncclInvalidUsage;
}

// ---- groups: per thread, as in NCCL ----

struct Op {
  enum class Kind { kSend, kRecv, kAllToAll } kind;
  const void* send = nullptr;
  void* recv = nullptr;
  size_t count = 0;
  ncclDataType_t type = ncclUint8;
  int peer = -1;
  ncclComm_t comm = nullptr;
  cudaStream_t stream = nullptr;
};

struct ThreadGroup {
  int depth = 0;
  bool real_open = false;  // NCCL's group was opened at the outermost start
  std::vector<Op> ops;
};
thread_local ThreadGroup t_group;

// ---- one call: the held operations of an outermost group ----

enum Treatment : int { kPass = 0, kRaw = 1, kCompressed = 2 };

// One rank to one peer (an ncclSend, an ncclRecv, or one peer's part of an
// ncclAlltoAll).
struct Message {
  size_t op = 0;  // index of its operation
  bool outgoing = false;
  int peer = -1;
  const void* src = nullptr;  // a send's rows
  void* dst = nullptr;        // a receive's rows
  size_t count = 0;
  ncclDataType_t type = ncclUint8;
  Treatment treatment = kPass;
  Role role = Role::kDispatch;
  uint64_t pair_id = 0;
  size_t rows = 0;
  PairContext* ctx = nullptr;
  KeptPairs<PairContext>::Pair* kept = nullptr;  // a backward step's pair
  size_t wire_bytes = 0;
  uint8_t* wire = nullptr;  // its wire buffer: host or device memory, as its rows
  cudaStream_t stream = nullptr;
};

// One communicator's part of a call.
struct CommCall {
  std::shared_ptr<CommState> owner;  // alive while the call runs, whatever another thread does
  CommState* state = nullptr;
  cudaStream_t stream = nullptr;
  std::vector<size_t> ops;  // indices into the call's operations
  std::vector<Message> messages;
  bool forward = false, shaped = false, host_memory = true;
  bool device = false;                     // device buffers, and a device back end to compress them
  bool compressing = false;                // this rank compresses on the communicator
  std::vector<int> peers;                  // the other ranks it has messages with
  std::vector<uint8_t> records;            // per peer: records travel with it in this call
  std::vector<PeerRecord> sent, received;  // one per peer
  std::vector<void*> received_on_device;   // device calls: where each peer's record lands
  bool any_records() const { return std::find(records.begin(), records.end(), 1) != records.end(); }
  size_t next_staging = 0;
};

// Device buffers of a communicator's pool: the records' first (a send and
// a receive per rank), then the call's wire buffers.
size_t record_buffer(const CommState& st, int peer, bool receive) {
  return 2 * size_t(peer) + (receive ? 1 : 0);
}

// A wire buffer for the call's next compressed message, kept across calls.
Status wire_for(CommCall& c, Message& m) {
  const size_t index = c.next_staging++;
  if (c.device) {
    void* p = device_api()->buffer(c.state->device_pool, 2 * size_t(c.state->size) + index,
                                   m.wire_bytes, m.stream);
    if (p == nullptr) return fail(LSHMOE_ERR_OUT_OF_MEMORY, "shim: %s", device_api()->last_error());
    m.wire = static_cast<uint8_t*>(p);
    return LSHMOE_SUCCESS;
  }
  std::vector<std::vector<uint8_t>>& buffers = c.state->staging;
  if (index == buffers.size()) buffers.emplace_back();
  if (buffers[index].size() < m.wire_bytes) buffers[index].resize(m.wire_bytes);
  m.wire = buffers[index].data();
  return LSHMOE_SUCCESS;
}

void expand(const std::vector<Op>& ops, CommCall* c) {
  const int n = c->state->size;
  for (size_t i : c->ops) {
    const Op& op = ops[i];
    if (op.kind == Op::Kind::kAllToAll) {
      const size_t bytes = op.count * nccl_type_size(op.type);
      for (int p = 0; p < n; ++p) {
        Message out{
            i,       true,     p,      static_cast<const char*>(op.send) + size_t(p) * bytes,
            nullptr, op.count, op.type};
        Message in{i,        false,  p, nullptr, static_cast<char*>(op.recv) + size_t(p) * bytes,
                   op.count, op.type};
        out.stream = in.stream = op.stream;
        c->messages.push_back(out);
        c->messages.push_back(in);
      }
    } else {
      const bool out = op.kind == Op::Kind::kSend;
      c->messages.push_back(Message{i, out, op.peer, op.send, op.recv, op.count, op.type});
      c->messages.back().stream = op.stream;
    }
  }
}

// All-to-all shaped: an ncclAlltoAll, or sends to at least two peers (the
// rank itself counts: PyTorch's all_to_all_single sends to itself, a
// pipeline stage never does).
bool is_shaped(const std::vector<Op>& ops, const CommCall& c) {
  std::vector<int> to;
  for (size_t i : c.ops) {
    if (ops[i].kind == Op::Kind::kAllToAll) return true;
    if (ops[i].kind == Op::Kind::kSend &&
        std::find(to.begin(), to.end(), ops[i].peer) == to.end()) {
      to.push_back(ops[i].peer);
    }
  }
  return to.size() >= 2;
}

// A pair's number is its dispatch's sequence number; its combine's has the
// top bit set, so that a combine is never taken for the reverse dispatch of
// the same pair (a regrouped combine has a dispatch's kind and size), and
// its backward steps the next bit (the second step both).
uint64_t wire_seq(const Message& m) {
  constexpr uint64_t kCombineBit = uint64_t(1) << 63, kBackwardBit = uint64_t(1) << 62;
  switch (m.role) {
    case Role::kDispatch:
      return m.pair_id;
    case Role::kCombine:
      return m.pair_id | kCombineBit;
    case Role::kFirstStep:
      return m.pair_id | kBackwardBit;
    case Role::kSecondStep:
      return m.pair_id | kBackwardBit | kCombineBit;
  }
  return m.pair_id;
}

// Whether this rank compresses on the communicator: selected, a row length
// set, and a codec that could be made here (a rank whose codec cannot be
// made, say for LSHMOE_CPU_ISA, says so in its records, and its pairs
// travel raw).
bool can_compress(const ShimSettings& s, CommState* st) {
  if (!s.compress || !st->selected || st->codec_failed) return false;
  if (st->codec) return true;
  Config config = s.config;
  config.stats = false;  // the shim reports per communicator
  if (cpu::CpuCodec::create(config, &st->codec) != LSHMOE_SUCCESS) {
    st->codec_failed = true;
    LSHMOE_WARN("shim: communicator %lld: no codec on rank %d (%s): its messages travel raw",
                static_cast<long long>(st->index), st->rank, last_error());
    return false;
  }
  return true;
}

// The device back end's codec and buffers for a communicator on device
// buffers; false (and its messages raw) when they cannot be had here.
bool device_ready(CommState* st) {
  const LshmoeShimDeviceApi* api = device_api();
  if (api == nullptr) return false;
  if (st->device_pool == nullptr) st->device_pool = api->pool_create();
  return st->device_pool != nullptr;
}

bool device_codec_ready(CommState* st) {
  if (st->device_codec_failed || !device_ready(st)) return false;
  if (st->device_codec != nullptr) return true;
  st->device_codec = device_api()->codec_create();
  if (st->device_codec == nullptr) {
    st->device_codec_failed = true;
    LSHMOE_WARN("shim: communicator %lld: no CUDA codec on rank %d (%s): its messages travel raw",
                static_cast<long long>(st->index), st->rank, device_api()->last_error());
  }
  return st->device_codec != nullptr;
}

// LSHMOE_BACKWARD=exact: a backward-thread message, against the kept pairs
// (kept_pairs.h). Every step of a kept pair is K slot rows, whichever it
// turns out to be.
void classify_backward(const ShimSettings& s, CommState& st, Message* m) {
  const size_t rows = candidate_rows(s, m->count, m->type);
  if (rows == 0 || st.peers[size_t(m->peer)].mismatched) return;
  const KeptPairs<PairContext>::Decision d =
      st.kept.classify(m->peer, m->outgoing, rows, int(*to_dtype(m->type)));
  if (d.pair == nullptr) return;
  m->role = d.step;
  m->pair_id = d.pair->pair_id;
  m->ctx = d.pair->context.get();
  m->kept = d.pair;
  m->rows = rows;
  m->treatment = kCompressed;
  // The origin sends the first step and receives the second.
  const bool origin = (d.step == Role::kFirstStep) == m->outgoing;
  m->wire_bytes = (origin ? m->ctx->origin.shape : m->ctx->expert.shape).wire_bytes(LSHMOE_COMBINE);
}

// Decides every message's treatment against the state before the call.
Status classify(const ShimSettings& s, uint32_t my_host, CommCall* c) {
  CommState& st = *c->state;
  const std::thread::id me = std::this_thread::get_id();
  if (!st.has_forward_thread) {
    st.forward_thread = me;
    st.has_forward_thread = true;
    LSHMOE_INFO("shim: communicator %lld: forward thread set by rank %d's first call",
                static_cast<long long>(st.index), st.rank);
  }
  c->forward = st.forward_thread == me;
  for (const Message& m : c->messages) {
    if (m.peer == st.rank) continue;
    if (std::find(c->peers.begin(), c->peers.end(), m.peer) == c->peers.end()) {
      c->peers.push_back(m.peer);
    }
    const void* buffer = m.outgoing ? m.src : m.dst;
    if (is_device_memory(buffer)) c->host_memory = false;
  }
  // Device buffers go to the device back end; without one they pass
  // through, with nothing else sent.
  c->device = !c->host_memory && device_ready(&st);
  // Records travel at a first shaped call with a peer (the settings) and,
  // with LSHMOE_VERIFY=1, at every call (its classification, the shape
  // included).
  c->records.assign(c->peers.size(), 0);
  for (size_t k = 0; k < c->peers.size() && (c->host_memory || c->device); ++k) {
    const PeerState& peer = st.peers[size_t(c->peers[k])];
    c->records[k] = s.config.verify || (c->shaped && !peer.met);
  }
  c->compressing = can_compress(s, &st) && (c->host_memory || device_codec_ready(&st));
  const bool compressing = c->compressing && c->forward && c->shaped;
  const bool backward = s.exact_backward && c->compressing && !c->forward && c->shaped;
  if (backward && !c->host_memory) {
    if (!st.said_device_backward) {
      st.said_device_backward = true;
      LSHMOE_WARN(
          "shim: communicator %lld: LSHMOE_BACKWARD=exact covers host buffers in this version; "
          "the backward on device buffers travels uncompressed",
          static_cast<long long>(st.index));
    }
  }
  for (Message& m : c->messages) {
    if (m.peer == st.rank) continue;
    if (backward && c->host_memory) {
      classify_backward(s, st, &m);
      continue;
    }
    if (!compressing) continue;
    const size_t rows = candidate_rows(s, m.count, m.type);
    if (rows == 0) continue;
    const PeerState& peer = st.peers[size_t(m.peer)];
    if (peer.mismatched) {
      m.treatment = kRaw;
      continue;
    }
    if (s.remote_only && peer.met && peer.host == my_host) continue;
    const PairTable<PairContext>::Decision d = st.pairs.classify(m.peer, m.outgoing, rows);
    m.role = d.role;
    m.pair_id = d.pair_id;
    m.ctx = d.context;
    m.rows = rows;
    m.treatment = kRaw;
    if (!peer.met) continue;  // the first call with a peer travels raw: settings unknown
    // Sizes from the plan of the pair's rows, which both ends share.
    lshmoe_plan_t plan;
    LSHMOE_RETURN_IF_ERROR(st.codec->plan(rows, size_t(s.config.hidden), *to_dtype(m.type), &plan));
    if (d.role == Role::kDispatch) {
      m.ctx->compressed = plan.compressed;
      if (!plan.compressed) continue;
      m.treatment = kCompressed;
      m.wire_bytes = plan.dispatch_bytes;
    } else if (m.ctx->compressed) {
      m.treatment = kCompressed;
      m.wire_bytes = s.regroup ? plan.dispatch_bytes : plan.combine_bytes;
    }
  }
  return LSHMOE_SUCCESS;
}

// What this rank says to each peer of the call.
void write_records(const ShimSettings& s, uint32_t my_host, CommCall* c) {
  c->sent.assign(c->peers.size(), PeerRecord{});
  c->received.assign(c->peers.size(), PeerRecord{});
  for (size_t k = 0; k < c->peers.size(); ++k) {
    PeerRecord& r = c->sent[k];
    r.host = my_host;
    r.forward = c->forward ? 1 : 0;
    r.shaped = c->shaped ? 1 : 0;
    r.compressing = c->compressing ? 1 : 0;
    r.settings = s.fingerprint;
    for (const Message& m : c->messages) {
      if (m.peer != c->peers[k]) continue;
      add_message(m.outgoing ? &r.out_hash : &r.in_hash, m.outgoing ? &r.out_count : &r.in_count,
                  m.treatment, m.role, m.treatment == kPass ? m.count : m.rows, m.pair_id);
    }
  }
}

// The records' verdict, peer by peer: settings at first contact, the
// classification with LSHMOE_VERIFY=1. A pair that disagrees travels raw
// from then on, and the call fails naming what differed.
Status read_records(const ShimSettings& s, CommCall* c) {
  CommState& st = *c->state;
  Status result = LSHMOE_SUCCESS;
  for (size_t k = 0; k < c->peers.size(); ++k) {
    if (!c->records[k]) continue;
    const int p = c->peers[k];
    PeerState& peer = st.peers[size_t(p)];
    std::string why = settings_mismatch(c->sent[k], c->received[k]);
    if (why.empty() && s.config.verify) {
      why = classification_mismatch(c->sent[k], st.rank, c->received[k], p);
    }
    if (!why.empty()) {
      if (!peer.mismatched && st.mismatch.empty()) {
        st.mismatch = "shim: communicator " + std::to_string(st.index) + ", ranks " +
                      std::to_string(st.rank) + " and " + std::to_string(p) + ": " + why;
      }
      peer.mismatched = true;
      result = LSHMOE_ERR_INVALID_CONFIG;
    }
    if (!peer.met && c->shaped) {
      peer.met = true;
      peer.host = c->received[k].host;
    }
  }
  if (result != LSHMOE_SUCCESS) return fail(result, "%s", st.mismatch.c_str());
  return LSHMOE_SUCCESS;
}

// Messages of a peer whose records disagreed travel raw (their sizes are
// the counts both ends know), and what they opened is forgotten.
void demote_mismatched(CommCall* c) {
  for (Message& m : c->messages) {
    if (m.peer >= 0 && c->state->peers[size_t(m.peer)].mismatched && m.treatment == kCompressed) {
      m.treatment = kRaw;
      if (m.ctx != nullptr) m.ctx->compressed = false;
    }
  }
}

// A device context for a new pair: a spare one of a pair that is over
// (work queued with it stays ordered before the new pair's, on the stream),
// else a new one.
void* take_device_context(CommState& st, PairContext* ctx) {
  std::vector<void*>& spare = st.device_contexts.spare;
  ctx->owner = &st.device_contexts;
  if (spare.empty()) return device_api()->context_create();
  void* context = spare.back();
  spare.pop_back();
  return context;
}

// One message through the CUDA codec, on its stream: encoded when this rank
// sends it, decoded when it receives it.
Status code_on_device(const ShimSettings& s, CommState& st, Message* m) {
  const LshmoeShimDeviceApi* api = device_api();
  void*& context = m->ctx->device;
  if (m->role == Role::kDispatch && context == nullptr) context = take_device_context(st, m->ctx);
  if (context == nullptr) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "shim: a combine on device buffers of a dispatch that was not (rank %d)", m->peer);
  }
  // Captured: replays use the context for as long as the graph lives.
  if (api->capturing(m->stream)) m->ctx->in_graph = true;
  const size_t h = size_t(s.config.hidden);
  const int dtype = int(*to_dtype(m->type)), regroup = s.regroup ? 1 : 0;
  const uint64_t seq = wire_seq(*m);
  if (m->role == Role::kDispatch) {
    return Status(m->outgoing ? api->dispatch_encode(st.device_codec, m->src, m->rows, h, dtype,
                                                     seq, m->wire, context, m->stream)
                              : api->dispatch_decode(st.device_codec, m->wire, m->rows, h, dtype,
                                                     seq, m->dst, context, m->stream));
  }
  return Status(m->outgoing ? api->combine_encode(st.device_codec, context, m->src, seq, m->wire,
                                                  regroup, m->stream)
                            : api->combine_decode(st.device_codec, context, m->wire, seq, m->dst,
                                                  regroup, m->stream));
}

// Every compressed message's wire buffer, before anything is encoded or
// posted: a call that cannot have them all posts nothing.
Status allocate_wires(CommCall* c) {
  for (Message& m : c->messages) {
    if (m.treatment == kCompressed) LSHMOE_RETURN_IF_ERROR(wire_for(*c, m));
  }
  return LSHMOE_SUCCESS;
}

// One outgoing message through the CPU codec.
Status encode_on_host(const ShimSettings& s, CommState& st, Message* m) {
  cpu::CpuCodec& codec = *st.codec;
  PairContext& ctx = *m->ctx;
  const size_t h = size_t(s.config.hidden);
  const DType dtype = *to_dtype(m->type);
  const uint64_t seq = wire_seq(*m);
  // The combine's grouping is kept for the exact backward only.
  cpu::Grouping* kept = s.exact_backward ? &ctx.combine_groups : nullptr;
  switch (m->role) {
    case Role::kDispatch: {
      const Status e = codec.dispatch_encode(m->src, m->rows, h, dtype, seq, m->wire, m->wire_bytes,
                                             &ctx.origin);
      if (e == LSHMOE_SUCCESS && s.exact_backward) ctx.sample.take(m->src, m->rows, h, dtype);
      return e;
    }
    case Role::kCombine:
      return s.regroup ? codec.combine_encode_regrouped(ctx.expert, m->src, seq, m->wire,
                                                        m->wire_bytes, kept)
                       : codec.combine_encode(ctx.expert, m->src, seq, m->wire, m->wire_bytes);
    case Role::kFirstStep: {
      // The origin tells a replayed forward from the combine's gradient by
      // its rows; the receiver reads which from the message.
      const bool replay = ctx.sample.matches(m->src, m->rows, h, dtype);
      const Status e =
          replay ? codec.replay_dispatch_encode(&ctx.origin, m->src, seq, m->wire, m->wire_bytes)
                 : codec.kept_combine_backward_encode(&ctx.origin, ctx.combine_groups, m->src, seq,
                                                      m->wire, m->wire_bytes);
      if (e == LSHMOE_SUCCESS) KeptPairs<PairContext>::first_was(m->kept, replay);
      return e;
    }
    case Role::kSecondStep:
      return m->kept->stage == KeptPairs<PairContext>::Stage::kReplaying
                 ? codec.replay_combine_encode(ctx.expert, ctx.combine_groups, m->src, seq, m->wire,
                                               m->wire_bytes)
                 : codec.dispatch_backward_encode(ctx.expert, m->src, seq, m->wire, m->wire_bytes,
                                                  /*slots=*/false);
  }
  return LSHMOE_ERR_INTERNAL;
}

// One incoming message through the CPU codec.
Status decode_on_host(const ShimSettings& s, CommState& st, Message* m) {
  cpu::CpuCodec& codec = *st.codec;
  PairContext& ctx = *m->ctx;
  const uint64_t seq = wire_seq(*m);
  cpu::Grouping* kept = s.exact_backward ? &ctx.combine_groups : nullptr;
  switch (m->role) {
    case Role::kDispatch:
      return codec.dispatch_decode(m->wire, m->wire_bytes, m->rows, size_t(s.config.hidden),
                                   *to_dtype(m->type), seq, m->dst, &ctx.expert);
    case Role::kCombine:
      return s.regroup ? codec.combine_decode_regrouped(ctx.origin, m->wire, m->wire_bytes, seq,
                                                        m->dst, kept)
                       : codec.combine_decode(ctx.origin, m->wire, m->wire_bytes, seq, m->dst);
    case Role::kFirstStep: {
      const bool replay = cpu::CpuCodec::is_replay(m->wire, m->wire_bytes);
      const Status e =
          replay ? codec.replay_dispatch_decode(ctx.expert, m->wire, m->wire_bytes, seq, m->dst)
                 : codec.kept_combine_backward_decode(ctx.expert, ctx.combine_groups, m->wire,
                                                      m->wire_bytes, seq, m->dst);
      if (e == LSHMOE_SUCCESS) KeptPairs<PairContext>::first_was(m->kept, replay);
      return e;
    }
    case Role::kSecondStep:
      return m->kept->stage == KeptPairs<PairContext>::Stage::kReplaying
                 ? codec.replay_combine_decode(ctx.origin, ctx.combine_groups, m->wire,
                                               m->wire_bytes, seq, m->dst)
                 : codec.dispatch_backward_decode(ctx.origin, m->wire, m->wire_bytes, seq, m->dst);
  }
  return LSHMOE_ERR_INTERNAL;
}

Status encode(const ShimSettings& s, CommCall* c) {
  CommState& st = *c->state;
  Status result = LSHMOE_SUCCESS;
  for (Message& m : c->messages) {
    if (m.treatment != kCompressed || !m.outgoing) continue;
    uint8_t* wire = m.wire;
    if (c->device) {
      const Status e = code_on_device(s, st, &m);
      if (e != LSHMOE_SUCCESS && result == LSHMOE_SUCCESS) {
        result = fail(e, "shim: encode to rank %d: %s", m.peer, device_api()->last_error());
      }
      continue;
    }
    const Status e = encode_on_host(s, st, &m);
    if (e != LSHMOE_SUCCESS) {
      // The peer expects this size: send a message its decoder rejects.
      memset(wire, 0, m.wire_bytes);
      if (result == LSHMOE_SUCCESS)
        result = fail(e, "shim: encode to rank %d: %s", m.peer, last_error());
    }
  }
  return result;
}

Status decode(const ShimSettings& s, CommCall* c) {
  CommState& st = *c->state;
  Status result = LSHMOE_SUCCESS;
  for (Message& m : c->messages) {
    if (m.treatment != kCompressed || m.outgoing) continue;
    if (c->device) {
      const Status e = code_on_device(s, st, &m);
      if (e != LSHMOE_SUCCESS && result == LSHMOE_SUCCESS) {
        result = fail(e, "shim: communicator %lld, message from rank %d: %s",
                      static_cast<long long>(st.index), m.peer, device_api()->last_error());
      }
      continue;
    }
    const Status e = decode_on_host(s, st, &m);
    if (e != LSHMOE_SUCCESS && result == LSHMOE_SUCCESS) {
      result = fail(e, "shim: communicator %lld, message from rank %d: %s",
                    static_cast<long long>(st.index), m.peer, last_error());
    }
  }
  return result;
}

void count(CommCall* c) {
  ShimCounters& k = c->state->counters;
  ++k.calls;
  for (const Message& m : c->messages) {
    if (!m.outgoing || m.peer == c->state->rank) continue;
    const size_t logical = m.count * nccl_type_size(m.type);
    if (m.treatment == kPass) {
      ++k.passed;
      continue;
    }
    ++(m.treatment == kCompressed ? k.compressed : k.raw);
    k.logical_bytes += logical;
    k.wire_bytes += m.treatment == kCompressed ? m.wire_bytes : logical;
  }
}

// Once per communicator at LSHMOE_DEBUG=INFO: what it compresses.
void say_compressing(CommCall* c) {
  if (c->state->said_compressing) return;
  for (const Message& m : c->messages) {
    if (m.treatment != kCompressed || !m.outgoing) continue;
    c->state->said_compressing = true;
    LSHMOE_INFO(
        "shim: communicator %lld compresses, first a %s of %zu rows to rank %d (%zu of "
        "%zu bytes on the wire)",
        static_cast<long long>(c->state->index), m.role == Role::kDispatch ? "dispatch" : "combine",
        m.rows, m.peer, m.wire_bytes, m.count * nccl_type_size(m.type));
    return;
  }
}

// Posts the records of the flagged peers, a send and a receive each.
// On device buffers the records travel through device memory: copied there
// first, and back by fetch_records once the group is over.
ncclResult_t post_records(const transport::NcclOps& nccl, CommCall* c) {
  c->received_on_device.assign(c->peers.size(), nullptr);
  for (size_t k = 0; k < c->peers.size(); ++k) {
    if (!c->records[k]) continue;
    const void* out = &c->sent[k];
    void* in = &c->received[k];
    if (c->device) {
      const LshmoeShimDeviceApi* api = device_api();
      void* send = api->buffer(c->state->device_pool, record_buffer(*c->state, c->peers[k], false),
                               sizeof(PeerRecord), c->stream);
      in = api->buffer(c->state->device_pool, record_buffer(*c->state, c->peers[k], true),
                       sizeof(PeerRecord), c->stream);
      if (send == nullptr || in == nullptr ||
          api->copy(send, &c->sent[k], sizeof(PeerRecord), c->stream) != LSHMOE_SUCCESS) {
        LSHMOE_WARN("shim: %s", api->last_error());
        return ncclSystemError;
      }
      out = send;
      c->received_on_device[k] = in;
    }
    ncclResult_t r =
        nccl.send(out, sizeof(PeerRecord), ncclUint8, c->peers[k], c->state->comm, c->stream);
    if (r == ncclSuccess) {
      r = nccl.recv(in, sizeof(PeerRecord), ncclUint8, c->peers[k], c->state->comm, c->stream);
    }
    if (r != ncclSuccess) return r;
  }
  return ncclSuccess;
}

// The received records, to host memory (device calls: waits for the stream).
Status fetch_records(CommCall* c) {
  if (!c->device) return LSHMOE_SUCCESS;
  for (size_t k = 0; k < c->peers.size(); ++k) {
    if (!c->records[k] || c->received_on_device[k] == nullptr) continue;
    if (device_api()->copy(&c->received[k], c->received_on_device[k], sizeof(PeerRecord),
                           c->stream) != LSHMOE_SUCCESS) {
      return fail(LSHMOE_ERR_INTERNAL, "shim: %s", device_api()->last_error());
    }
  }
  return LSHMOE_SUCCESS;
}

// Posts one communicator's part inside NCCL's open group: records first
// (both ends post them first for every pair), then the operations in order.
// An ncclAlltoAll always goes out as its sends and receives: whether one
// is compressed is decided per pair, and a collective must be the same on
// every rank of the communicator.
ncclResult_t post(const RealNccl& real, const std::vector<Op>& ops, CommCall* c) {
  const transport::NcclOps& nccl = real.ops;
  ncclComm_t comm = c->state->comm;
  if (c->any_records()) {
    const ncclResult_t r = post_records(nccl, c);
    if (r != ncclSuccess) return r;
  }
  for (size_t i : c->ops) {
    const Op& op = ops[i];
    for (const Message& m : c->messages) {
      if (m.op != i) continue;
      ncclResult_t r;
      if (m.treatment == kCompressed) {
        uint8_t* wire = m.wire;
        r = m.outgoing ? nccl.send(wire, m.wire_bytes, ncclUint8, m.peer, comm, op.stream)
                       : nccl.recv(wire, m.wire_bytes, ncclUint8, m.peer, comm, op.stream);
      } else {
        r = m.outgoing ? nccl.send(m.src, m.count, m.type, m.peer, comm, op.stream)
                       : nccl.recv(m.dst, m.count, m.type, m.peer, comm, op.stream);
      }
      if (r != ncclSuccess) return r;
    }
  }
  return ncclSuccess;
}

// Waits out ncclInProgress of non-blocking communicators: the decoders may
// read the wire only once it has landed.
ncclResult_t settle(const RealNccl& real, ncclResult_t r, const std::vector<CommCall>& calls) {
  if (r != ncclInProgress) return r;
  for (const CommCall& c : calls) {
    ncclResult_t state = ncclInProgress;
    while (state == ncclInProgress) {
      const ncclResult_t q = real.ops.comm_get_async_error(c.state->comm, &state);
      if (q != ncclSuccess) return q;
    }
    if (state != ncclSuccess) return state;
  }
  return ncclSuccess;
}

ncclResult_t to_nccl(Status s) {
  switch (s) {
    case LSHMOE_SUCCESS:
      return ncclSuccess;
    case LSHMOE_ERR_INVALID_CONFIG:
    case LSHMOE_ERR_INVALID_ARGUMENT:
    case LSHMOE_ERR_UNSUPPORTED:
      return ncclInvalidUsage;
    case LSHMOE_ERR_OUT_OF_MEMORY:
      return ncclSystemError;
    default:
      return s >= LSHMOE_ERR_WIRE_TRUNCATED && s <= LSHMOE_ERR_WIRE_BAD_SEQUENCE
                 ? ncclRemoteError
                 : ncclInternalError;
  }
}

// NCCL's group, opened by the shim or its caller, is always ended, also
// when an exception leaves the call (NCCL's group depth is per thread).
class RealGroup {
 public:
  RealGroup(const RealNccl& real, bool open) : real_(real), open_(open) {}
  ~RealGroup() {
    if (open_) real_.ops.group_end();
  }
  ncclResult_t start() {
    if (open_) return ncclSuccess;
    const ncclResult_t r = real_.ops.group_start();
    open_ = r == ncclSuccess;
    return r;
  }
  ncclResult_t end() {
    open_ = false;
    return real_.ops.group_end();
  }

 private:
  const RealNccl& real_;
  bool open_;
};

// LSHMOE_VERIFY=1: the records go in a group of their own before any data
// moves, and disagreeing pairs are demoted to raw.
Status verify_first(const RealNccl& real, const ShimSettings& s, std::vector<CommCall>& calls,
                    ncclResult_t* nccl) {
  bool any = false;
  for (const CommCall& c : calls) any = any || c.any_records();
  if (!any) return LSHMOE_SUCCESS;
  RealGroup group(real, false);
  ncclResult_t r = group.start();
  for (CommCall& c : calls) {
    if (r == ncclSuccess) r = post_records(real.ops, &c);
  }
  const ncclResult_t end = settle(real, group.end(), calls);
  *nccl = r != ncclSuccess ? r : end;
  if (*nccl != ncclSuccess) return LSHMOE_SUCCESS;
  Status result = LSHMOE_SUCCESS;
  for (CommCall& c : calls) {
    if (!c.any_records()) continue;
    Status e = fetch_records(&c);
    if (e == LSHMOE_SUCCESS) e = read_records(s, &c);
    if (result == LSHMOE_SUCCESS) result = e;
    demote_mismatched(&c);
    c.records.assign(c.records.size(), 0);  // compared: the data group carries none
  }
  return result;
}

// A call that posts nothing: what it opened, combined or stepped is dropped.
void abandon(CommCall* c) {
  c->state->pairs.end_call(false);
  c->state->kept.end_call(false);
}

// A combined pair of host buffers that travelled compressed, kept for its
// backward steps; other pairs have none (theirs pass through).
void keep_for_backward(const ShimSettings& s, CommState* st, int peer, bool origin, size_t rows,
                       uint64_t pair_id, std::unique_ptr<PairContext> ctx) {
  if (ctx == nullptr || !ctx->compressed || ctx->device != nullptr) return;
  const cpu::PairShape& shape = origin ? ctx->origin.shape : ctx->expert.shape;
  if (!shape.valid || !shape.compressed) return;
  if (!s.regroup) {
    // Slot means: the combine grouped the rows as the dispatch did.
    ctx->combine_groups.assignment = origin ? ctx->origin.assignment : ctx->expert.assignment;
    ctx->combine_groups.used_slots = shape.used_slots;
  }
  st->kept.keep(peer, origin, rows, int(shape.dtype), pair_id, std::move(ctx));
}

Status poll_device_decoders(const CommCall& c) {
  if (c.state->device_codec == nullptr) return LSHMOE_SUCCESS;
  const Status e = Status(device_api()->poll(c.state->device_codec));
  if (e == LSHMOE_SUCCESS) return e;
  return fail(e,
              "shim: communicator %lld: a compressed message of an earlier call was rejected on "
              "the device, its rows left as they were: %s",
              static_cast<long long>(c.state->index), device_api()->last_error());
}

// Launches the held operations of an outermost group (or of one call made
// outside a group), compressing what the rule selects.
ncclResult_t run(Process& p, std::vector<Op> ops, bool real_open) {
  const RealNccl& real = *p.real;
  const ShimSettings& s = p.settings;
  RealGroup group(real, real_open);
  // One part per communicator, in the order they first appear.
  std::vector<CommCall> calls;
  for (size_t i = 0; i < ops.size(); ++i) {
    auto it = std::find_if(calls.begin(), calls.end(),
                           [&](const CommCall& c) { return c.state->comm == ops[i].comm; });
    if (it == calls.end()) {
      std::shared_ptr<CommState> state = p.comms.find(ops[i].comm, real, s);
      if (state == nullptr) {
        LSHMOE_WARN(
            "shim: ncclCommUserRank/ncclCommCount fail on a communicator: its calls "
            "fail too");
        return ncclInvalidArgument;
      }
      calls.emplace_back();
      calls.back().owner = state;
      calls.back().state = state.get();
      calls.back().stream = ops[i].stream;
      it = calls.end() - 1;
    }
    it->ops.push_back(i);
  }
  // Lock in a global order: two threads calling on the same communicators
  // cannot deadlock.
  std::vector<std::unique_lock<std::mutex>> locks;
  {
    std::vector<CommState*> order;
    for (CommCall& c : calls) order.push_back(c.state);
    std::sort(order.begin(), order.end());
    for (CommState* st : order) locks.emplace_back(st->mu);
  }
  // A classification that fails (a plan refused: sizes both ends share) posts
  // nothing, on every rank alike.
  for (CommCall& c : calls) {
    expand(ops, &c);
    c.shaped = is_shaped(ops, c);
    const Status e = classify(s, p.host, &c);
    if (e != LSHMOE_SUCCESS) {
      LSHMOE_WARN("%s", last_error());
      for (CommCall& d : calls) abandon(&d);
      return to_nccl(e);
    }
    write_records(s, p.host, &c);
  }
  for (CommCall& c : calls) {
    const Status e = allocate_wires(&c);
    if (e != LSHMOE_SUCCESS) {
      LSHMOE_WARN("%s", last_error());
      for (CommCall& d : calls) abandon(&d);
      return to_nccl(e);
    }
  }
  // An earlier call's rejection by a device decoder, found once the device
  // finished it: this call reports it, and still moves its data (the peers
  // post theirs).
  Status shim = LSHMOE_SUCCESS;
  for (const CommCall& c : calls) {
    if (shim == LSHMOE_SUCCESS) shim = poll_device_decoders(c);
  }
  if (s.config.verify) {
    ncclResult_t r = ncclSuccess;
    const Status e = verify_first(real, s, calls, &r);
    if (shim == LSHMOE_SUCCESS) shim = e;
    if (r != ncclSuccess) {
      for (CommCall& c : calls) abandon(&c);
      return r;
    }
  }
  for (CommCall& c : calls) {
    const Status e = encode(s, &c);
    if (shim == LSHMOE_SUCCESS) shim = e;
  }
  ncclResult_t r = group.start();
  for (CommCall& c : calls) {
    if (r == ncclSuccess) r = post(real, ops, &c);
  }
  ncclResult_t end = group.end();
  bool needs_data = false;
  for (const CommCall& c : calls) {
    needs_data = needs_data || c.any_records();
    for (const Message& m : c.messages) needs_data = needs_data || m.treatment == kCompressed;
  }
  if (needs_data) end = settle(real, end, calls);
  if (r == ncclSuccess) r = end;
  const bool delivered = r == ncclSuccess || r == ncclInProgress;
  for (CommCall& c : calls) {
    if (r == ncclSuccess) {
      if (c.any_records()) {
        Status e = fetch_records(&c);
        if (e == LSHMOE_SUCCESS) e = read_records(s, &c);
        if (shim == LSHMOE_SUCCESS) shim = e;
      }
      Status e = decode(s, &c);
      // A device decoder's verdict needs a wait: only with LSHMOE_VERIFY=1
      // (else at the communicator's destruction).
      if (e == LSHMOE_SUCCESS && c.device && s.config.verify && c.state->device_codec != nullptr) {
        e = Status(device_api()->check(c.state->device_codec, c.stream));
        if (e != LSHMOE_SUCCESS) e = fail(e, "shim: %s", device_api()->last_error());
      }
      if (shim == LSHMOE_SUCCESS) shim = e;
    }
    count(&c);
    const uint64_t dropped = c.state->pairs.counters().dropped;
    if (s.exact_backward) {
      c.state->pairs.end_call(delivered, [&](int peer, bool origin, size_t rows, uint64_t id,
                                             std::unique_ptr<PairContext> ctx) {
        keep_for_backward(s, c.state, peer, origin, rows, id, std::move(ctx));
      });
      c.state->kept.end_call(delivered);
    } else {
      c.state->pairs.end_call(delivered);
    }
    if (c.state->pairs.counters().dropped > dropped) {
      LSHMOE_INFO(
          "shim: communicator %lld: %llu open dispatch(es) dropped (LSHMOE_MAX_OPEN=%lld "
          "per pair, or a failed call)",
          static_cast<long long>(c.state->index),
          static_cast<unsigned long long>(c.state->pairs.counters().dropped - dropped),
          static_cast<long long>(s.config.max_open));
    }
    say_compressing(&c);
    for (int peer : c.peers) {
      if (shim == LSHMOE_SUCCESS && c.state->peers[size_t(peer)].mismatched) {
        shim = fail(LSHMOE_ERR_INVALID_CONFIG, "%s", c.state->mismatch.c_str());
      }
    }
  }
  if (r != ncclSuccess) return r;
  if (shim != LSHMOE_SUCCESS) {
    LSHMOE_WARN("%s", last_error());
    return to_nccl(shim);
  }
  return ncclSuccess;
}

// An operation the shim cannot take (no communicator, a peer outside it, a
// type NCCL does not have) goes to NCCL as it is, which answers with its
// own error.
bool unusable(const Process& p, ncclComm_t comm, int peer, ncclDataType_t type, bool has_peer) {
  if (comm == nullptr || nccl_type_size(type) == 0) return true;
  if (!has_peer) return false;
  int n = 0;
  return p.real->ops.comm_count(comm, &n) != ncclSuccess || peer < 0 || peer >= n;
}

ncclResult_t hold_or_run(Process& p, Op op) {
  if (t_group.depth > 0) {
    t_group.ops.push_back(op);
    return ncclSuccess;
  }
  std::vector<Op> ops{op};
  return run(p, std::move(ops), false);
}

}  // namespace

ncclResult_t send(const void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                  cudaStream_t stream) {
  ncclResult_t error = ncclSuccess;
  Process* p = ready(&error);
  if (p == nullptr) return error;
  // Alone, a send is point-to-point traffic: NCCL's, untouched.
  if (t_group.depth == 0 || unusable(*p, comm, peer, type, true)) {
    return p->real->ops.send(buffer, count, type, peer, comm, stream);
  }
  return hold_or_run(*p, Op{Op::Kind::kSend, buffer, nullptr, count, type, peer, comm, stream});
}

ncclResult_t recv(void* buffer, size_t count, ncclDataType_t type, int peer, ncclComm_t comm,
                  cudaStream_t stream) {
  ncclResult_t error = ncclSuccess;
  Process* p = ready(&error);
  if (p == nullptr) return error;
  if (t_group.depth == 0 || unusable(*p, comm, peer, type, true)) {
    return p->real->ops.recv(buffer, count, type, peer, comm, stream);
  }
  return hold_or_run(*p, Op{Op::Kind::kRecv, nullptr, buffer, count, type, peer, comm, stream});
}

ncclResult_t all_to_all(const void* send_buffer, void* recv_buffer, size_t count,
                        ncclDataType_t type, ncclComm_t comm, cudaStream_t stream) {
  ncclResult_t error = ncclSuccess;
  Process* p = ready(&error);
  if (p == nullptr) return error;
  if (p->real->all_to_all == nullptr) return missing("ncclAlltoAll (NCCL < 2.28)");
  if (unusable(*p, comm, 0, type, false)) {
    return p->real->all_to_all(send_buffer, recv_buffer, count, type, comm, stream);
  }
  return hold_or_run(
      *p, Op{Op::Kind::kAllToAll, send_buffer, recv_buffer, count, type, -1, comm, stream});
}

ncclResult_t group_start() {
  ncclResult_t error = ncclSuccess;
  Process* p = ready(&error);
  if (p == nullptr) return error;
  if (t_group.depth == 0 && !p->settings.config.verify) {
    const ncclResult_t r = p->real->ops.group_start();
    if (r != ncclSuccess) return r;
    t_group.real_open = true;
  }
  ++t_group.depth;
  return ncclSuccess;
}

ncclResult_t group_end() {
  ncclResult_t error = ncclSuccess;
  Process* p = ready(&error);
  if (p == nullptr) return error;
  if (t_group.depth == 0) return p->real->ops.group_end();  // NCCL's own error for the misuse
  if (--t_group.depth > 0) return ncclSuccess;
  std::vector<Op> ops = std::move(t_group.ops);
  t_group.ops.clear();
  const bool real_open = t_group.real_open;
  t_group.real_open = false;
  if (ops.empty()) return real_open ? p->real->ops.group_end() : ncclSuccess;
  return run(*p, std::move(ops), real_open);
}

ncclResult_t group_simulate_end(ncclSimInfo_t* info) {
  ncclResult_t error = ncclSuccess;
  Process* p = ready(&error);
  if (p == nullptr) return error;
  if (p->real->group_simulate_end == nullptr) return missing("ncclGroupSimulateEnd");
  if (t_group.depth == 0) return p->real->group_simulate_end(info);
  if (--t_group.depth > 0) return ncclSuccess;
  // A simulation closes the group and moves nothing: the held operations
  // are shown to NCCL as they are, and no pairing state changes.
  std::vector<Op> ops = std::move(t_group.ops);
  t_group.ops.clear();
  ncclResult_t r = t_group.real_open ? ncclSuccess : p->real->ops.group_start();
  t_group.real_open = false;
  for (const Op& op : ops) {
    if (r != ncclSuccess) break;
    switch (op.kind) {
      case Op::Kind::kSend:
        r = p->real->ops.send(op.send, op.count, op.type, op.peer, op.comm, op.stream);
        break;
      case Op::Kind::kRecv:
        r = p->real->ops.recv(op.recv, op.count, op.type, op.peer, op.comm, op.stream);
        break;
      case Op::Kind::kAllToAll:
        r = p->real->all_to_all(op.send, op.recv, op.count, op.type, op.comm, op.stream);
        break;
    }
  }
  const ncclResult_t end = p->real->group_simulate_end(info);
  return r != ncclSuccess ? r : end;
}

// ---- the communicator lifecycle: state kept from creation to destruction ----

namespace {

// `body(process, fn)` with the real function `member` when the process is
// usable and its NCCL has that function; else NCCL's code for why not.
template <typename Fn, typename Body>
ncclResult_t with_real(Fn RealNccl::*member, const char* name, Body&& body) {
  ncclResult_t error = ncclSuccess;
  Process* p = ready(&error);
  if (p == nullptr) return error;
  const Fn fn = p->real->*member;
  if (fn == nullptr) return missing(name);
  return body(*p, fn);
}

ncclResult_t created(Process& p, ncclResult_t r, ncclComm_t comm) {
  if ((r == ncclSuccess || r == ncclInProgress) && comm != nullptr) {
    p.comms.add(comm);
  }
  return r;
}

}  // namespace

ncclResult_t comm_init_rank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  return with_real(&RealNccl::comm_init_rank, "ncclCommInitRank", [&](Process& p, auto init) {
    const ncclResult_t r = init(comm, nranks, id, rank);  // before *comm is read
    return created(p, r, comm ? *comm : nullptr);
  });
}

ncclResult_t comm_init_rank_config(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank,
                                   ncclConfig_t* config) {
  return with_real(&RealNccl::comm_init_rank_config, "ncclCommInitRankConfig",
                   [&](Process& p, auto init) {
                     const ncclResult_t r = init(comm, nranks, id, rank, config);
                     return created(p, r, comm ? *comm : nullptr);
                   });
}

ncclResult_t comm_init_all(ncclComm_t* comms, int ndev, const int* devices) {
  return with_real(&RealNccl::comm_init_all, "ncclCommInitAll", [&](Process& p, auto init) {
    const ncclResult_t r = init(comms, ndev, devices);
    for (int i = 0; comms != nullptr && i < ndev; ++i) created(p, r, comms[i]);
    return r;
  });
}

ncclResult_t comm_split(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                        ncclConfig_t* config) {
  return with_real(&RealNccl::comm_split, "ncclCommSplit", [&](Process& p, auto split) {
    const ncclResult_t r = split(comm, color, key, newcomm, config);
    return created(p, r, newcomm ? *newcomm : nullptr);
  });
}

ncclResult_t comm_destroy(ncclComm_t comm) {
  return with_real(&RealNccl::comm_destroy, "ncclCommDestroy", [&](Process& p, auto destroy) {
    const ncclResult_t r = destroy(comm);
    p.comms.remove(comm, p.settings);
    return r;
  });
}

ncclResult_t comm_abort(ncclComm_t comm) {
  // Aborting first ends a call blocked on the communicator in another thread.
  return with_real(&RealNccl::comm_abort, "ncclCommAbort", [&](Process& p, auto abort) {
    const ncclResult_t r = abort(comm);
    p.comms.remove(comm, p.settings);
    return r;
  });
}

ncclResult_t comm_finalize(ncclComm_t comm) {
  // The state stays until ncclCommDestroy.
  return with_real(&RealNccl::comm_finalize, "ncclCommFinalize",
                   [&](Process&, auto finalize) { return finalize(comm); });
}

}  // namespace lshmoe::interpose
