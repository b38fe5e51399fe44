// The CPU back end: one message at a time, host memory, the steps of
// docs/design.md "The codec" in order.
#pragma once

#include <atomic>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "codec/cpu/grouping.h"
#include "codec/cpu/kernels.h"
#include "codec/cpu/projection.h"
#include "codec/cpu/refine.h"
#include "codec/cpu/slot_rows.h"
#include "codec/wire_format.h"
#include "common/config.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::cpu {

// What one end of a pair keeps between its two halves: the message's shape
// and how it travelled. Sizes of the pair's messages come from here.
struct PairShape {
  bool valid = false;
  bool compressed = false;
  size_t n_rows = 0;
  size_t row_elems = 0;
  DType dtype = DType::kFloat32;
  size_t slots = 0;
  uint32_t used_slots = 0;

  size_t logical_bytes() const { return n_rows * row_elems * dtype_size(dtype); }
  wire::Layout layout(lshmoe_kind_t kind) const {
    return wire::layout(kind, n_rows, row_elems, dtype, slots);
  }
  size_t wire_bytes(lshmoe_kind_t kind) const {
    return compressed ? layout(kind).total_bytes : logical_bytes();
  }
};

struct OriginContext {
  PairShape shape;
  std::vector<uint32_t> assignment;
  // [n][row_elems] of dtype: the dispatch's residuals x_i - c_a(i) until the
  // combine; after combine_backward_encode, g_i - M_a(i) (holds_gradient).
  std::vector<uint8_t> residual;
  bool holds_gradient = false;
};

struct ExpertContext {
  PairShape shape;
  std::vector<uint32_t> assignment;
};

// A grouping of a pair's n rows into its K slots other than the dispatch's:
// a regrouped combine's own, which the shim keeps at both ends for the
// pair's backward.
struct Grouping {
  std::vector<uint32_t> assignment;
  uint32_t used_slots = 0;
};

class CpuCodec {
 public:
  // Validates `config` (cross-variable rules, ISA availability).
  static Status create(const Config& config, std::unique_ptr<CpuCodec>* out);
  ~CpuCodec();  // prints the counters with LSHMOE_STATS=1

  const Kernels& kernels() const { return *kernels_; }

  Status plan(size_t n_rows, size_t row_elems, DType dtype, lshmoe_plan_t* plan) const;

  // The encoders leave their context invalid (LSHMOE_ERR_CONTEXT_MISMATCH
  // on use) until they succeed; the decoders write nothing on error.
  Status dispatch_encode(const void* rows, size_t n_rows, size_t row_elems, DType dtype,
                         uint64_t seq, void* wire, size_t capacity, OriginContext* ctx);
  Status dispatch_decode(const void* wire, size_t size, size_t n_rows, size_t row_elems,
                         DType dtype, uint64_t expected_seq, void* rows_out, ExpertContext* ctx);
  Status combine_encode(const ExpertContext& ctx, const void* rows, uint64_t seq, void* wire,
                        size_t capacity);

  // Centroid mode (the paper's): the expert gets the slots themselves, not
  // the rows rebuilt from them (plan().slots rows: the used slots, then
  // zeros), and returns one output per slot. Raw messages carry rows, as above.
  Status dispatch_decode_slots(const void* wire, size_t size, size_t n_rows, size_t row_elems,
                               DType dtype, uint64_t expected_seq, void* slots_out,
                               ExpertContext* ctx);
  Status combine_encode_slots(const ExpertContext& ctx, const void* slot_rows, uint64_t seq,
                              void* wire, size_t capacity);
  Status combine_decode(const OriginContext& ctx, const void* wire, size_t size,
                        uint64_t expected_seq, void* rows_out);

  // The combine for messages whose slots may hold rows of several experts
  // (a rank hosting several, a token routed to two of them): the expert
  // outputs are grouped afresh, as a dispatch of theirs (same budget: a
  // dispatch-kind message of n_rows, plan().dispatch_bytes), and the origin
  // rebuilds y_i = Yhat[b(i)] + alpha * r_i with their own assignment b and
  // the dispatch's residual r. Slot means (combine_encode) assume every row
  // of a slot got the same expert; this does not. Counted as a dispatch in
  // the codec's statistics.
  // `kept` (optional) receives the combine's grouping b.
  Status combine_encode_regrouped(const ExpertContext& ctx, const void* rows, uint64_t seq,
                                  void* wire, size_t capacity, Grouping* kept = nullptr);
  Status combine_decode_regrouped(const OriginContext& ctx, const void* wire, size_t size,
                                  uint64_t expected_seq, void* rows_out, Grouping* kept = nullptr);

