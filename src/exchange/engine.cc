#include "exchange/engine.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <string>

#include "common/log.h"
#include "common/stats.h"

namespace lshmoe::exchange {
namespace {

using transport::UcxMesh;
using transport::UcxWorker;

// The sender's rank and the operation number, on the exchange's channel.
uint64_t exchange_tag(int sender, uint32_t operation) {
  return transport::ucx_tag(transport::UcxChannel::kExchange, uint32_t(sender), operation);
}

bool is_transport_failure(Status s) {
  return s == LSHMOE_ERR_TIMEOUT || s == LSHMOE_ERR_NETWORK;
}

// Row offsets of per-peer blocks.
std::vector<size_t> offsets_of(const std::vector<size_t>& rows) {
  std::vector<size_t> off(rows.size() + 1, 0);
  for (size_t p = 0; p < rows.size(); ++p) off[p + 1] = off[p] + rows[p];
  return off;
}

cpu::PairShape raw_shape(size_t n_rows, size_t row_elems, DType dtype) {
  return cpu::PairShape{true, false, n_rows, row_elems, dtype, 0, 0};
}

}  // namespace

Engine::Engine(const Config& config, std::unique_ptr<cpu::CpuCodec> codec,
               std::unique_ptr<UcxMesh> mesh)
    : config_(config), codec_(std::move(codec)), mesh_(std::move(mesh)), worker_(&mesh_->worker()) {
  send_stage_.resize(size_t(mesh_->world_size()));
  recv_stage_.resize(size_t(mesh_->world_size()));
}

Status Engine::create(const Config& config, std::unique_ptr<UcxMesh> mesh,
                      std::unique_ptr<Engine>* out) {
  if (mesh == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "exchange: a mesh and an output are required");
  }
  Config codec_config = config;
  codec_config.stats = false;  // the communicator reports for its codec
  std::unique_ptr<cpu::CpuCodec> codec;
  LSHMOE_RETURN_IF_ERROR(cpu::CpuCodec::create(codec_config, &codec));
  out->reset(new Engine(config, std::move(codec), std::move(mesh)));
  return LSHMOE_SUCCESS;
}

Engine::~Engine() {
  if (config_.stats) {
    const std::string who = "communicator rank " + std::to_string(rank());
    lshmoe_stats_t s;
    stats(&s);
    report_stats(config_, who.c_str(), s);
  }
}

Status Engine::stats(lshmoe_stats_t* out) const {
  *out = stats_;
  const lshmoe_stats_t c = codec_->stats();
  out->input_energy = c.input_energy;
  out->residual_energy = c.residual_energy;
  return LSHMOE_SUCCESS;
}

Status Engine::used_rows(const Handle& handle, size_t* out) const {
  const std::vector<size_t>& used = static_cast<const HostHandle&>(handle).used_rows;
  std::copy(used.begin(), used.end(), out);
  return LSHMOE_SUCCESS;
}

Status Engine::assignment(const Handle& handle, size_t part, uint32_t* slots) const {
  const auto& h = static_cast<const HostHandle&>(handle);
  if (part >= h.origin.size()) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "handle_assignment: part %zu of %zu", part,
                h.origin.size());
  }
  const cpu::OriginContext& ctx = h.origin[part];
  if (slots == nullptr && ctx.shape.n_rows > 0) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "handle_assignment: slots is NULL for %zu rows",
                ctx.shape.n_rows);
  }
  for (size_t i = 0; i < ctx.shape.n_rows; ++i) {
    slots[i] = ctx.shape.compressed ? ctx.assignment[i] : uint32_t(i);
  }
  return LSHMOE_SUCCESS;
}

Status Engine::check_usable() const {
  if (broken_ != LSHMOE_SUCCESS) {
    return fail(broken_,
                "exchange: rank %d: the communicator failed earlier (%s); destroy it and create "
                "a new one",
                rank(), status_string(broken_));
  }
  return LSHMOE_SUCCESS;
}

Status Engine::finish(Status status) {
  if (is_transport_failure(status)) broken_ = status;
  return status;
}

Status Engine::complete(Status posting, const std::function<Status(size_t)>& on_receive) {
  const auto deadline =
      std::chrono::steady_clock::now() + std::chrono::milliseconds(config_.timeout_ms);
  if (posting == LSHMOE_SUCCESS) return finish(worker_->wait_all(requests_, deadline, on_receive));
  // Sends already posted must finish before their buffers may change.
  const std::string message = last_error();
  worker_->wait_all(requests_, deadline, on_receive);
  return finish(fail(posting, "%s", message.c_str()));
}

