// lshmoe_exchange_bench: one rank of a timed all-to-all, raw against
// compressed, measured in the same run. Every rank of the job runs it with
// the torchrun-style environment (MASTER_ADDR, MASTER_PORT, RANK,
// WORLD_SIZE); it joins two communicators, one compressing (the LSHMOE_*
// settings) and one with LSHMOE_ENABLE=0 on MASTER_PORT + 1, and times
// dispatch + combine of clustered tokens (identity expert) on both,
// alternating. Rank 0 prints the median over iterations of the slowest
// rank's time, and the ratio.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "eval/synthetic.h"
#include "lshmoe/lshmoe.h"

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  size_t rows = 2048;  // per destination
  size_t hidden = 4096;
  std::string dtype = "bf16";
  int iters = 10;
  int warmup = 2;
  lshmoe_dispatch_mode_t mode = LSHMOE_DISPATCH_ROWS;
};

void usage() {
  fprintf(stderr,
          "usage: lshmoe_exchange_bench [--rows N] [--hidden H] [--dtype bf16|fp16|fp32]\n"
          "                             [--iters N] [--warmup N] [--centroids]\n"
          "  run once per rank with MASTER_ADDR, MASTER_PORT, RANK and WORLD_SIZE set;\n"
          "  compression settings come from LSHMOE_* variables.\n");
}

bool parse(int argc, char** argv, Options* o) {
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&](long lo, long hi, long* out) {
      if (i + 1 >= argc) return false;
      char* end = nullptr;
      *out = strtol(argv[++i], &end, 10);
      return *end == '\0' && *out >= lo && *out <= hi;
    };
    long v = 0;
    if (a == "--rows" && next(1, 1 << 24, &v)) {
      o->rows = size_t(v);
    } else if (a == "--hidden" && next(1, 1 << 20, &v)) {
      o->hidden = size_t(v);
    } else if (a == "--iters" && next(1, 100000, &v)) {
      o->iters = int(v);
    } else if (a == "--warmup" && next(0, 100000, &v)) {
      o->warmup = int(v);
    } else if (a == "--dtype" && i + 1 < argc) {
      o->dtype = argv[++i];
    } else if (a == "--centroids") {
      o->mode = LSHMOE_DISPATCH_CENTROIDS;
    } else {
      fprintf(stderr, "lshmoe_exchange_bench: bad argument or value: %s\n", a.c_str());
      usage();
      return false;
    }
  }
  return true;
}

