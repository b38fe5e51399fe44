// The compressed all-to-all on device buffers over an existing NCCL
// communicator: the CUDA codec encodes every outgoing message in one batch,
// a group of ncclSend/ncclRecv moves the wire bytes, and the codec decodes,
// all enqueued on the caller's stream (no host synchronisation). Sizes come
// from the plan, as in the host engine; the message to self is copied.
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "codec/cuda/batch.h"
#include "codec/cuda/cuda_codec.h"
#include "codec/cuda/device_arena.h"
#include "common/config.h"
#include "common/dtype.h"
#include "exchange/exchange.h"
#include "exchange/handle_pool.h"
#include "transport/nccl/nccl_ops.h"

namespace lshmoe::exchange {

// A device dispatch awaiting its combine: the batch contexts of both halves.
struct DeviceHandle : Handle {
  cuda::BatchContext origin, expert;
  HandleCapacity served;  // the largest dispatch its contexts have held
};

class NcclEngine final : public Exchange {
 public:
  // `comm` stays the caller's: it is used, never destroyed, and only
  // through `ops` (copied).
  static Status create(const Config& config, const transport::NcclOps& ops, ncclComm_t comm,
                       std::unique_ptr<NcclEngine>* out);
  ~NcclEngine() override;

  Memory memory() const override { return Memory::kDevice; }
  int rank() const override { return rank_; }
  int world_size() const override { return world_; }
  // Parts (ranks x experts) are the CUDA codec's batch: at most 64 for now.
  Status expert_rows(const size_t* recv_rows, size_t experts, size_t row_elems, DType dtype,
                     DispatchMode mode, size_t* out) const override;
  Status dispatch(const void* send, const size_t* send_rows, void* recv, const size_t* recv_rows,
                  size_t experts, size_t row_elems, DType dtype, DispatchMode mode, void* stream,
                  std::unique_ptr<Handle>* out) override;
  Status combine(Handle* handle, const void* expert_out, void* out, void* stream) override;
  Status assignment(const Handle& handle, size_t part, uint32_t* slots) const override;
  Status combine_backward(Handle* handle, const void* grad_out, void* grad_expert_out,
                          void* stream) override;
  Status dispatch_backward(Handle* handle, const void* grad_expert_in, void* grad_in,
                           void* stream) override;
  // The counts stay on the device: unsupported.
  Status used_rows(const Handle& handle, size_t* out) const override;
  // Reading the energies waits for the device.
  Status stats(lshmoe_stats_t* out) const override;
  // Synchronises the stream; the first corrupt message the decoders found.
  Status check(void* stream) override;
  // A released handle's device contexts serve a later dispatch, so that
  // steady training allocates no device memory per step. Work queued with
  // the handle stays ordered before that dispatch (one stream per
  // communicator).
  void release(std::unique_ptr<Handle> handle) override;

 private:
  NcclEngine() = default;
  // Wire offsets (16-byte aligned) of the per-peer messages and their total.
  Status layout(const std::vector<size_t>& rows, size_t row_elems, DType dtype, lshmoe_kind_t kind,
                std::vector<size_t>* offsets, std::vector<size_t>* bytes, size_t* total) const;
  void count(const std::vector<size_t>& rows, const std::vector<size_t>& bytes, size_t experts,
             size_t row_elems, DType dtype, bool dispatch);
  // Per peer, its parts' region of each wire buffer (the parts to self copied).
  Status exchange(const std::vector<size_t>& send_at, const std::vector<size_t>& send_bytes,
                  const std::vector<size_t>& recv_at, const std::vector<size_t>& recv_bytes,
                  size_t experts, void* stream);
  // The parts that travel raw whatever their plan (those to self).
  const uint8_t* keep_raw(size_t experts);
  Status reserve(size_t send_total, size_t recv_total, void* stream);
  std::unique_ptr<DeviceHandle> take_handle(const HandleCapacity& need);
  // A step of a pair after its dispatch: checks and advances its stage,
  // sizes the messages of `kind` (towards the experts or back), encodes,
  // moves and decodes them.
  using Encode = std::function<Status(uint64_t op, void* wire, const size_t* offsets)>;
  using Decode = std::function<Status(uint64_t op, const void* wire, const size_t* offsets)>;
  Status pair_step(DeviceHandle* h, PairStage from, const char* what, lshmoe_kind_t kind,
                   bool to_expert, const Encode& encode, const Decode& decode, void* stream);
  Status dispatch_into(DeviceHandle* h, const void* send, const size_t* send_rows, void* recv,
                       const size_t* recv_rows, size_t experts, size_t row_elems, DType dtype,
                       DispatchMode mode, void* stream);

  Config config_;
  transport::NcclOps nccl_{};
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, world_ = 0;
  std::unique_ptr<cuda::CudaCodec> codec_;
  std::vector<uint8_t> keep_raw_;             // per part: those to self
  cuda::DeviceBuffer send_wire_, recv_wire_;  // staging, reused across calls
  uint64_t next_operation_ = 0;
  lshmoe_stats_t stats_{};
  std::vector<std::unique_ptr<DeviceHandle>> spare_handles_;
};

}  // namespace lshmoe::exchange
