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

[[noreturn]] void die(const char* what, const char* why) {
  fprintf(stderr, "lshmoe_alltoall_perf: rank %d: %s: %s\n", g_rank, what, why);
  exit(1);
}

void check(lshmoe_status_t s, const char* what) {
  if (s != LSHMOE_SUCCESS) die(what, lshmoe_last_error());
}

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

// Every rank's bytes, rank by rank, over the raw communicator (its rows
// travel as they are).
std::vector<uint8_t> allgather(lshmoe_comm_t* raw, int world, const void* mine, size_t bytes) {
  const size_t words = (bytes + 3) / 4;
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

std::vector<double> allgather(lshmoe_comm_t* raw, int world, const std::vector<double>& mine) {
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

// One half (raw or compressed): its communicator and buffers for one size.
struct Half {
  lshmoe_comm_t* comm = nullptr;
  std::vector<size_t> expert_rows;
  std::vector<uint8_t> xe, y;
  std::vector<lshmoe_handle_t*> handles;
};

class Benchmark {
 public:
  Benchmark(const PerfOptions& o, lshmoe_comm_t* raw, lshmoe_comm_t* lsh, int rank, int world)
      : o_(o), rank_(rank), world_(world) {
    raw_.comm = raw;
    lsh_.comm = lsh;
    elem_ = lshmoe_dtype_size(o.dtype);
  }

  void prepare(const RowSource& source, size_t max_rows) {
    max_rows_ = max_rows;
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
    x_.assign(size_t(world_) * n * row_bytes, 0);
    x_float_.resize(size_t(world_) * n * h);
    for (int d = 0; d < world_; ++d) {
      const float* src = send_[size_t(d)].data();
      float* xf = x_float_.data() + size_t(d) * n * h;
      for (size_t i = 0; i < n * h; ++i) {
        store_elem(DType(o_.dtype), x_.data() + size_t(d) * n * row_bytes, i, src[i]);
        xf[i] = load_elem(DType(o_.dtype), x_.data() + size_t(d) * n * row_bytes, i);
      }
    }
    for (Half* half : {&raw_, &lsh_}) {
      half->expert_rows.assign(size_t(world_), 0);
      check(lshmoe_comm_expert_rows(half->comm, counts_.data(), h, o_.dtype, o_.mode,
                                    half->expert_rows.data()),
            "lshmoe_comm_expert_rows");
      size_t rows = 0;
      for (size_t r : half->expert_rows) rows += r;
      half->xe.assign(rows * row_bytes, 0);
      half->y.assign(x_.size(), 0);
    }

    lshmoe_stats_t before{}, after{};
    check(lshmoe_comm_stats(lsh_.comm, &before), "lshmoe_comm_stats");
    double seconds[2] = {0.0, 0.0};
    for (int it = 0; it < o_.warmup_iters + o_.iters; ++it) {
      int k = 0;
      for (Half* half : {&raw_, &lsh_}) {
        const double s = timed_iteration(half);
        if (it >= o_.warmup_iters) seconds[k] += s;
        ++k;
      }
    }
    check(lshmoe_comm_stats(lsh_.comm, &after), "lshmoe_comm_stats");
    const double per_op = double(o_.iters) * double(o_.agg_iters);

    // One more, untimed, iteration of each half gives what is checked.
    for (Half* half : {&raw_, &lsh_}) checked_iteration(half);
    double wrong_raw = double(raw_wrong()), err2 = 0.0, norm2 = 0.0;
    const double wrong_lsh = double(lshmoe_wrong(&err2, &norm2));

    const std::vector<double> mine = {seconds[0] / per_op,
                                      seconds[1] / per_op,
                                      wrong_raw,
                                      wrong_lsh,
                                      err2,
                                      norm2,
                                      double(after.wire_bytes - before.wire_bytes),
                                      double(after.logical_bytes - before.logical_bytes)};
    const std::vector<double> all = allgather(raw_.comm, world_, mine);
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
  void dispatch(Half* half, lshmoe_handle_t** handle) {
    check(lshmoe_dispatch(half->comm, x_.data(), counts_.data(), half->xe.data(), counts_.data(),
                          o_.hidden, o_.dtype, o_.mode, handle),
          "lshmoe_dispatch");
  }

  // The identity expert: the combine sends back what the dispatch delivered.
  void combine(Half* half, lshmoe_handle_t* handle) {
    check(lshmoe_combine(half->comm, handle, half->xe.data(), half->y.data()), "lshmoe_combine");
    lshmoe_handle_free(handle);
  }

  void barrier() {
    const double zero = 0.0;
    allgather(raw_.comm, world_, &zero, sizeof(zero));
  }

  double timed_iteration(Half* half) {
    const int m = o_.agg_iters;
    half->handles.assign(size_t(m), nullptr);
    if (o_.op == TimedOp::kCombine) {
      for (int a = 0; a < m; ++a) dispatch(half, &half->handles[size_t(a)]);
    }
    barrier();
    const auto start = Clock::now();
    for (int a = 0; a < m; ++a) {
      lshmoe_handle_t*& handle = half->handles[size_t(a)];
      if (o_.op != TimedOp::kCombine) dispatch(half, &handle);
      if (o_.op != TimedOp::kDispatch) {
        combine(half, handle);
        handle = nullptr;
      }
    }
    const double s = std::chrono::duration<double>(Clock::now() - start).count();
    for (lshmoe_handle_t* handle : half->handles) lshmoe_handle_free(handle);
    return s;
  }

  void checked_iteration(Half* half) {
    lshmoe_handle_t* handle = nullptr;
    dispatch(half, &handle);
    if (o_.op == TimedOp::kDispatch) {
      lshmoe_handle_free(handle);
    } else {
      combine(half, handle);
    }
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

  const std::vector<uint8_t>& output(const Half& half) const {
    return o_.op == TimedOp::kDispatch ? half.xe : half.y;
  }

  // Raw: bit-exact, counted in elements as nccl-tests counts them.
  size_t raw_wrong() const {
    const std::vector<float> want = expected();
    const std::vector<uint8_t>& got = output(raw_);
    std::vector<uint8_t> cell(elem_);
    size_t wrong = 0;
    for (size_t i = 0; i < want.size(); ++i) {
      store_elem(DType(o_.dtype), cell.data(), 0, want[i]);
      wrong += memcmp(cell.data(), got.data() + i * elem_, elem_) != 0;
    }
    return wrong;
  }

  // Compressed: rows beyond the bound; the squared error and norm for rel_err.
  size_t lshmoe_wrong(double* err2, double* norm2) const {
    const std::vector<float> want = expected();
    const std::vector<uint8_t>& got_bytes = output(lsh_);
    std::vector<float> got(want.size());
    for (size_t i = 0; i < got.size(); ++i)
      got[i] = load_elem(DType(o_.dtype), got_bytes.data(), i);
    return rows_beyond(got.data(), want.data(), want.size() / o_.hidden, o_.hidden, o_.max_rel_err,
                       err2, norm2);
  }

  const PerfOptions& o_;
  const int rank_, world_;
  size_t elem_ = 0, max_rows_ = 0;
  Half raw_, lsh_;
  std::vector<std::vector<float>> send_, from_;  // [peer] of max_rows rows
  std::vector<size_t> counts_;
  std::vector<uint8_t> x_;
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
  if (o.backend == Backend::kNccl) {
    fprintf(stderr,
            "lshmoe_alltoall_perf: --backend nccl is not in this build yet (device buffers over "
            "an ncclComm_t): use --backend ucx\n");
    return 2;
  }
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

  lshmoe_comm_t* lsh = join(o, true);
  // The raw half's communicator meets on the next port.
  const std::string raw_port = std::to_string(atoi(port) + 1);
  setenv("MASTER_PORT", raw_port.c_str(), 1);
  lshmoe_comm_t* raw = join(o, false);
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

  // Who runs where (one line per rank, as nccl-tests prints its devices).
  {
    char line[256] = {};
    char host[64] = {};
    gethostname(host, sizeof(host) - 1);
    snprintf(line, sizeof(line), "%d|%s|%s", int(getpid()), host,
             ("host buffers, " + cpu_model()).c_str());
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
  if (!source.open(o, world, &error)) die("the rows", error.c_str());
  Benchmark bench(o, raw, lsh, g_rank, world);
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
  lshmoe_comm_destroy(lsh);
  lshmoe_comm_destroy(raw);
  return status;
}

}  // namespace
}  // namespace lshmoe::perf

int main(int argc, char** argv) {
  return lshmoe::perf::run(argc, argv);
}