#define CHECK_OK(call)                                                                \
  do {                                                                                \
    const lshmoe_status_t s_ = (call);                                                \
    if (s_ != LSHMOE_SUCCESS) {                                                       \
      fprintf(stderr, "lshmoe_exchange_bench: %s: %s\n", #call, lshmoe_last_error()); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

lshmoe_comm_t* join(bool enable) {
  lshmoe_config_t* config = nullptr;
  CHECK_OK(lshmoe_config_from_env(&config));
  if (!enable) CHECK_OK(lshmoe_config_set(config, "LSHMOE_ENABLE", "0"));
  lshmoe_comm_t* comm = nullptr;
  CHECK_OK(lshmoe_comm_create(config, &comm));
  lshmoe_config_destroy(config);
  return comm;
}

// Every rank's `values`, rank by rank, over a raw communicator.
std::vector<float> allgather(lshmoe_comm_t* raw, int world, const std::vector<float>& values) {
  std::vector<size_t> ones(size_t(world), 1);
  std::vector<float> send(size_t(world) * values.size()), recv(send.size());
  for (int p = 0; p < world; ++p) {
    std::copy(values.begin(), values.end(), send.begin() + long(size_t(p) * values.size()));
  }
  lshmoe_handle_t* h = nullptr;
  CHECK_OK(lshmoe_dispatch(raw, send.data(), ones.data(), recv.data(), ones.data(), values.size(),
                           LSHMOE_FLOAT32, LSHMOE_DISPATCH_ROWS, &h));
  lshmoe_handle_free(h);
  return recv;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0.0 : v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  if (!parse(argc, argv, &o)) return 2;
  const lshmoe_dtype_t dtype = o.dtype == "fp32"   ? LSHMOE_FLOAT32
                               : o.dtype == "fp16" ? LSHMOE_FLOAT16
                               : o.dtype == "bf16" ? LSHMOE_BFLOAT16
                                                   : lshmoe_dtype_t(-1);
  if (lshmoe_dtype_size(dtype) == 0) {
    fprintf(stderr, "lshmoe_exchange_bench: --dtype must be bf16, fp16 or fp32\n");
    return 2;
  }
  const char* port = getenv("MASTER_PORT");
  if (port == nullptr) {
    usage();
    return 2;
  }
  lshmoe_comm_t* compressed = join(true);
  const std::string raw_port = std::to_string(atoi(port) + 1);
  setenv("MASTER_PORT", raw_port.c_str(), 1);
  lshmoe_comm_t* raw = join(false);
  int me = 0, world = 0;
  CHECK_OK(lshmoe_comm_rank(raw, &me));
  CHECK_OK(lshmoe_comm_size(raw, &world));

  // Clustered tokens, different for every (source, destination).
  const size_t elem = lshmoe_dtype_size(dtype);
  const size_t row_bytes = o.hidden * elem, total_rows = o.rows * size_t(world);
  std::vector<uint8_t> x(total_rows * row_bytes), xe(x.size()), y(x.size());
  for (int d = 0; d < world; ++d) {
    lshmoe::eval::SyntheticSpec spec;
    spec.rows = o.rows;
    spec.row_elems = o.hidden;
    spec.seed = uint64_t(me) * 1000 + uint64_t(d) + 1;
    const std::vector<float> tokens = lshmoe::eval::clustered_tokens(spec);
    for (size_t i = 0; i < tokens.size(); ++i) {
      lshmoe::store_elem(lshmoe::DType(dtype), x.data() + size_t(d) * o.rows * row_bytes, i,
                         tokens[i]);
    }
  }
  std::vector<size_t> counts(size_t(world), o.rows);
  std::vector<size_t> expert_counts(counts.size());

  auto round_trip = [&](lshmoe_comm_t* comm) {
    CHECK_OK(lshmoe_comm_expert_rows(comm, counts.data(), o.hidden, dtype, o.mode,
                                     expert_counts.data()));
    lshmoe_handle_t* h = nullptr;
    CHECK_OK(lshmoe_dispatch(comm, x.data(), counts.data(), xe.data(), counts.data(), o.hidden,
                             dtype, o.mode, &h));
    CHECK_OK(lshmoe_combine(comm, h, xe.data(), y.data()));  // identity expert
    lshmoe_handle_free(h);
  };
  const std::vector<float> barrier_row(1, 0.0f);
  std::vector<float> times;  // raw, compressed, per iteration
  for (int it = 0; it < o.warmup + o.iters; ++it) {
    for (lshmoe_comm_t* comm : {raw, compressed}) {
      allgather(raw, world, barrier_row);
      const auto start = Clock::now();
      round_trip(comm);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
      if (it >= o.warmup) times.push_back(float(ms));
    }
  }
  lshmoe_stats_t st{};
  CHECK_OK(lshmoe_comm_stats(compressed, &st));
  // Identity expert: how far the round trip moved the rows.
  double err = 0, norm = 0;
  for (size_t i = 0; i < total_rows * o.hidden; ++i) {
    const double a = lshmoe::load_elem(lshmoe::DType(dtype), x.data(), i);
    const double b = lshmoe::load_elem(lshmoe::DType(dtype), y.data(), i);
    err += (a - b) * (a - b);
    norm += a * a;
  }
  times.push_back(float(st.logical_bytes ? double(st.wire_bytes) / double(st.logical_bytes) : 0));
  times.push_back(float(st.input_energy > 0 ? std::sqrt(st.residual_energy / st.input_energy) : 0));
  const std::vector<float> all = allgather(raw, world, times);

  if (me == 0) {
    const size_t per_rank = times.size();
    std::vector<double> raw_ms, comp_ms;
    for (int it = 0; it < o.iters; ++it) {
      double r = 0, c = 0;
      for (int p = 0; p < world; ++p) {
        r = std::max(r, double(all[size_t(p) * per_rank + size_t(2 * it)]));
        c = std::max(c, double(all[size_t(p) * per_rank + size_t(2 * it + 1)]));
      }
      raw_ms.push_back(r);
      comp_ms.push_back(c);
    }
    const double logical_gb = 2.0 * double(o.rows * row_bytes) * double(world - 1) / 1e9;
    const double raw_med = median(raw_ms), comp_med = median(comp_ms);
    printf(
        "# lshmoe_exchange_bench: %d ranks, %zu rows per peer, H=%zu %s, %s mode, "
        "%d iterations (median of the slowest rank), dispatch + combine\n",
        world, o.rows, o.hidden, o.dtype.c_str(),
        o.mode == LSHMOE_DISPATCH_ROWS ? "rows" : "centroids", o.iters);
    printf("%-12s %12s %16s %12s\n", "mode", "time_ms", "rank_out_GB/s", "wire_ratio");
    printf("%-12s %12.2f %16.3f %12.3f\n", "raw", raw_med, logical_gb / (raw_med / 1e3), 1.0);
    printf("%-12s %12.2f %16.3f %12.3f\n", "compressed", comp_med, logical_gb / (comp_med / 1e3),
           double(all[per_rank - 2]));
    printf("dispatch_error %.4f  round_trip_error %.2e  speedup %.2fx\n", double(all[per_rank - 1]),
           norm > 0 ? std::sqrt(err / norm) : 0.0, raw_med / comp_med);
  }
  lshmoe_comm_destroy(compressed);
  lshmoe_comm_destroy(raw);
  return 0;
}
