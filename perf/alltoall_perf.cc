// lshmoe_alltoall_perf: nccl-tests' alltoall_perf for lshmoe. Every rank
// runs it; each size row times the same all-to-all raw (a communicator with
// LSHMOE_ENABLE=0) and compressed (the LSHMOE_* settings), alternating
// iteration by iteration, and adds what nccl-tests cannot show: the wire
// ratio and the distance from the exact result. Flags and output:
// perf/alltoall/options.h and report.h; the design: docs/alltoall_perf.md.
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "alltoall/halves.h"
#include "alltoall/options.h"
#include "alltoall/report.h"
#include "alltoall/rows.h"
#include "alltoall/sweep.h"
#include "common/dtype.h"
#include "lshmoe/lshmoe.h"

extern char** environ;

namespace lshmoe::perf {
namespace {

using Clock = std::chrono::steady_clock;

int g_rank = -1;

// Under mpirun without torchrun's variables: one host unless MASTER_ADDR
// says otherwise, and a port every rank derives from the job's id.
void default_rendezvous() {
  if (getenv("RANK") != nullptr || getenv("OMPI_COMM_WORLD_RANK") == nullptr) return;
  setenv("MASTER_ADDR", "127.0.0.1", 0);
  if (getenv("MASTER_PORT") != nullptr) return;
  const char* job = nullptr;
  for (const char* name :
       {"PMIX_NAMESPACE", "OMPI_MCA_ess_base_jobid", "OMPI_MCA_orte_ess_jobid"}) {
    if (job == nullptr) job = getenv(name);
  }
  uint32_t h = 2166136261u;  // FNV-1a of the job id
  for (const char* c = job != nullptr ? job : ""; *c != '\0'; ++c)
    h = (h ^ uint8_t(*c)) * 16777619u;
  setenv("MASTER_PORT", std::to_string(20000 + h % 10000).c_str(), 1);
}

lshmoe_comm_t* join(const PerfOptions& o, bool compressed) {
  lshmoe_config_t* config = nullptr;
  check(lshmoe_config_from_env(&config), "the LSHMOE_* settings");
  if (!compressed) check(lshmoe_config_set(config, "LSHMOE_ENABLE", "0"), "LSHMOE_ENABLE");
  if (compressed && !o.ratio.empty()) {
    check(lshmoe_config_set(config, "LSHMOE_RATIO", o.ratio.c_str()), "--ratio");
  }
  lshmoe_comm_t* comm = nullptr;
  check(lshmoe_comm_create(config, &comm), compressed ? "joining (compressed)" : "joining (raw)");
  lshmoe_config_destroy(config);
  return comm;
}

std::vector<double> allgather_doubles(lshmoe_comm_t* raw, int world,
                                      const std::vector<double>& mine) {
  const std::vector<uint8_t> b = allgather(raw, world, mine.data(), mine.size() * sizeof(double));
  std::vector<double> out(size_t(world) * mine.size());
  memcpy(out.data(), b.data(), b.size());
  return out;
}

std::string cpu_model() {
  std::ifstream f("/proc/cpuinfo");
  for (std::string line; std::getline(f, line);) {
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? line : line.substr(colon + 2);
    }
  }
  return "unknown CPU";
}

std::string now_text() {
  char buf[64];
  const time_t t = time(nullptr);
  strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S", localtime(&t));
  return buf;
}

// One size row: both halves timed alternately, then checked.
class Benchmark {
 public:
  Benchmark(const PerfOptions& o, lshmoe_comm_t* meet, Half* raw, Half* lsh, int rank, int world)
      : o_(o), meet_(meet), raw_(raw), lsh_(lsh), rank_(rank), world_(world) {
    elem_ = lshmoe_dtype_size(o.dtype);
  }

  void prepare(const RowSource& source, size_t max_rows) {
    send_.resize(size_t(world_));
    for (int d = 0; d < world_; ++d) send_[size_t(d)] = source.rows(rank_, d, max_rows);
    if (o_.op == TimedOp::kDispatch) {
      from_.resize(size_t(world_));
      for (int s = 0; s < world_; ++s) from_[size_t(s)] = source.rows(s, rank_, max_rows);
    }
  }

