#include "exchange/nccl_engine.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "common/stats.h"

namespace lshmoe::exchange {
namespace {

size_t align16(size_t x) {
  return (x + 15) & ~size_t(15);
}

}  // namespace

Status NcclEngine::create(const Config& config, const transport::NcclOps& ops, ncclComm_t comm,
                          std::unique_ptr<NcclEngine>* out) {
  if (comm == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "nccl exchange: a communicator is required");
  }
  std::unique_ptr<NcclEngine> e(new NcclEngine());
  e->config_ = config;
  e->nccl_ = ops;
  e->comm_ = comm;
  ncclResult_t r = ops.comm_user_rank(comm, &e->rank_);
  if (r != ncclSuccess) return transport::nccl_failure(ops, "ncclCommUserRank", r);
  r = ops.comm_count(comm, &e->world_);
  if (r != ncclSuccess) return transport::nccl_failure(ops, "ncclCommCount", r);
  if (e->world_ > cuda::kMaxSegments) {
    return fail(LSHMOE_ERR_UNSUPPORTED, "nccl exchange: %d ranks, at most %d for now", e->world_,
                cuda::kMaxSegments);
  }
  LSHMOE_RETURN_IF_ERROR(cuda::CudaCodec::create(config, &e->codec_));
  *out = std::move(e);
  return LSHMOE_SUCCESS;
}

NcclEngine::~NcclEngine() {
  if (config_.stats && codec_) {  // a failed create() has no codec
    const std::string who = "device communicator rank " + std::to_string(rank_);
    lshmoe_stats_t s;
    if (stats(&s) == LSHMOE_SUCCESS) report_stats(config_, who.c_str(), s);
  }
}

const uint8_t* NcclEngine::keep_raw(size_t experts) {
  keep_raw_.assign(size_t(world_) * experts, 0);
  for (size_t e = 0; e < experts; ++e) keep_raw_[size_t(rank_) * experts + e] = 1;
  return keep_raw_.data();
}

Status NcclEngine::layout(const std::vector<size_t>& rows, size_t row_elems, DType dtype,
                          lshmoe_kind_t kind, std::vector<size_t>* offsets,
                          std::vector<size_t>* bytes, size_t* total) const {
  offsets->resize(rows.size());
  bytes->resize(rows.size());
  *total = 0;
  for (size_t i = 0; i < rows.size(); ++i) {
    LSHMOE_RETURN_IF_ERROR(
        codec_->message_bytes(rows[i], row_elems, dtype, keep_raw_[i] != 0, kind, &(*bytes)[i]));
    (*offsets)[i] = *total;
    *total += align16((*bytes)[i]);
  }
  return LSHMOE_SUCCESS;
}

void NcclEngine::count(const std::vector<size_t>& rows, const std::vector<size_t>& bytes,
                       size_t experts, size_t row_elems, DType dtype, bool dispatch) {
  for (size_t i = 0; i < rows.size(); ++i) {
    const size_t logical = rows[i] * row_elems * dtype_size(dtype);
    if (int(i / experts) == rank_ || logical == 0) continue;
    count_sent(&stats_, logical, bytes[i], dispatch, bytes[i] != logical);
  }
}

Status NcclEngine::stats(lshmoe_stats_t* out) const {
  *out = stats_;
  if (!codec_) return fail(LSHMOE_ERR_INTERNAL, "nccl exchange: no codec");
  return codec_->read_energies(&out->input_energy, &out->residual_energy);
}

Status NcclEngine::reserve(size_t send_total, size_t recv_total, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  LSHMOE_RETURN_IF_ERROR(send_wire_.ensure(send_total, s));
  return recv_wire_.ensure(recv_total, s);
}

namespace {

// Peer p's region of a wire laid out part by part: its parts are
// consecutive, and both ends lay them out alike (the same rows per part),
// padding included.
struct Region {
  size_t at = 0, bytes = 0;
};

Region region(const std::vector<size_t>& at, const std::vector<size_t>& bytes, size_t experts,
              int peer) {
  const size_t first = size_t(peer) * experts, last = first + experts - 1;
  size_t used = 0;
  for (size_t i = first; i <= last; ++i) used += bytes[i];
  if (used == 0) return {};
  return {at[first], at[last] + bytes[last] - at[first]};
}

}  // namespace