uint8_t* Engine::stage(std::vector<std::vector<uint8_t>>& buffers, int peer, size_t bytes) {
  std::vector<uint8_t>& b = buffers[size_t(peer)];
  if (b.size() < bytes) b.resize(bytes);
  return b.data();
}

Status Engine::expert_rows(const size_t* recv_rows, size_t experts, size_t row_elems, DType dtype,
                           DispatchMode mode, size_t* out) const {
  if (recv_rows == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "exchange: recv_rows and out are required");
  }
  if (experts == 0) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "exchange: zero experts per rank");
  for (size_t i = 0; i < size_t(world_size()) * experts; ++i) {
    lshmoe_plan_t plan;
    LSHMOE_RETURN_IF_ERROR(codec_->plan(recv_rows[i], row_elems, dtype, &plan));
    const bool slots =
        mode == DispatchMode::kCentroids && plan.compressed && int(i / experts) != rank();
    out[i] = slots ? plan.slots : recv_rows[i];
  }
  return LSHMOE_SUCCESS;
}

namespace {

// A peer's message: its parts back to back (no padding: decoders take any
// alignment), each a codec message of its own. All parts raw: the rows
// themselves, which travel from and land in the caller's buffers.
struct PeerMessage {
  size_t bytes = 0;
  bool staged = false;  // a part is compressed
};

PeerMessage peer_message(const std::vector<size_t>& part_bytes, const std::vector<bool>& compressed,
                         int peer, size_t experts) {
  PeerMessage m;
  for (size_t e = 0; e < experts; ++e) {
    m.bytes += part_bytes[size_t(peer) * experts + e];
    m.staged = m.staged || compressed[size_t(peer) * experts + e];
  }
  return m;
}

// A part's sequence number: the operation's, and which expert of the peer
// (a part decoded at another part's offset is rejected even when their row
// counts are equal).
uint64_t part_seq(uint32_t operation, size_t part, size_t experts) {
  return (uint64_t(operation) << 16) | (part % experts);
}

constexpr size_t kMaxExperts = size_t(1) << 16;
// Bytes of the copy to self between two progress calls.
constexpr size_t kSelfCopyPiece = size_t(1) << 20;

}  // namespace

void Engine::release(std::unique_ptr<Handle> handle) {
  if (handle && spare_handles_.size() < kSpareHandles) {
    spare_handles_.emplace_back(static_cast<HostHandle*>(handle.release()));
  }
}

std::unique_ptr<HostHandle> Engine::reuse_handle() {
  if (spare_handles_.empty()) return std::make_unique<HostHandle>();
  std::unique_ptr<HostHandle> h = std::move(spare_handles_.back());
  spare_handles_.pop_back();
  // Every part's context shape is set again by the dispatch, and a
  // compressed part's assignment and residual are rewritten by its encode.
  h->stage = PairStage::kDispatched;
  return h;
}