  RowResult run(const SizePoint& p) {
    const size_t n = p.rows_per_peer, h = o_.hidden, row_bytes = h * elem_;
    counts_.assign(size_t(world_), n);
    std::vector<uint8_t> x(size_t(world_) * n * row_bytes, 0);
    x_float_.resize(size_t(world_) * n * h);
    for (int d = 0; d < world_; ++d) {
      const float* src = send_[size_t(d)].data();
      uint8_t* xd = x.data() + size_t(d) * n * row_bytes;
      float* xf = x_float_.data() + size_t(d) * n * h;
      for (size_t i = 0; i < n * h; ++i) {
        store_elem(DType(o_.dtype), xd, i, src[i]);
        xf[i] = load_elem(DType(o_.dtype), xd, i);
      }
    }
    raw_->resize(x, counts_);
    lsh_->resize(x, counts_);

    lshmoe_stats_t before{}, after{};
    lsh_->stats(&before);
    double seconds[2] = {0.0, 0.0};
    const bool graphs = o_.cudagraph > 0;
    for (int it = 0; it < o_.warmup_iters + o_.iters; ++it) {
      // -G: warm-up iterations run eagerly (a capture cannot allocate),
      // then each half's iteration is captured once and replayed.
      if (graphs && it == o_.warmup_iters) {
        for (Half* half : {raw_, lsh_}) capture(half);
      }
      int k = 0;
      for (Half* half : {raw_, lsh_}) {
        const double s =
            graphs && it >= o_.warmup_iters ? timed_replays(half) : timed_iteration(half);
        if (it >= o_.warmup_iters) seconds[k] += s;
        ++k;
      }
    }
    lsh_->stats(&after);
    const double per_op =
        double(o_.iters) * double(o_.agg_iters) * double(graphs ? o_.cudagraph : 1);

    // One more, untimed, iteration of each half gives what is checked.
    const bool dispatched = o_.op == TimedOp::kDispatch;
    double err2 = 0.0, norm2 = 0.0;
    checked_iteration(raw_);
    const double wrong_raw = double(raw_wrong(raw_->result(dispatched)));
    checked_iteration(lsh_);
    const double wrong_lsh = double(lshmoe_wrong(lsh_->result(dispatched), &err2, &norm2));

    const std::vector<double> mine = {seconds[0] / per_op,
                                      seconds[1] / per_op,
                                      wrong_raw,
                                      wrong_lsh,
                                      err2,
                                      norm2,
                                      double(after.wire_bytes - before.wire_bytes),
                                      double(after.logical_bytes - before.logical_bytes)};
    const std::vector<double> all = allgather_doubles(meet_, world_, mine);
    std::vector<double> raw_s, lsh_s;
    double sums[6] = {0, 0, 0, 0, 0, 0};
    for (int r = 0; r < world_; ++r) {
      const double* v = all.data() + size_t(r) * mine.size();
      raw_s.push_back(v[0]);
      lsh_s.push_back(v[1]);
      for (int i = 0; i < 6; ++i) sums[i] += v[2 + i];
    }
    RowResult row;
    row.size = p;
    const bool checked = o_.check != 0;
    row.raw = half_result(p, o_, world_, raw_s, checked ? int64_t(sums[0]) : -1);
    row.lshmoe = half_result(p, o_, world_, lsh_s, checked ? int64_t(sums[1]) : -1);
    row.rel_err = sums[3] > 0 ? std::sqrt(sums[2] / sums[3]) : 0.0;
    row.ratio = sums[5] > 0 ? sums[4] / sums[5] : 1.0;
    row.speedup = row.lshmoe.time_us > 0 ? row.raw.time_us / row.lshmoe.time_us : 0.0;
    return row;
  }

 private:
  void barrier() {
    const double zero = 0.0;
    allgather(meet_, world_, &zero, sizeof(zero));
  }

  // The operations of one iteration, as -m and --op say.
  void body(Half* half, bool timed_part) {
    const size_t m = size_t(o_.agg_iters);
    for (size_t a = 0; a < m; ++a) {
      if (o_.op != TimedOp::kCombine || !timed_part) half->dispatch(a);
      if (o_.op == TimedOp::kDispatch) continue;
      if (o_.op == TimedOp::kCombine && !timed_part) continue;
      half->combine(a);
    }
  }

  double timed_iteration(Half* half) {
    if (o_.op == TimedOp::kCombine) {
      body(half, false);  // the dispatches, untimed
      half->wait();
    }
    barrier();
    const auto start = Clock::now();
    body(half, true);
    half->wait();
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    if (o_.op == TimedOp::kDispatch) {
      for (size_t a = 0; a < size_t(o_.agg_iters); ++a) half->drop(a);
    }
    return s;
  }

