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
  h->combined = false;
  return h;
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
  const std::vector<size_t> send_off = offsets_of(h->send_rows);
  const std::vector<size_t> recv_off = offsets_of(h->expert_rows);
  const size_t row_bytes = row_elems * dtype_size(dtype);
  if ((send_off.back() > 0 && send == nullptr) || (recv_off.back() > 0 && recv == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "dispatch: %zu rows to send and %zu to receive, "
                "but a buffer is NULL",
                send_off.back(), recv_off.back());
  }
  const char* in = static_cast<const char*>(send);
  char* out = static_cast<char*>(recv);

  // Every size is settled before anything is posted.
  for (size_t e = 0; e < E; ++e) {
    const size_t self = size_t(me) * E + e;
    if (h->send_rows[self] != recv_rows[self]) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "dispatch: rank %d sends %zu rows to its own expert %zu but expects %zu", me,
                  h->send_rows[self], e, recv_rows[self]);
    }
  }
  std::vector<lshmoe_plan_t> send_plan(parts), recv_plan(parts);
  std::vector<size_t> send_bytes(parts), recv_bytes(parts);
  std::vector<bool> send_compressed(parts), recv_compressed(parts);
  for (size_t i = 0; i < parts; ++i) {
    LSHMOE_RETURN_IF_ERROR(codec_->plan(recv_rows[i], row_elems, dtype, &recv_plan[i]));
    LSHMOE_RETURN_IF_ERROR(codec_->plan(h->send_rows[i], row_elems, dtype, &send_plan[i]));
    send_bytes[i] = send_plan[i].dispatch_bytes;
    recv_bytes[i] = recv_plan[i].dispatch_bytes;
    send_compressed[i] = send_plan[i].compressed;
    recv_compressed[i] = recv_plan[i].compressed;
    h->origin[i].shape = raw_shape(h->send_rows[i], row_elems, dtype);
    h->expert[i].shape = raw_shape(recv_rows[i], row_elems, dtype);
  }
  const uint32_t op = next_operation_++;

  // Receives first, so every peer's data has a place to land.
  requests_.clear();
  requests_.reserve(size_t(2 * world));
  std::vector<int> request_peer;
  for (int k = 1; k < world; ++k) {
    const int p = (me - k + world) % world;
    const PeerMessage m = peer_message(recv_bytes, recv_compressed, p, E);
    if (m.bytes == 0) continue;
    void* dst = m.staged ? static_cast<void*>(stage(recv_stage_, p, m.bytes))
                         : out + recv_off[size_t(p) * E] * row_bytes;
    requests_.emplace_back();
    request_peer.push_back(p);
    const Status s = worker_->post_receive(p, exchange_tag(p, op), transport::kFullTagMask, dst,
                                           m.bytes, &requests_.back());
    if (s != LSHMOE_SUCCESS) {
      requests_.pop_back();
      worker_->cancel(requests_);
      return finish(s);
    }
  }
  // The message to self is a copy (its parts are contiguous rows).
  const size_t self_rows = send_off[size_t(me + 1) * E] - send_off[size_t(me) * E];
  if (self_rows > 0) {
    memcpy(out + recv_off[size_t(me) * E] * row_bytes, in + send_off[size_t(me) * E] * row_bytes,
           self_rows * row_bytes);
  }
  // Encode and send, nearest peer first; progress between encodes keeps the
  // earlier messages moving.
  Status failure = LSHMOE_SUCCESS;
  for (int k = 1; k < world && failure == LSHMOE_SUCCESS; ++k) {
    const int p = (me + k) % world;
    const PeerMessage m = peer_message(send_bytes, send_compressed, p, E);
    if (m.bytes == 0) continue;
    const void* src = in + send_off[size_t(p) * E] * row_bytes;
    if (m.staged) {
      uint8_t* wire = stage(send_stage_, p, m.bytes);
      size_t at = 0;
      for (size_t i = size_t(p) * E; i < size_t(p + 1) * E && failure == LSHMOE_SUCCESS; ++i) {
        const void* rows = in + send_off[i] * row_bytes;
        if (send_compressed[i]) {
          failure =
              codec_->dispatch_encode(rows, h->send_rows[i], row_elems, dtype, part_seq(op, i, E),
                                      wire + at, send_bytes[i], &h->origin[i]);
        } else if (send_bytes[i] > 0) {
          memcpy(wire + at, rows, send_bytes[i]);
        }
        at += send_bytes[i];
      }
      if (failure != LSHMOE_SUCCESS) break;
      src = wire;
    }
    for (size_t i = size_t(p) * E; i < size_t(p + 1) * E; ++i) {
      if (h->send_rows[i] == 0) continue;
      count_sent(&stats_, send_plan[i].logical_bytes, send_bytes[i], true, send_compressed[i]);
    }
    requests_.emplace_back();
    request_peer.push_back(p);
    failure = worker_->post_send(p, exchange_tag(me, op), src, m.bytes, &requests_.back());
    if (failure != LSHMOE_SUCCESS) requests_.pop_back();
    worker_->progress();
  }
  // Decode each message as it lands, part by part.
  auto on_receive = [&](size_t r) -> Status {
    const int p = request_peer[r];
    if (!peer_message(recv_bytes, recv_compressed, p, E).staged) return LSHMOE_SUCCESS;
    const uint8_t* wire = recv_stage_[size_t(p)].data();
    size_t at = 0;
    for (size_t i = size_t(p) * E; i < size_t(p + 1) * E; ++i) {
      void* dst = out + recv_off[i] * row_bytes;
      if (recv_compressed[i]) {
        cpu::ExpertContext& ctx = h->expert[i];
        const Status s =
            mode == DispatchMode::kCentroids
                ? codec_->dispatch_decode_slots(wire + at, recv_bytes[i], recv_rows[i], row_elems,
                                                dtype, part_seq(op, i, E), dst, &ctx)
                : codec_->dispatch_decode(wire + at, recv_bytes[i], recv_rows[i], row_elems, dtype,
                                          part_seq(op, i, E), dst, &ctx);
        if (s != LSHMOE_SUCCESS) return fail(s, "dispatch from rank %d: %s", p, last_error());
        if (mode == DispatchMode::kCentroids) h->used_rows[i] = ctx.shape.used_slots;
      } else if (recv_bytes[i] > 0) {
        memcpy(dst, wire + at, recv_bytes[i]);
      }
      at += recv_bytes[i];
    }
    return LSHMOE_SUCCESS;
  };
  LSHMOE_RETURN_IF_ERROR(complete(failure, on_receive));
  *handle_out = std::move(h);
  return LSHMOE_SUCCESS;
}