Status Engine::move_parts(const PartMoves& m) {
  const int world = world_size(), me = rank();
  const size_t E = m.experts;
  const uint32_t op = next_operation_++;
  // Receives first, so every peer's data has a place to land.
  requests_.clear();
  requests_.reserve(size_t(2 * world));
  std::vector<int> request_peer;
  for (int k = 1; k < world; ++k) {
    const int p = (me - k + world) % world;
    const PeerMessage msg = peer_message(m.recv_bytes, m.recv_coded, p, E);
    if (msg.bytes == 0) continue;
    void* dst = msg.staged ? static_cast<void*>(stage(recv_stage_, p, msg.bytes))
                           : m.out + (*m.out_rows)[size_t(p) * E] * m.row_bytes;
    requests_.emplace_back();
    request_peer.push_back(p);
    const Status s = worker_->post_receive(p, exchange_tag(p, op), transport::kFullTagMask, dst,
                                           msg.bytes, &requests_.back());
    if (s != LSHMOE_SUCCESS) {
      requests_.pop_back();
      worker_->cancel(requests_);
      return finish(s);
    }
  }
  // Encode and send, nearest peer first; progress between encodes keeps the
  // earlier messages moving.
  Status failure = LSHMOE_SUCCESS;
  for (int k = 1; k < world && failure == LSHMOE_SUCCESS; ++k) {
    const int p = (me + k) % world;
    const PeerMessage msg = peer_message(m.send_bytes, m.send_coded, p, E);
    if (msg.bytes == 0) continue;
    const void* src = m.in + (*m.in_rows)[size_t(p) * E] * m.row_bytes;
    if (msg.staged) {
      uint8_t* wire = stage(send_stage_, p, msg.bytes);
      size_t at = 0;
      for (size_t i = size_t(p) * E; i < size_t(p + 1) * E && failure == LSHMOE_SUCCESS; ++i) {
        const char* rows = m.in + (*m.in_rows)[i] * m.row_bytes;
        if (m.send_coded[i]) {
          failure = m.encode(i, rows, wire + at, m.send_bytes[i], part_seq(op, i, E));
        } else if (m.send_bytes[i] > 0) {
          memcpy(wire + at, rows, m.send_bytes[i]);
        }
        at += m.send_bytes[i];
      }
      if (failure != LSHMOE_SUCCESS) break;
      src = wire;
    }
    for (size_t i = size_t(p) * E; i < size_t(p + 1) * E; ++i) {
      if (m.send_logical[i] == 0) continue;
      count_sent(&stats_, m.send_logical[i], m.send_bytes[i], m.counts_as_dispatch,
                 m.send_coded[i]);
    }
    requests_.emplace_back();
    request_peer.push_back(p);
    failure = worker_->post_send(p, exchange_tag(me, op), src, msg.bytes, &requests_.back());
    if (failure != LSHMOE_SUCCESS) requests_.pop_back();
    worker_->progress();
  }
  // The message to self is a copy (its parts are contiguous rows), made
  // while the others travel: a piece at a time, with progress between the
  // pieces (a transport over sockets moves data only when progressed).
  const size_t self_rows = (*m.in_rows)[size_t(me + 1) * E] - (*m.in_rows)[size_t(me) * E];
  if (self_rows > 0 && failure == LSHMOE_SUCCESS) {
    char* dst = m.out + (*m.out_rows)[size_t(me) * E] * m.row_bytes;
    const char* src = m.in + (*m.in_rows)[size_t(me) * E] * m.row_bytes;
    const size_t bytes = self_rows * m.row_bytes;
    for (size_t at = 0; at < bytes; at += kSelfCopyPiece) {
      memcpy(dst + at, src + at, std::min(kSelfCopyPiece, bytes - at));
      worker_->progress();
    }
  }
  // Decode each message as it lands, part by part.
  auto on_receive = [&](size_t r) -> Status {
    const int p = request_peer[r];
    if (!peer_message(m.recv_bytes, m.recv_coded, p, E).staged) return LSHMOE_SUCCESS;
    const uint8_t* wire = recv_stage_[size_t(p)].data();
    size_t at = 0;
    for (size_t i = size_t(p) * E; i < size_t(p + 1) * E; ++i) {
      char* dst = m.out + (*m.out_rows)[i] * m.row_bytes;
      if (m.recv_coded[i]) {
        const Status s = m.decode(i, wire + at, m.recv_bytes[i], part_seq(op, i, E), dst);
        if (s != LSHMOE_SUCCESS) return fail(s, "%s from rank %d: %s", m.what, p, last_error());
      } else if (m.recv_bytes[i] > 0) {
        memcpy(dst, wire + at, m.recv_bytes[i]);
      }
      at += m.recv_bytes[i];
    }
    return LSHMOE_SUCCESS;
  };
  return complete(failure, on_receive);
}