Status NcclEngine::exchange(const std::vector<size_t>& send_at,
                            const std::vector<size_t>& send_bytes,
                            const std::vector<size_t>& recv_at,
                            const std::vector<size_t>& recv_bytes, size_t experts, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  char* out = send_wire_.as<char>();
  char* in = recv_wire_.as<char>();
  ncclResult_t r = nccl_.group_start();
  if (r != ncclSuccess) return transport::nccl_failure(nccl_, "ncclGroupStart", r);
  for (int p = 0; p < world_ && r == ncclSuccess; ++p) {
    if (p == rank_) continue;
    const Region to = region(send_at, send_bytes, experts, p);
    const Region from = region(recv_at, recv_bytes, experts, p);
    if (to.bytes > 0) r = nccl_.send(out + to.at, to.bytes, ncclUint8, p, comm_, s);
    if (r == ncclSuccess && from.bytes > 0) {
      r = nccl_.recv(in + from.at, from.bytes, ncclUint8, p, comm_, s);
    }
  }
  const ncclResult_t end = nccl_.group_end();
  if (r != ncclSuccess) return transport::nccl_failure(nccl_, "ncclSend/ncclRecv", r);
  if (end != ncclSuccess && end != ncclInProgress) {
    return transport::nccl_failure(nccl_, "ncclGroupEnd", end);
  }
  // A non-blocking communicator answers ncclInProgress while it is still
  // enqueueing in the background: the decoders may go on the stream only
  // once the transfers are there.
  ncclResult_t state = end;
  while (state == ncclInProgress) {
    const ncclResult_t q = nccl_.comm_get_async_error(comm_, &state);
    if (q != ncclSuccess) return transport::nccl_failure(nccl_, "ncclCommGetAsyncError", q);
  }
  if (state != ncclSuccess) {
    return transport::nccl_failure(nccl_, "ncclGroupEnd (non-blocking)", state);
  }
  const Region self_out = region(send_at, send_bytes, experts, rank_);
  const Region self_in = region(recv_at, recv_bytes, experts, rank_);
  if (self_out.bytes > 0) {
    const cudaError_t e = cudaMemcpyAsync(in + self_in.at, out + self_out.at, self_out.bytes,
                                          cudaMemcpyDeviceToDevice, s);
    if (e != cudaSuccess) {
      return fail(LSHMOE_ERR_INTERNAL, "nccl exchange: copy to self: %s", cudaGetErrorString(e));
    }
  }
  return LSHMOE_SUCCESS;
}

std::unique_ptr<DeviceHandle> NcclEngine::take_handle(const HandleCapacity& need) {
  std::vector<HandleCapacity> spares;
  for (const auto& h : spare_handles_) spares.push_back(h->served);
  const size_t pick = pick_spare(spares, need);
  if (pick == spares.size()) return std::make_unique<DeviceHandle>();
  std::unique_ptr<DeviceHandle> h = std::move(spare_handles_[pick]);
  spare_handles_.erase(spare_handles_.begin() + std::ptrdiff_t(pick));
  h->stage = PairStage::kDispatched;
  return h;
}

void NcclEngine::release(std::unique_ptr<Handle> handle) {
  if (handle) spare_handles_.emplace_back(static_cast<DeviceHandle*>(handle.release()));
}

Status NcclEngine::used_rows(const Handle&, size_t*) const {
  return fail(LSHMOE_ERR_UNSUPPORTED,
              "handle_used_rows: a device communicator keeps the counts on the device");
}

namespace {

// The CUDA codec encodes at most kMaxSegments messages per batch: one per part.
Status parts_fit(size_t experts, int world) {
  if (experts >= 1 && size_t(world) * experts <= size_t(cuda::kMaxSegments)) return LSHMOE_SUCCESS;
  return fail(LSHMOE_ERR_UNSUPPORTED,
              "device communicators take at most %d parts (ranks x experts) for now: %d ranks x "
              "%zu experts",
              cuda::kMaxSegments, world, experts);
}

}  // namespace

