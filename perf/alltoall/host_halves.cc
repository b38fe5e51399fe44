// The host halves: lshmoe communicators over UCX, host buffers.
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "alltoall/halves.h"

namespace lshmoe::perf {

void die(const char* what, const std::string& why) {
  fprintf(stderr, "lshmoe_alltoall_perf: %s: %s\n", what, why.c_str());
  exit(1);
}

void check(lshmoe_status_t s, const char* what) {
  if (s != LSHMOE_SUCCESS) die(what, lshmoe_last_error());
}

std::vector<uint8_t> allgather(lshmoe_comm_t* raw, int world, const void* mine, size_t bytes) {
  const size_t words = (bytes + 3) / 4;  // fp32 rows: a raw communicator moves them as they are
  std::vector<uint8_t> send(size_t(world) * words * 4), recv(send.size());
  for (int p = 0; p < world; ++p) memcpy(send.data() + size_t(p) * words * 4, mine, bytes);
  std::vector<size_t> ones(size_t(world), 1);
  lshmoe_handle_t* h = nullptr;
  check(lshmoe_dispatch(raw, send.data(), ones.data(), recv.data(), ones.data(), words,
                        LSHMOE_FLOAT32, LSHMOE_DISPATCH_ROWS, &h),
        "exchanging results");
  lshmoe_handle_free(h);
  std::vector<uint8_t> out(size_t(world) * bytes);
  for (int p = 0; p < world; ++p) {
    memcpy(out.data() + size_t(p) * bytes, recv.data() + size_t(p) * words * 4, bytes);
  }
  return out;
}

namespace {

class HostHalf : public Half {
 public:
  HostHalf(const PerfOptions& o, lshmoe_comm_t* comm, bool compressed)
      : o_(o),
        comm_(comm),
        compressed_(compressed),
        row_bytes_(o.hidden * lshmoe_dtype_size(o.dtype)) {}
  ~HostHalf() override {
    for (lshmoe_handle_t* h : handles_) lshmoe_handle_free(h);
  }

  void resize(const std::vector<uint8_t>& x, const std::vector<size_t>& counts) override {
    x_ = x;
    // Each peer's rows split evenly into the experts' parts (the last takes
    // the remainder): a peer's block keeps its rows in the same order.
    const size_t E = size_t(o_.experts);
    counts_.clear();
    for (size_t c : counts)
      for (size_t e = 0; e < E; ++e) counts_.push_back(c / E + (e + 1 == E ? c % E : 0));
    std::vector<size_t> expert_rows(counts_.size());
    check(lshmoe_comm_expert_rows_experts(comm_, counts_.data(), o_.experts, o_.hidden, o_.dtype,
                                          o_.mode, expert_rows.data()),
          "lshmoe_comm_expert_rows_experts");
    size_t rows = 0;
    for (size_t r : expert_rows) rows += r;
    xe_.assign(rows * row_bytes_, 0);
    y_.assign(x.size(), 0);
    for (lshmoe_handle_t*& h : handles_) {
      lshmoe_handle_free(h);
      h = nullptr;
    }
    handles_.assign(size_t(o_.agg_iters), nullptr);
  }
  void dispatch(size_t slot) override {
    check(lshmoe_dispatch_experts(comm_, x_.data(), counts_.data(), xe_.data(), counts_.data(),
                                  o_.experts, o_.hidden, o_.dtype, o_.mode, &handles_[slot]),
          "lshmoe_dispatch_experts");
  }
  void combine(size_t slot) override {
    check(lshmoe_combine(comm_, handles_[slot], xe_.data(), y_.data()), "lshmoe_combine");
    drop(slot);
  }
  void drop(size_t slot) override {
    lshmoe_handle_free(handles_[slot]);
    handles_[slot] = nullptr;
  }
  void wait() override {}
  std::vector<uint8_t> result(bool dispatched) override { return dispatched ? xe_ : y_; }
  bool stats(lshmoe_stats_t* s) const override {
    if (!compressed_) return false;
    check(lshmoe_comm_stats(comm_, s), "lshmoe_comm_stats");
    return true;
  }

 private:
  const PerfOptions& o_;
  lshmoe_comm_t* comm_;
  const bool compressed_;
  const size_t row_bytes_;
  std::vector<uint8_t> x_, xe_, y_;
  std::vector<size_t> counts_;
  std::vector<lshmoe_handle_t*> handles_;
};

}  // namespace

void make_host_halves(const PerfOptions& o, lshmoe_comm_t* raw, lshmoe_comm_t* compressed,
                      std::unique_ptr<Half>* raw_half, std::unique_ptr<Half>* lshmoe_half) {
  *raw_half = std::make_unique<HostHalf>(o, raw, false);
  *lshmoe_half = std::make_unique<HostHalf>(o, compressed, true);
}

}  // namespace lshmoe::perf
