// The compressed all-to-all over host buffers: one dispatch (rows out to the
// experts) and, for each, one combine (expert outputs back), between all
// ranks of a UCX worker. Every message's treatment (compressed or raw) and
// byte size follow from facts both of its ends know (row count, row length,
// dtype, configuration), so no sizes are exchanged. Messages to self are
// copied, never compressed.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "common/config.h"
#include "common/dtype.h"
#include "exchange/exchange.h"
#include "lshmoe/lshmoe.h"
#include "transport/ucx/ucx_mesh.h"

namespace lshmoe::exchange {

// A host dispatch awaiting its combine: per peer, what the two halves of
// each pair remember.
struct HostHandle : Handle {
  std::vector<size_t> expert_rows;  // rows the expert side got from each part
  std::vector<size_t> used_rows;    // of those, the ones holding data
  // Row offsets of each part: in the origin's buffers (send, out, the
  // gradients of both) and in the expert's (recv, expert_out, theirs).
  std::vector<size_t> origin_offsets, expert_offsets;
  std::vector<cpu::OriginContext> origin;
  std::vector<cpu::ExpertContext> expert;
};

class Engine final : public Exchange {
 public:
  static Status create(const Config& config, std::unique_ptr<transport::UcxMesh> mesh,
                       std::unique_ptr<Engine>* out);
  ~Engine() override;  // prints the counters with LSHMOE_STATS=1

  Memory memory() const override { return Memory::kHost; }
  int rank() const override { return mesh_->rank(); }
  int world_size() const override { return mesh_->world_size(); }
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
  Status used_rows(const Handle& handle, size_t* out) const override;
  Status stats(lshmoe_stats_t* out) const override;
  Status check(void*) override { return check_usable(); }
  // Keeps the handle's contexts (residuals, assignments) for a later
  // dispatch, up to kSpareHandles of them.
  void release(std::unique_ptr<Handle> handle) override;

 private:
  Engine(const Config& config, std::unique_ptr<cpu::CpuCodec> codec,
         std::unique_ptr<transport::UcxMesh> mesh);
  // Fails fast once a transport error has broken the communicator.
  Status check_usable() const;
  Status finish(Status status);  // records a transport failure
  // Waits for the posted requests, decoding receives as they land; `posting`
  // is how posting them went (a failure is returned once the rest is over).
  Status complete(Status posting, const std::function<Status(size_t)>& on_receive);
  uint8_t* stage(std::vector<std::vector<uint8_t>>& buffers, int peer, size_t bytes);
  // One collective step over every part of a pair: each part's message
  // goes from `in` (rows at in_rows offsets) to `out`, encoded by `encode`
  // where send_coded, decoded by `decode` where recv_coded, raw otherwise.
  struct PartMoves {
    PartMoves() = default;
    PartMoves(size_t parts, size_t experts_per_peer, const char* step, bool dispatch_stats)
        : what(step),
          experts(experts_per_peer),
          counts_as_dispatch(dispatch_stats),
          send_bytes(parts),
          recv_bytes(parts),
          send_logical(parts),
          send_coded(parts),
          recv_coded(parts) {}
    const char* what = "";  // names the step in errors
    size_t experts = 1;
    bool counts_as_dispatch = false;
    size_t row_bytes = 0;
    const char* in = nullptr;
    char* out = nullptr;
    const std::vector<size_t>* in_rows = nullptr;  // per part, and the total last
    const std::vector<size_t>* out_rows = nullptr;
    std::vector<size_t> send_bytes, recv_bytes, send_logical;
    std::vector<bool> send_coded, recv_coded;
    std::function<Status(size_t part, const char* rows, uint8_t* wire, size_t bytes, uint64_t seq)>
        encode;
    std::function<Status(size_t part, const uint8_t* wire, size_t bytes, uint64_t seq, char* out)>
        decode;
  };
  Status move_parts(const PartMoves& moves);
  // Checks a handle and its buffers for a step after the dispatch, advances
  // its stage, and sizes that step's messages (towards the expert or back).
  Status pair_step(HostHandle* h, PairStage from, const char* what, bool to_expert, const void* in,
                   void* out, PartMoves* moves);
  // A spare handle, its buffers kept and its state reset, or a new one.
  std::unique_ptr<HostHandle> reuse_handle();

  Config config_;
  std::unique_ptr<cpu::CpuCodec> codec_;
  std::unique_ptr<transport::UcxMesh> mesh_;
  transport::UcxWorker* worker_;  // the mesh's
  uint32_t next_operation_ = 0;
  Status broken_ = LSHMOE_SUCCESS;
  std::vector<std::vector<uint8_t>> send_stage_, recv_stage_;  // per peer, reused
  std::vector<transport::UcxWorker::Request> requests_;
  // Released handles: a dispatch reuses their residual buffers instead of
  // allocating (and zeroing) a message's worth of memory each time.
  static constexpr size_t kSpareHandles = 8;
  std::vector<std::unique_ptr<HostHandle>> spare_handles_;
  lshmoe_stats_t stats_{};
};

}  // namespace lshmoe::exchange