Status NcclEngine::expert_rows(const size_t* recv_rows, size_t experts, size_t row_elems,
                               DType dtype, DispatchMode mode, size_t* out) const {
  LSHMOE_RETURN_IF_ERROR(parts_fit(experts, world_));
  if (recv_rows == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "expert_rows: recv_rows and out are required");
  }
  for (size_t i = 0; i < size_t(world_) * experts; ++i) {
    const int p = int(i / experts);
    lshmoe_plan_t plan;
    LSHMOE_RETURN_IF_ERROR(codec_->plan(recv_rows[i], row_elems, dtype, &plan));
    const bool slots = mode == DispatchMode::kCentroids && plan.compressed && p != rank_;
    out[i] = slots ? plan.slots : recv_rows[i];
  }
  return LSHMOE_SUCCESS;
}

Status NcclEngine::dispatch(const void* send, const size_t* send_rows, void* recv,
                            const size_t* recv_rows, size_t experts, size_t row_elems, DType dtype,
                            DispatchMode mode, void* stream, std::unique_ptr<Handle>* out) {
  LSHMOE_RETURN_IF_ERROR(parts_fit(experts, world_));
  if (send_rows == nullptr || recv_rows == nullptr || out == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch: row counts and a handle are required");
  }
  const size_t parts = size_t(world_) * experts;
  for (size_t e = 0; e < experts; ++e) {
    const size_t self = size_t(rank_) * experts + e;
    if (send_rows[self] != recv_rows[self]) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                  "dispatch: rank %d sends %zu rows to its own expert %zu but expects %zu", rank_,
                  send_rows[self], e, recv_rows[self]);
    }
  }
  HandleCapacity need;
  for (size_t i = 0; i < parts; ++i) {
    need.origin_rows += send_rows[i];
    need.expert_rows += recv_rows[i];
  }
  need.origin_bytes = need.origin_rows * row_elems * dtype_size(dtype);
  std::unique_ptr<DeviceHandle> h = take_handle(need);
  // On failure the handle goes back to the pool: its memory may still be
  // in use by queued work, and freeing it would wait for the device.
  const Status s = dispatch_into(h.get(), send, send_rows, recv, recv_rows, experts, row_elems,
                                 dtype, mode, stream);
  if (s != LSHMOE_SUCCESS) {
    release(std::move(h));
    return s;
  }
  h->served.grow_to(need);
  *out = std::move(h);
  return LSHMOE_SUCCESS;
}

Status NcclEngine::dispatch_into(DeviceHandle* h, const void* send, const size_t* send_rows,
                                 void* recv, const size_t* recv_rows, size_t experts,
                                 size_t row_elems, DType dtype, DispatchMode mode, void* stream) {
  const size_t parts = size_t(world_) * experts;
  h->mode = mode;
  h->row_elems = row_elems;
  h->dtype = dtype;
  h->experts = experts;
  h->send_rows.assign(send_rows, send_rows + parts);
  h->recv_rows.assign(recv_rows, recv_rows + parts);
  const uint8_t* raw = keep_raw(experts);
  std::vector<size_t> send_at, send_bytes, recv_at, recv_bytes;
  size_t send_total = 0, recv_total = 0;
  LSHMOE_RETURN_IF_ERROR(
      layout(h->send_rows, row_elems, dtype, LSHMOE_DISPATCH, &send_at, &send_bytes, &send_total));
  LSHMOE_RETURN_IF_ERROR(
      layout(h->recv_rows, row_elems, dtype, LSHMOE_DISPATCH, &recv_at, &recv_bytes, &recv_total));
  LSHMOE_RETURN_IF_ERROR(reserve(send_total, recv_total, stream));
  const uint64_t op = next_operation_++;
  LSHMOE_RETURN_IF_ERROR(codec_->dispatch_encode(send, send_rows, parts, row_elems, dtype, op,
                                                 send_wire_.as<void>(), send_at.data(), &h->origin,
                                                 stream, raw));
  LSHMOE_RETURN_IF_ERROR(exchange(send_at, send_bytes, recv_at, recv_bytes, experts, stream));
  count(h->send_rows, send_bytes, experts, row_elems, dtype, true);
  LSHMOE_RETURN_IF_ERROR(
      mode == DispatchMode::kCentroids
          ? codec_->dispatch_decode_slots(recv_wire_.as<void>(), recv_at.data(), recv_rows, parts,
                                          row_elems, dtype, op, recv, &h->expert, stream, raw)
          : codec_->dispatch_decode(recv_wire_.as<void>(), recv_at.data(), recv_rows, parts,
                                    row_elems, dtype, op, recv, &h->expert, stream, raw));
  return LSHMOE_SUCCESS;
}