Status Engine::dispatch(const void* send, const size_t* send_rows, void* recv,
                        const size_t* recv_rows, size_t experts, size_t row_elems, DType dtype,
                        DispatchMode mode, void*, std::unique_ptr<Handle>* handle_out) {
  LSHMOE_RETURN_IF_ERROR(check_usable());
  if (send_rows == nullptr || recv_rows == nullptr || handle_out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "dispatch: send_rows, recv_rows and a handle output are required");
  }
  if (experts == 0 || experts > kMaxExperts) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch: %zu experts per rank, expected 1 to %zu",
                experts, kMaxExperts);
  }
  const int world = world_size(), me = rank();
  const size_t parts = size_t(world) * experts, E = experts;
  std::unique_ptr<HostHandle> h = reuse_handle();
  h->mode = mode;
  h->row_elems = row_elems;
  h->dtype = dtype;
  h->experts = experts;
  h->send_rows.assign(send_rows, send_rows + parts);
  h->recv_rows.assign(recv_rows, recv_rows + parts);
  h->expert_rows.resize(parts);
  LSHMOE_RETURN_IF_ERROR(
      expert_rows(recv_rows, experts, row_elems, dtype, mode, h->expert_rows.data()));
  h->used_rows = h->expert_rows;
  h->origin.resize(parts);
  h->expert.resize(parts);
  h->origin_offsets = offsets_of(h->send_rows);
  h->expert_offsets = offsets_of(h->expert_rows);
  if ((h->origin_offsets.back() > 0 && send == nullptr) ||
      (h->expert_offsets.back() > 0 && recv == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "dispatch: %zu rows to send and %zu to receive, "
                "but a buffer is NULL",
                h->origin_offsets.back(), h->expert_offsets.back());
  }
  // Every size is settled before anything is posted.
  for (size_t e = 0; e < E; ++e) {
    const size_t self = size_t(me) * E + e;
    if (h->send_rows[self] != recv_rows[self]) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "dispatch: rank %d sends %zu rows to its own expert %zu but expects %zu", me,
                  h->send_rows[self], e, recv_rows[self]);
    }
  }
  PartMoves m(parts, E, "dispatch", /*counts_as_dispatch=*/true);
  m.row_bytes = row_elems * dtype_size(dtype);
  m.in = static_cast<const char*>(send);
  m.out = static_cast<char*>(recv);
  m.in_rows = &h->origin_offsets;
  m.out_rows = &h->expert_offsets;
  for (size_t i = 0; i < parts; ++i) {
    lshmoe_plan_t send_plan, recv_plan;
    LSHMOE_RETURN_IF_ERROR(codec_->plan(recv_rows[i], row_elems, dtype, &recv_plan));
    LSHMOE_RETURN_IF_ERROR(codec_->plan(h->send_rows[i], row_elems, dtype, &send_plan));
    m.send_bytes[i] = send_plan.dispatch_bytes;
    m.recv_bytes[i] = recv_plan.dispatch_bytes;
    m.send_coded[i] = send_plan.compressed;
    m.recv_coded[i] = recv_plan.compressed;
    m.send_logical[i] = send_plan.logical_bytes;
    h->origin[i].shape = raw_shape(h->send_rows[i], row_elems, dtype);
    h->expert[i].shape = raw_shape(recv_rows[i], row_elems, dtype);
  }
  HostHandle& hh = *h;
  m.encode = [&](size_t i, const char* rows, uint8_t* wire, size_t bytes, uint64_t seq) {
    return codec_->dispatch_encode(rows, hh.send_rows[i], row_elems, dtype, seq, wire, bytes,
                                   &hh.origin[i]);
  };
  m.decode = [&](size_t i, const uint8_t* wire, size_t bytes, uint64_t seq, char* dst) {
    cpu::ExpertContext& ctx = hh.expert[i];
    if (mode == DispatchMode::kRows) {
      return codec_->dispatch_decode(wire, bytes, hh.recv_rows[i], row_elems, dtype, seq, dst,
                                     &ctx);
    }
    LSHMOE_RETURN_IF_ERROR(codec_->dispatch_decode_slots(wire, bytes, hh.recv_rows[i], row_elems,
                                                         dtype, seq, dst, &ctx));
    hh.used_rows[i] = ctx.shape.used_slots;
    return LSHMOE_SUCCESS;
  };
  LSHMOE_RETURN_IF_ERROR(move_parts(m));
  *handle_out = std::move(h);
  return LSHMOE_SUCCESS;
}