  // The exact gradient of a compressed pair (docs/training.md), on the
  // contexts of its forward: K rows each way, no hashing. g is the gradient
  // of the combine's output, M_k the mean of g over slot k.
  // combine_backward_encode (origin, after the combine) sends M and keeps
  // g_i - M_a(i) in place of the residual; combine_backward_decode (expert)
  // gives each row M_a(i), or with `slots` each slot |k| M_k (centroid mode:
  // padding slots zero). dispatch_backward_encode (expert) sends S_k, the
  // mean of the input gradients of slot k's rows, or with `slots` the slot's
  // gradient over |k|; dispatch_backward_decode (origin) gives
  // dx_i = S_a(i) + alpha (g_i - M_a(i)). Raw messages carry the gradient
  // rows themselves.
  Status combine_backward_encode(OriginContext* ctx, const void* grad_out, uint64_t seq, void* wire,
                                 size_t capacity);
  Status combine_backward_decode(const ExpertContext& ctx, const void* wire, size_t size,
                                 uint64_t expected_seq, void* grad_rows, bool slots);
  Status dispatch_backward_encode(const ExpertContext& ctx, const void* grad_rows, uint64_t seq,
                                  void* wire, size_t capacity, bool slots);
  Status dispatch_backward_decode(const OriginContext& ctx, const void* wire, size_t size,
                                  uint64_t expected_seq, void* grad_in);

  // A pair the shim keeps after its combine for the exact backward
  // (docs/shim.md "Exact backward"), `combine` its combine's grouping (b,
  // or a copy of the dispatch's when the combine was not regrouped). The
  // backward thread sends two steps of such a pair, the first from the
  // origin, the second back; every message is K slot rows (a combine's
  // size), so a receiver need not know which first step comes:
  // - the backward: kept_combine_backward_* (LSHMOE_COMBINE_GRAD, slot
  //   means M' of g under `combine`, each expert row gets M'_b(j); the
  //   origin keeps g_i - M_a(i) under the dispatch's grouping), then
  //   dispatch_backward_* as for any pair;
  // - a replay of the forward (activation recomputation runs it again on
  //   the backward thread): replay_dispatch_* (a dispatch-kind message
  //   flagged wire::kFlagKeptGrouping: slot means of the recomputed rows
  //   under the kept a, the residuals refreshed), then replay_combine_*
  //   (the same, of the recomputed outputs under `combine`; the origin
  //   rebuilds y_i = Y_b(i) + alpha r_i). The pair is then kept as before.
  Status kept_combine_backward_encode(OriginContext* ctx, const Grouping& combine,
                                      const void* grad_out, uint64_t seq, void* wire,
                                      size_t capacity);
  Status kept_combine_backward_decode(const ExpertContext& ctx, const Grouping& combine,
                                      const void* wire, size_t size, uint64_t expected_seq,
                                      void* grad_rows);
  Status replay_dispatch_encode(OriginContext* ctx, const void* rows, uint64_t seq, void* wire,
                                size_t capacity);
  Status replay_dispatch_decode(const ExpertContext& ctx, const void* wire, size_t size,
                                uint64_t expected_seq, void* rows_out);
  Status replay_combine_encode(const ExpertContext& ctx, const Grouping& combine, const void* rows,
                               uint64_t seq, void* wire, size_t capacity);
  Status replay_combine_decode(const OriginContext& ctx, const Grouping& combine, const void* wire,
                               size_t size, uint64_t expected_seq, void* rows_out);
  // Whether a received first step of a kept pair is a replay (else the
  // combine's backward): which decoder to run; that decoder checks it.
  static bool is_replay(const void* wire, size_t size);

  lshmoe_stats_t stats() const;
  void reset_stats();