Status NcclEngine::assignment(const Handle&, size_t, uint32_t*) const {
  return fail(LSHMOE_ERR_UNSUPPORTED,
              "handle_assignment: a device communicator keeps its assignments on the device");
}

Status NcclEngine::pair_step(DeviceHandle* h, PairStage from, const char* what, lshmoe_kind_t kind,
                             bool to_expert, const Encode& encode, const Decode& decode,
                             void* stream) {
  LSHMOE_RETURN_IF_ERROR(advance_stage(h, from, what));
  keep_raw(h->experts);  // the layout's rule, as at the dispatch
  // Each later step travels in the shape its dispatch did: towards the
  // experts (the combine's backward) or back to the origins.
  const std::vector<size_t>& sent = to_expert ? h->send_rows : h->recv_rows;
  const std::vector<size_t>& received = to_expert ? h->recv_rows : h->send_rows;
  std::vector<size_t> send_at, send_bytes, recv_at, recv_bytes;
  size_t send_total = 0, recv_total = 0;
  LSHMOE_RETURN_IF_ERROR(
      layout(sent, h->row_elems, h->dtype, kind, &send_at, &send_bytes, &send_total));
  LSHMOE_RETURN_IF_ERROR(
      layout(received, h->row_elems, h->dtype, kind, &recv_at, &recv_bytes, &recv_total));
  LSHMOE_RETURN_IF_ERROR(reserve(send_total, recv_total, stream));
  const uint64_t op = next_operation_++;
  LSHMOE_RETURN_IF_ERROR(encode(op, send_wire_.as<void>(), send_at.data()));
  LSHMOE_RETURN_IF_ERROR(exchange(send_at, send_bytes, recv_at, recv_bytes, h->experts, stream));
  count(sent, send_bytes, h->experts, h->row_elems, h->dtype, false);
  return decode(op, recv_wire_.as<void>(), recv_at.data());
}

Status NcclEngine::combine(Handle* handle, const void* expert_out, void* out, void* stream) {
  auto* h = static_cast<DeviceHandle*>(handle);  // the API pairs a handle with its communicator
  const bool slots = h != nullptr && h->mode == DispatchMode::kCentroids;
  return pair_step(
      h, PairStage::kDispatched, "combine", LSHMOE_COMBINE, false,
      [&](uint64_t op, void* wire, const size_t* at) {
        return slots ? codec_->combine_encode_slots(h->expert, expert_out, op, wire, at, stream)
                     : codec_->combine_encode(h->expert, expert_out, op, wire, at, stream);
      },
      [&](uint64_t op, const void* wire, const size_t* at) {
        return codec_->combine_decode(h->origin, wire, at, op, out, stream);
      },
      stream);
}

Status NcclEngine::combine_backward(Handle* handle, const void* grad_out, void* grad_expert_out,
                                    void* stream) {
  auto* h = static_cast<DeviceHandle*>(handle);
  const bool slots = h != nullptr && h->mode == DispatchMode::kCentroids;
  return pair_step(
      h, PairStage::kCombined, "combine backward", LSHMOE_COMBINE_GRAD, true,
      [&](uint64_t op, void* wire, const size_t* at) {
        return codec_->combine_backward_encode(h->origin, grad_out, op, wire, at, stream);
      },
      [&](uint64_t op, const void* wire, const size_t* at) {
        return codec_->combine_backward_decode(h->expert, wire, at, op, grad_expert_out, slots,
                                               stream);
      },
      stream);
}

Status NcclEngine::dispatch_backward(Handle* handle, const void* grad_expert_in, void* grad_in,
                                     void* stream) {
  auto* h = static_cast<DeviceHandle*>(handle);
  const bool slots = h != nullptr && h->mode == DispatchMode::kCentroids;
  return pair_step(
      h, PairStage::kCombineBackward, "dispatch backward", LSHMOE_DISPATCH_GRAD, false,
      [&](uint64_t op, void* wire, const size_t* at) {
        return codec_->dispatch_backward_encode(h->expert, grad_expert_in, op, wire, at, slots,
                                                stream);
      },
      [&](uint64_t op, const void* wire, const size_t* at) {
        return codec_->dispatch_backward_decode(h->origin, wire, at, op, grad_in, stream);
      },
      stream);
}

Status NcclEngine::check(void* stream) {
  return codec_->check_errors(stream);
}

}  // namespace lshmoe::exchange