Status Engine::combine(Handle* handle, const void* expert_out, void* result, void*) {
  LSHMOE_RETURN_IF_ERROR(check_usable());
  if (handle == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine: the handle is NULL");
  auto* h = static_cast<HostHandle*>(handle);  // the API pairs a handle with its communicator
  const int world = world_size(), me = rank();
  const size_t E = h->experts, parts = size_t(world) * E;
  if (h->combined || h->origin.size() != parts) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "combine: the handle was already combined or belongs to another communicator");
  }
  const size_t row_bytes = h->row_elems * dtype_size(h->dtype);
  const std::vector<size_t> send_off = offsets_of(h->send_rows);
  const std::vector<size_t> expert_off = offsets_of(h->expert_rows);
  if ((expert_off.back() > 0 && expert_out == nullptr) ||
      (send_off.back() > 0 && result == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "combine: %zu expert rows and %zu result rows, "
                "but a buffer is NULL",
                expert_off.back(), send_off.back());
  }
  const char* in = static_cast<const char*>(expert_out);
  char* out = static_cast<char*>(result);
  const uint32_t op = next_operation_++;
  h->combined = true;  // a handle combines once, whatever happens next
  // Each part answers in the shape its dispatch travelled in.
  std::vector<size_t> answer_bytes(parts), back_bytes(parts);
  std::vector<bool> answer_compressed(parts), back_compressed(parts);
  for (size_t i = 0; i < parts; ++i) {
    answer_bytes[i] = h->expert[i].shape.wire_bytes(LSHMOE_COMBINE);
    answer_compressed[i] = h->expert[i].shape.compressed;
    back_bytes[i] = h->origin[i].shape.wire_bytes(LSHMOE_COMBINE);
    back_compressed[i] = h->origin[i].shape.compressed;
  }

  // Receive each peer's answer to what this rank sent it.
  requests_.clear();
  std::vector<int> request_peer;
  for (int k = 1; k < world; ++k) {
    const int p = (me - k + world) % world;
    const PeerMessage m = peer_message(back_bytes, back_compressed, p, E);
    if (m.bytes == 0) continue;
    void* dst = m.staged ? static_cast<void*>(stage(recv_stage_, p, m.bytes))
                         : out + send_off[size_t(p) * E] * row_bytes;
    requests_.emplace_back();
    request_peer.push_back(p);
    const Status s = worker_->post_receive(p, exchange_tag(p, op), transport::kFullTagMask, dst,
                                           m.bytes, &requests_.back());
    if (s != LSHMOE_SUCCESS) {
      requests_.pop_back();
      worker_->cancel(requests_);
      return finish(s);
    }
  }
  const size_t self_rows = send_off[size_t(me + 1) * E] - send_off[size_t(me) * E];
  if (self_rows > 0) {
    memcpy(out + send_off[size_t(me) * E] * row_bytes, in + expert_off[size_t(me) * E] * row_bytes,
           self_rows * row_bytes);
  }
  Status failure = LSHMOE_SUCCESS;
  for (int k = 1; k < world && failure == LSHMOE_SUCCESS; ++k) {
    const int p = (me + k) % world;
    const PeerMessage m = peer_message(answer_bytes, answer_compressed, p, E);
    if (m.bytes == 0) continue;
    const void* src = in + expert_off[size_t(p) * E] * row_bytes;
    if (m.staged) {
      uint8_t* wire = stage(send_stage_, p, m.bytes);
      size_t at = 0;
      for (size_t i = size_t(p) * E; i < size_t(p + 1) * E && failure == LSHMOE_SUCCESS; ++i) {
        const void* rows = in + expert_off[i] * row_bytes;
        const cpu::ExpertContext& ctx = h->expert[i];
        if (answer_compressed[i]) {
          failure = h->mode == DispatchMode::kCentroids
                        ? codec_->combine_encode_slots(ctx, rows, part_seq(op, i, E), wire + at,
                                                       answer_bytes[i])
                        : codec_->combine_encode(ctx, rows, part_seq(op, i, E), wire + at,
                                                 answer_bytes[i]);
        } else if (answer_bytes[i] > 0) {
          memcpy(wire + at, rows, answer_bytes[i]);
        }
        at += answer_bytes[i];
      }
      if (failure != LSHMOE_SUCCESS) break;
      src = wire;
    }
    for (size_t i = size_t(p) * E; i < size_t(p + 1) * E; ++i) {
      if (h->expert[i].shape.n_rows == 0) continue;
      count_sent(&stats_, h->expert[i].shape.logical_bytes(), answer_bytes[i], false,
                 answer_compressed[i]);
    }
    requests_.emplace_back();
    request_peer.push_back(p);
    failure = worker_->post_send(p, exchange_tag(me, op), src, m.bytes, &requests_.back());
    if (failure != LSHMOE_SUCCESS) requests_.pop_back();
    worker_->progress();
  }
  auto on_receive = [&](size_t r) -> Status {
    const int p = request_peer[r];
    if (!peer_message(back_bytes, back_compressed, p, E).staged) return LSHMOE_SUCCESS;
    const uint8_t* wire = recv_stage_[size_t(p)].data();
    size_t at = 0;
    for (size_t i = size_t(p) * E; i < size_t(p + 1) * E; ++i) {
      void* dst = out + send_off[i] * row_bytes;
      if (back_compressed[i]) {
        const Status s =
            codec_->combine_decode(h->origin[i], wire + at, back_bytes[i], part_seq(op, i, E), dst);
        if (s != LSHMOE_SUCCESS) return fail(s, "combine from rank %d: %s", p, last_error());
      } else if (back_bytes[i] > 0) {
        memcpy(dst, wire + at, back_bytes[i]);
      }
      at += back_bytes[i];
    }
    return LSHMOE_SUCCESS;
  };
  return complete(failure, on_receive);
}

}  // namespace lshmoe::exchange