// Each later step of a pair travels in the shape its dispatch travelled in:
// towards the expert (the backward of the combine) or back to the origin
// (the combine and the backward of the dispatch).
Status Engine::pair_step(HostHandle* h, PairStage from, const char* what, bool to_expert,
                         const void* in, void* out, PartMoves* m) {
  LSHMOE_RETURN_IF_ERROR(check_usable());
  const size_t parts = size_t(world_size()) * h->experts;
  if (h->origin.size() != parts) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH, "%s: the handle belongs to another communicator",
                what);
  }
  const std::vector<size_t>& origin_rows = h->origin_offsets;
  const std::vector<size_t>& expert_rows = h->expert_offsets;
  const size_t in_rows = (to_expert ? origin_rows : expert_rows).back();
  const size_t out_rows = (to_expert ? expert_rows : origin_rows).back();
  if ((in_rows > 0 && in == nullptr) || (out_rows > 0 && out == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s: %zu rows in and %zu out, but a buffer is NULL",
                what, in_rows, out_rows);
  }
  LSHMOE_RETURN_IF_ERROR(advance_stage(h, from, what));
  // A message's kind for the sizes: the slots of a combine, whichever way.
  *m = PartMoves(parts, h->experts, what, /*counts_as_dispatch=*/false);
  m->row_bytes = h->row_elems * dtype_size(h->dtype);
  m->in = static_cast<const char*>(in);
  m->out = static_cast<char*>(out);
  m->in_rows = to_expert ? &origin_rows : &expert_rows;
  m->out_rows = to_expert ? &expert_rows : &origin_rows;
  for (size_t i = 0; i < parts; ++i) {
    const cpu::PairShape& sender = to_expert ? h->origin[i].shape : h->expert[i].shape;
    const cpu::PairShape& receiver = to_expert ? h->expert[i].shape : h->origin[i].shape;
    m->send_bytes[i] = sender.wire_bytes(LSHMOE_COMBINE);
    m->send_coded[i] = sender.compressed;
    m->send_logical[i] = sender.logical_bytes();
    m->recv_bytes[i] = receiver.wire_bytes(LSHMOE_COMBINE);
    m->recv_coded[i] = receiver.compressed;
  }
  return LSHMOE_SUCCESS;
}

Status Engine::combine(Handle* handle, const void* expert_out, void* result, void*) {
  auto* h = static_cast<HostHandle*>(handle);  // the API pairs a handle with its communicator
  if (h == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine: the handle is NULL");
  PartMoves m;
  LSHMOE_RETURN_IF_ERROR(
      pair_step(h, PairStage::kDispatched, "combine", false, expert_out, result, &m));
  const bool slots = h->mode == DispatchMode::kCentroids;
  m.encode = [&](size_t i, const char* rows, uint8_t* wire, size_t bytes, uint64_t seq) {
    return slots ? codec_->combine_encode_slots(h->expert[i], rows, seq, wire, bytes)
                 : codec_->combine_encode(h->expert[i], rows, seq, wire, bytes);
  };
  m.decode = [&](size_t i, const uint8_t* wire, size_t bytes, uint64_t seq, char* dst) {
    return codec_->combine_decode(h->origin[i], wire, bytes, seq, dst);
  };
  return move_parts(m);
}

Status Engine::combine_backward(Handle* handle, const void* grad_out, void* grad_expert_out,
                                void*) {
  auto* h = static_cast<HostHandle*>(handle);
  if (h == nullptr)
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine backward: the handle is NULL");
  PartMoves m;
  LSHMOE_RETURN_IF_ERROR(
      pair_step(h, PairStage::kCombined, "combine backward", true, grad_out, grad_expert_out, &m));
  const bool slots = h->mode == DispatchMode::kCentroids;
  m.encode = [&](size_t i, const char* rows, uint8_t* wire, size_t bytes, uint64_t seq) {
    return codec_->combine_backward_encode(&h->origin[i], rows, seq, wire, bytes);
  };
  m.decode = [&](size_t i, const uint8_t* wire, size_t bytes, uint64_t seq, char* dst) {
    return codec_->combine_backward_decode(h->expert[i], wire, bytes, seq, dst, slots);
  };
  return move_parts(m);
}

Status Engine::dispatch_backward(Handle* handle, const void* grad_expert_in, void* grad_in, void*) {
  auto* h = static_cast<HostHandle*>(handle);
  if (h == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch backward: the handle is NULL");
  }
  PartMoves m;
  LSHMOE_RETURN_IF_ERROR(pair_step(h, PairStage::kCombineBackward, "dispatch backward", false,
                                   grad_expert_in, grad_in, &m));
  const bool slots = h->mode == DispatchMode::kCentroids;
  m.encode = [&](size_t i, const char* rows, uint8_t* wire, size_t bytes, uint64_t seq) {
    return codec_->dispatch_backward_encode(h->expert[i], rows, seq, wire, bytes, slots);
  };
  m.decode = [&](size_t i, const uint8_t* wire, size_t bytes, uint64_t seq, char* dst) {
    return codec_->dispatch_backward_decode(h->origin[i], wire, bytes, seq, dst);
  };
  return move_parts(m);
}

}  // namespace lshmoe::exchange