  void capture(Half* half) {
    half->wait();
    half->capture_begin();
    body(half, true);  // --op both: dispatch and combine pairs
    half->capture_end();
  }

  double timed_replays(Half* half) {
    barrier();
    const auto start = Clock::now();
    half->replay(o_.cudagraph);
    half->wait();
    return std::chrono::duration<double>(Clock::now() - start).count();
  }

  void checked_iteration(Half* half) {
    half->dispatch(0);
    if (o_.op == TimedOp::kDispatch) {
      half->wait();
      half->drop(0);
    } else {
      half->combine(0);
    }
    half->wait();
  }

  // What the checked output must be: the dispatch's rows from every source,
  // or (a combine through the identity expert) this rank's own rows.
  std::vector<float> expected() const {
    if (o_.op != TimedOp::kDispatch) return x_float_;
    const size_t n = counts_[0], h = o_.hidden;
    std::vector<float> want(size_t(world_) * n * h);
    std::vector<uint8_t> cell(elem_);
    for (int s = 0; s < world_; ++s) {
      for (size_t i = 0; i < n * h; ++i) {
        store_elem(DType(o_.dtype), cell.data(), 0, from_[size_t(s)][i]);
        want[size_t(s) * n * h + i] = load_elem(DType(o_.dtype), cell.data(), 0);
      }
    }
    return want;
  }

  // Raw: bit-exact, counted in elements as nccl-tests counts them.
  size_t raw_wrong(const std::vector<uint8_t>& got) const {
    const std::vector<float> want = expected();
    std::vector<uint8_t> cell(elem_);
    size_t wrong = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      store_elem(DType(o_.dtype), cell.data(), 0, want[i]);
      wrong +=
          i * elem_ + elem_ > got.size() || memcmp(cell.data(), got.data() + i * elem_, elem_) != 0;
    }
    return wrong;
  }

  // Compressed: rows beyond the bound; the squared error and norm for rel_err.
  size_t lshmoe_wrong(const std::vector<uint8_t>& got_bytes, double* err2, double* norm2) const {
    const std::vector<float> want = expected();
    if (got_bytes.size() < want.size() * elem_) return want.size() / o_.hidden;
    std::vector<float> got(want.size());
    for (size_t i = 0; i < got.size(); ++i)
      got[i] = load_elem(DType(o_.dtype), got_bytes.data(), i);
    return rows_beyond(got.data(), want.data(), want.size() / o_.hidden, o_.hidden, o_.max_rel_err,
                       err2, norm2);
  }

  const PerfOptions& o_;
  lshmoe_comm_t* meet_;
  Half* raw_;
  Half* lsh_;
  const int rank_, world_;
  size_t elem_ = 0;
  std::vector<std::vector<float>> send_, from_;  // [peer] of max_rows rows
  std::vector<size_t> counts_;
  std::vector<float> x_float_;
};

