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

Status Engine::expert_rows(const size_t* recv_rows, size_t row_elems, DType dtype,
                           DispatchMode mode, size_t* out) const {
  if (recv_rows == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "exchange: recv_rows and out are required");
  }
  for (int p = 0; p < world_size(); ++p) {
    lshmoe_plan_t plan;
    LSHMOE_RETURN_IF_ERROR(codec_->plan(recv_rows[p], row_elems, dtype, &plan));
    const bool slots = mode == DispatchMode::kCentroids && plan.compressed && p != rank();
    out[p] = slots ? plan.slots : recv_rows[p];
  }
  return LSHMOE_SUCCESS;
}

Status Engine::dispatch(const void* send, const size_t* send_rows, void* recv,
                        const size_t* recv_rows, size_t row_elems, DType dtype, DispatchMode mode,
                        void*, std::unique_ptr<Handle>* handle_out) {
  LSHMOE_RETURN_IF_ERROR(check_usable());
  if (send_rows == nullptr || recv_rows == nullptr || handle_out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "dispatch: send_rows, recv_rows and a handle output are required");
  }
  const int world = world_size(), me = rank();
  auto h = std::make_unique<HostHandle>();
  h->mode = mode;
  h->row_elems = row_elems;
  h->dtype = dtype;
  h->send_rows.assign(send_rows, send_rows + world);
  h->recv_rows.assign(recv_rows, recv_rows + world);
  h->expert_rows.resize(size_t(world));
  LSHMOE_RETURN_IF_ERROR(expert_rows(recv_rows, row_elems, dtype, mode, h->expert_rows.data()));
  h->used_rows = h->expert_rows;
  h->origin.resize(size_t(world));
  h->expert.resize(size_t(world));
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
  if (h->send_rows[size_t(me)] != recv_rows[me]) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "dispatch: rank %d sends %zu rows to itself but expects %zu", me,
                h->send_rows[size_t(me)], recv_rows[me]);
  }
  std::vector<lshmoe_plan_t> send_plan(static_cast<size_t>(world));
  std::vector<lshmoe_plan_t> recv_plan(static_cast<size_t>(world));
  for (int p = 0; p < world; ++p) {
    LSHMOE_RETURN_IF_ERROR(codec_->plan(recv_rows[p], row_elems, dtype, &recv_plan[size_t(p)]));
    LSHMOE_RETURN_IF_ERROR(
        codec_->plan(h->send_rows[size_t(p)], row_elems, dtype, &send_plan[size_t(p)]));
  }
  const uint32_t op = next_operation_++;

  // Receives first, so every peer's data has a place to land.
  requests_.clear();
  requests_.reserve(size_t(2 * world));
  std::vector<int> request_peer;
  for (int k = 1; k < world; ++k) {
    const int p = (me - k + world) % world;
    const lshmoe_plan_t& plan = recv_plan[size_t(p)];
    if (recv_rows[p] == 0) {
      h->expert[size_t(p)].shape = raw_shape(0, row_elems, dtype);
      continue;
    }
    void* dst = plan.compressed ? static_cast<void*>(stage(recv_stage_, p, plan.dispatch_bytes))
                                : out + recv_off[size_t(p)] * row_bytes;
    requests_.emplace_back();
    request_peer.push_back(p);
    const Status s = worker_->post_receive(p, exchange_tag(p, op), transport::kFullTagMask, dst,
                                           plan.dispatch_bytes, &requests_.back());
    if (s != LSHMOE_SUCCESS) {
      requests_.pop_back();
      worker_->cancel(requests_);
      return finish(s);
    }
  }
  // The message to self is a copy.
  if (recv_rows[me] > 0) {
    memcpy(out + recv_off[size_t(me)] * row_bytes, in + send_off[size_t(me)] * row_bytes,
           recv_rows[me] * row_bytes);
  }
  h->origin[size_t(me)].shape = raw_shape(recv_rows[me], row_elems, dtype);
  h->expert[size_t(me)].shape = raw_shape(recv_rows[me], row_elems, dtype);
  // Encode and send, nearest peer first; progress between encodes keeps the
  // earlier messages moving.
  Status failure = LSHMOE_SUCCESS;
  for (int k = 1; k < world && failure == LSHMOE_SUCCESS; ++k) {
    const int p = (me + k) % world;
    const size_t n = h->send_rows[size_t(p)];
    cpu::OriginContext& ctx = h->origin[size_t(p)];
    if (n == 0) {
      ctx.shape = raw_shape(0, row_elems, dtype);
      continue;
    }
    const lshmoe_plan_t& plan = send_plan[size_t(p)];
    const void* src = in + send_off[size_t(p)] * row_bytes;
    if (plan.compressed) {
      uint8_t* wire = stage(send_stage_, p, plan.dispatch_bytes);
      failure =
          codec_->dispatch_encode(src, n, row_elems, dtype, op, wire, plan.dispatch_bytes, &ctx);
      if (failure != LSHMOE_SUCCESS) break;
      src = wire;
    } else {
      ctx.shape = raw_shape(n, row_elems, dtype);
    }
    count_sent(&stats_, plan.logical_bytes, plan.dispatch_bytes, true, plan.compressed);
    requests_.emplace_back();
    request_peer.push_back(p);
    failure =
        worker_->post_send(p, exchange_tag(me, op), src, plan.dispatch_bytes, &requests_.back());
    if (failure != LSHMOE_SUCCESS) requests_.pop_back();
    worker_->progress();
  }
  // Decode each message as it lands.
  auto on_receive = [&](size_t i) -> Status {
    const int p = request_peer[i];
    const lshmoe_plan_t& plan = recv_plan[size_t(p)];
    cpu::ExpertContext& ctx = h->expert[size_t(p)];
    if (!plan.compressed) {
      ctx.shape = raw_shape(recv_rows[p], row_elems, dtype);
      return LSHMOE_SUCCESS;
    }
    void* dst = out + recv_off[size_t(p)] * row_bytes;
    const uint8_t* wire = recv_stage_[size_t(p)].data();
    const Status s = mode == DispatchMode::kCentroids
                         ? codec_->dispatch_decode_slots(wire, plan.dispatch_bytes, recv_rows[p],
                                                         row_elems, dtype, op, dst, &ctx)
                         : codec_->dispatch_decode(wire, plan.dispatch_bytes, recv_rows[p],
                                                   row_elems, dtype, op, dst, &ctx);
    if (s != LSHMOE_SUCCESS) return fail(s, "dispatch from rank %d: %s", p, last_error());
    if (mode == DispatchMode::kCentroids) h->used_rows[size_t(p)] = ctx.shape.used_slots;
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
  if (h->combined || h->origin.size() != size_t(world_size())) {
    return fail(LSHMOE_ERR_CONTEXT_MISMATCH,
                "combine: the handle was already combined or belongs to another communicator");
  }
  const int world = world_size(), me = rank();
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

  // Receive each peer's answer to what this rank sent it.
  requests_.clear();
  std::vector<int> request_peer;
  for (int k = 1; k < world; ++k) {
    const int p = (me - k + world) % world;
    const cpu::PairShape& shape = h->origin[size_t(p)].shape;
    if (shape.n_rows == 0) continue;
    const size_t bytes = shape.wire_bytes(LSHMOE_COMBINE);
    void* dst = shape.compressed ? static_cast<void*>(stage(recv_stage_, p, bytes))
                                 : out + send_off[size_t(p)] * row_bytes;
    requests_.emplace_back();
    request_peer.push_back(p);
    const Status s = worker_->post_receive(p, exchange_tag(p, op), transport::kFullTagMask, dst,
                                           bytes, &requests_.back());
    if (s != LSHMOE_SUCCESS) {
      requests_.pop_back();
      worker_->cancel(requests_);
      return finish(s);
    }
  }
  if (h->send_rows[size_t(me)] > 0) {
    memcpy(out + send_off[size_t(me)] * row_bytes, in + expert_off[size_t(me)] * row_bytes,
           h->send_rows[size_t(me)] * row_bytes);
  }
  Status failure = LSHMOE_SUCCESS;
  for (int k = 1; k < world && failure == LSHMOE_SUCCESS; ++k) {
    const int p = (me + k) % world;
    const cpu::ExpertContext& ctx = h->expert[size_t(p)];
    if (ctx.shape.n_rows == 0) continue;
    const size_t bytes = ctx.shape.wire_bytes(LSHMOE_COMBINE);
    const void* src = in + expert_off[size_t(p)] * row_bytes;
    if (ctx.shape.compressed) {
      uint8_t* wire = stage(send_stage_, p, bytes);
      failure = h->mode == DispatchMode::kCentroids
                    ? codec_->combine_encode_slots(ctx, src, op, wire, bytes)
                    : codec_->combine_encode(ctx, src, op, wire, bytes);
      if (failure != LSHMOE_SUCCESS) break;
      src = wire;
    }
    count_sent(&stats_, ctx.shape.logical_bytes(), bytes, false, ctx.shape.compressed);
    requests_.emplace_back();
    request_peer.push_back(p);
    failure = worker_->post_send(p, exchange_tag(me, op), src, bytes, &requests_.back());
    if (failure != LSHMOE_SUCCESS) requests_.pop_back();
    worker_->progress();
  }
  auto on_receive = [&](size_t i) -> Status {
    const int p = request_peer[i];
    const cpu::OriginContext& ctx = h->origin[size_t(p)];
    if (!ctx.shape.compressed) return LSHMOE_SUCCESS;
    const Status s = codec_->combine_decode(ctx, recv_stage_[size_t(p)].data(),
                                            ctx.shape.wire_bytes(LSHMOE_COMBINE), op,
                                            out + send_off[size_t(p)] * row_bytes);
    if (s != LSHMOE_SUCCESS) return fail(s, "combine from rank %d: %s", p, last_error());
    return LSHMOE_SUCCESS;
  };
  return complete(failure, on_receive);
}

}  // namespace lshmoe::exchange