 private:
  CpuCodec(const Config& config, const Kernels& kernels, int threads);
  // A message sent raw: exactly `expected` bytes, copied to `out`.
  static Status copy_raw(const char* what, const void* wire, size_t size, size_t expected,
                         void* out);
  // Checks a dispatch-kind message of `shape` and reads its assignment into
  // ctx (left invalid); writes no row.
  Status read_assignment(const void* wire, size_t size, const PairShape& shape,
                         uint64_t expected_seq, ExpertContext* ctx, wire::Header* header);
  Status decode_dispatch(const void* wire, size_t size, size_t n_rows, size_t row_elems,
                         DType dtype, uint64_t expected_seq, void* out, ExpertContext* ctx,
                         bool slots_only);
  // What an expert-side message's slots are made of.
  enum class SlotSource {
    kMeansOfRows,     // the mean of each slot's rows
    kSlots,           // the slot rows as given
    kSlotsOverCount,  // the slot rows over their slot's row count
  };
  // A slots message (combine layout) of `kind` from the expert's context.
  Status encode_slots(lshmoe_kind_t kind, const ExpertContext& ctx, const void* rows,
                      SlotSource source, uint64_t seq, void* wire, size_t capacity);
  // Checks a slots message of `kind` against the origin's context; then
  // out_i = slot[a(i)] + alpha * residual_i.
  Status decode_compensated(lshmoe_kind_t kind, const OriginContext& ctx, const void* wire,
                            size_t size, uint64_t expected_seq, void* out);
  Status encode_combine(const ExpertContext& ctx, const void* rows, uint64_t seq, void* wire,
                        size_t capacity, bool slots_only);
  // Slot means of `rows` under (assignment, used) into a message of `kind`
  // with `flags`, in the layout of `layout_kind`; the shape's size checks
  // done by the caller.
  void write_slot_means(lshmoe_kind_t kind, uint8_t flags, const PairShape& s,
                        const uint32_t* assignment, uint32_t used, const void* rows, uint64_t seq,
                        char* out);
  // Checks a kept pair's slot message, `used` the slots of its grouping.
  Status check_kept(const char* what, const wire::Expected& want, uint32_t used, const void* wire,
                    size_t size);
  const Projection& projection_for(size_t row_elems, DType dtype);
  // Checks a received message's header, indices and checksum; writes nothing.
  Status check_message(const void* wire, size_t size, const wire::Expected& want,
                       wire::Header* header);
  // Steps 1-3: hash, group, spare slots, refine. Returns the slots used.
  uint32_t assign_slots(const void* rows, size_t n_rows, size_t row_elems, DType dtype,
                        size_t slots, OriginContext* ctx);
  // Steps 4-5: centroids and assignment into the wire, residuals into ctx.
  // Adds the sums of ||x - c||^2 and ||x||^2 to *rr and *xx.
  void write_dispatch(const void* rows, const PairShape& shape, uint64_t seq, void* wire,
                      OriginContext* ctx, double* rr, double* xx);
  // Adds the payload checksum (LSHMOE_VERIFY) and writes the sealed header.
  void seal(wire::Header header, char* out, const wire::Layout& layout) const;

  Config config_;
  uint32_t dtype_mask_;
  const Kernels* kernels_;
  ThreadPool pool_;
  // By (row_elems, dtype); a few shapes at a time in practice, so the cache
  // is simply emptied when it holds kMaxProjections.
  static constexpr size_t kMaxProjections = 8;
  std::map<std::pair<size_t, DType>, Projection> projections_;
  // Working buffers kept across messages.
  std::vector<float> projected_;
  std::vector<uint64_t> keys_;
  std::vector<uint32_t> nonfinite_;
  std::vector<KeyedRow> sorted_;
  std::vector<SpareCandidate> candidates_;
  ProjectedScratch projected_scratch_;
  SlotIndex slot_index_;
  std::vector<double> norms_;
  std::vector<uint8_t> referenced_;      // slots a received assignment uses
  std::vector<uint8_t> backward_means_;  // M of kept_combine_backward_encode, not sent
  OriginContext regroup_origin_;         // scratch of combine_encode_regrouped
  ExpertContext regroup_expert_;         // scratch of combine_decode_regrouped
  lshmoe_stats_t stats_{};
};

}  // namespace lshmoe::cpu