int run(int argc, char** argv) {
  PerfOptions o;
  std::string error;
  switch (parse_options(argc, argv, &o, &error)) {
    case ParseResult::kHelp:
      fputs(usage_text(), stdout);
      return 0;
    case ParseResult::kError:
      fprintf(stderr, "lshmoe_alltoall_perf: %s\n", error.c_str());
      return 2;
    case ParseResult::kRun:
      break;
  }
  if (o.max_rel_err < 0) o.max_rel_err = default_max_rel_err(o.op);
  default_rendezvous();
  const char* port = getenv("MASTER_PORT");
  if (getenv("MASTER_ADDR") == nullptr || port == nullptr) {
    fprintf(stderr,
            "lshmoe_alltoall_perf: MASTER_ADDR and MASTER_PORT are not set: start every rank "
            "with torchrun's environment, under mpirun, or with scripts/launch_local.sh N\n");
    return 2;
  }
  RunInfo info;
  info.options = o;
  info.start_time = now_text();
  info.version = lshmoe_version();
  for (int i = 0; i < argc; ++i) info.args.push_back(argv[i]);
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string v = *e;
    for (const char* prefix : {"LSHMOE_", "UCX_TLS", "MASTER_", "WORLD_SIZE"}) {
      if (v.rfind(prefix, 0) == 0) info.env.push_back(v);
    }
  }

  // The raw host communicator: the raw half of --backend ucx, and where
  // ranks meet (barriers, results) for either backend. The compressed host
  // communicator meets on the next port.
  lshmoe_comm_t* raw = join(o, false);
  lshmoe_comm_t* lsh = nullptr;
  if (o.backend == Backend::kUcx) {
    setenv("MASTER_PORT", std::to_string(atoi(port) + 1).c_str(), 1);
    lsh = join(o, true);
  }
  int world = 0;
  check(lshmoe_comm_rank(raw, &g_rank), "lshmoe_comm_rank");
  check(lshmoe_comm_size(raw, &world), "lshmoe_comm_size");
  info.ranks = world;
  {
    lshmoe_config_t* config = nullptr;
    char ratio[64] = "0";
    check(lshmoe_config_from_env(&config), "the LSHMOE_* settings");
    if (!o.ratio.empty())
      check(lshmoe_config_set(config, "LSHMOE_RATIO", o.ratio.c_str()), "--ratio");
    check(lshmoe_config_get(config, "LSHMOE_RATIO", ratio, sizeof(ratio)), "LSHMOE_RATIO");
    lshmoe_config_destroy(config);
    info.ratio_setting = atof(ratio);
  }

  std::unique_ptr<Half> raw_half, lsh_half;
  std::string device = "host buffers, " + cpu_model();
  if (o.backend == Backend::kUcx) {
    make_host_halves(o, raw, lsh, &raw_half, &lsh_half);
  } else if (const int status =
                 make_device_halves(o, raw, g_rank, world, &raw_half, &lsh_half, &device, &error);
             status != 0) {
    fprintf(stderr, "lshmoe_alltoall_perf: --backend nccl: %s\n", error.c_str());
    lshmoe_comm_destroy(raw);
    return status;
  }

  // Who runs where (one line per rank, as nccl-tests prints its devices).
  {
    char line[256] = {};
    char host[64] = {};
    gethostname(host, sizeof(host) - 1);
    snprintf(line, sizeof(line), "%d|%s|%s", int(getpid()), host, device.c_str());
    const std::vector<uint8_t> lines = allgather(raw, world, line, sizeof(line));
    for (int r = 0; r < world; ++r) {
      const std::string text(reinterpret_cast<const char*>(lines.data()) +
                             size_t(r) * sizeof(line));
      RankInfo d;
      d.rank = r;
      const size_t a = text.find('|'), b = text.find('|', a + 1);
      d.pid = atoi(text.substr(0, a).c_str());
      d.hostname = text.substr(a + 1, b - a - 1);
      d.device = text.substr(b + 1);
      info.devices.push_back(d);
    }
  }

  const size_t elem = lshmoe_dtype_size(o.dtype);
  const std::vector<SizePoint> sizes = size_sweep(o, world, elem);
  if (sizes.empty()) {
    if (g_rank == 0) {
      fprintf(stderr,
              "lshmoe_alltoall_perf: no size in [%zu, %zu] holds one row per rank (%d ranks x "
              "%zu elements x %zu bytes)\n",
              o.min_bytes, o.max_bytes, world, o.hidden, elem);
    }
    return 2;
  }
  RowSource source;
  if (!source.open(o, world, &error)) die("the rows", error);
  Benchmark bench(o, raw, raw_half.get(), lsh_half.get(), g_rank, world);
  bench.prepare(source, sizes.back().rows_per_peer);

  FILE* out = stdout;
  if (g_rank == 0) print_header(out, info);
  std::vector<RowResult> rows;
  for (const SizePoint& p : sizes) {
    rows.push_back(bench.run(p));
    if (g_rank == 0) print_row(out, rows.back(), o);
  }
  const Summary summary = summarize(rows, o.check != 0);
  info.end_time = now_text();
  int status = summary.ok() ? 0 : 1;
  if (g_rank == 0) {
    print_footer(out, summary);
    if (!o.output_file.empty()) {
      std::ofstream json(o.output_file);
      json << json_report(info, rows, summary);
      if (!json) {
        fprintf(stderr, "lshmoe_alltoall_perf: cannot write %s\n", o.output_file.c_str());
        status = 1;
      }
    }
  }
  raw_half.reset();
  lsh_half.reset();
  if (lsh != nullptr) lshmoe_comm_destroy(lsh);
  lshmoe_comm_destroy(raw);
  return status;
}

}  // namespace
}  // namespace lshmoe::perf

int main(int argc, char** argv) {
  return lshmoe::perf::run(argc, argv);
}
