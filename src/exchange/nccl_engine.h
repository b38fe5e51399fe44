// The compressed all-to-all on device buffers over an existing NCCL
// communicator: the CUDA codec encodes every outgoing message in one batch,
// a group of ncclSend/ncclRecv moves the wire bytes, and the codec decodes,
// all enqueued on the caller's stream (no host synchronisation). Sizes come
// from the plan, as in the host engine; the message to self is copied.
#pragma once

#include <nccl.h>

#include <memory>
#include <vector>

#include "codec/cuda/batch.h"
#include "codec/cuda/cuda_codec.h"
#include "codec/cuda/device_arena.h"
#include "common/config.h"
#include "common/dtype.h"
#include "exchange/handle_pool.h"

namespace lshmoe::exchange {

struct DeviceHandle {
  bool centroids = false;  // the paper's mode: the expert got slots
  size_t row_elems = 0;
  DType dtype = DType::kFloat32;
  bool combined = false;
  std::vector<size_t> send_rows, recv_rows;
  cuda::BatchContext origin, expert;
  HandleCapacity served;  // the largest dispatch its contexts have held
};

class NcclEngine {
 public:
  // `comm` stays the caller's: it is used, never destroyed.
  static Status create(const Config& config, ncclComm_t comm, std::unique_ptr<NcclEngine>* out);
  ~NcclEngine();

  int rank() const { return rank_; }
  int world_size() const { return world_; }

  // Rows the expert side gets from each peer: recv_rows[p], or in centroid
  // mode the slot count of a compressed message.
  Status expert_rows(const size_t* recv_rows, size_t row_elems, DType dtype, bool centroids,
                     size_t* out) const;
  Status dispatch(const void* send, const size_t* send_rows, void* recv, const size_t* recv_rows,
                  size_t row_elems, DType dtype, bool centroids, void* stream,
                  std::unique_ptr<DeviceHandle>* out);
  Status combine(DeviceHandle* handle, const void* expert_out, void* out, void* stream);
  // Messages and bytes sent to other ranks, and the energies of the
  // compressed dispatch rows (waits for the device to read them).
  Status stats(lshmoe_stats_t* out) const;
  // A freed handle's device contexts serve a later dispatch, so that steady
  // training allocates no device memory per step. Work queued with the
  // handle stays ordered before that dispatch (one stream per communicator).
  void recycle(std::unique_ptr<DeviceHandle> handle);
  // Synchronises the stream; the first corrupt message the decoders found.
  Status check(void* stream);

 private:
  NcclEngine() = default;
  // Wire offsets (16-byte aligned) of the per-peer messages and their total.
  Status layout(const std::vector<size_t>& rows, size_t row_elems, DType dtype, lshmoe_kind_t kind,
                std::vector<size_t>* offsets, std::vector<size_t>* bytes, size_t* total) const;
  void count(const std::vector<size_t>& rows, const std::vector<size_t>& bytes, size_t row_elems,
             DType dtype, bool dispatch);
  Status exchange(const std::vector<size_t>& send_at, const std::vector<size_t>& send_bytes,
                  const std::vector<size_t>& recv_at, const std::vector<size_t>& recv_bytes,
                  void* stream);
  Status reserve(size_t send_total, size_t recv_total, void* stream);
  std::unique_ptr<DeviceHandle> take_handle(const HandleCapacity& need);
  Status dispatch_into(DeviceHandle* h, const void* send, const size_t* send_rows, void* recv,
                       const size_t* recv_rows, size_t row_elems, DType dtype, bool centroids,
                       void* stream);

  Config config_;
  ncclComm_t comm_ = nullptr;
  int rank_ = 0, world_ = 0;
  std::unique_ptr<cuda::CudaCodec> codec_;
  std::vector<uint8_t> keep_raw_;             // the message to self
  cuda::DeviceBuffer send_wire_, recv_wire_;  // staging, reused across calls
  uint64_t next_operation_ = 0;
  lshmoe_stats_t stats_{};
  std::vector<std::unique_ptr<DeviceHandle>> spare_handles_;
};

}  // namespace lshmoe::exchange
