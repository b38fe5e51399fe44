// lshmoe_alltoall_perf's parts: its flags, the size sweep, nccl-tests'
// bandwidth formulas, the averaging over ranks and the check.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "alltoall/options.h"
#include "alltoall/report.h"
#include "alltoall/sweep.h"

namespace lshmoe::perf {
namespace {

ParseResult parse(std::vector<std::string> args, PerfOptions* o, std::string* error) {
  args.insert(args.begin(), "lshmoe_alltoall_perf");
  std::vector<const char*> argv;
  for (const std::string& a : args) argv.push_back(a.c_str());
  return parse_options(int(argv.size()), argv.data(), o, error);
}

TEST(AlltoallPerfFlags, DefaultsAreNcclTests) {
  PerfOptions o;
  std::string error;
  ASSERT_EQ(parse({}, &o, &error), ParseResult::kRun) << error;
  EXPECT_EQ(o.min_bytes, 32u << 20);
  EXPECT_EQ(o.max_bytes, 32u << 20);
  EXPECT_EQ(o.step_bytes, 1u << 20);
  EXPECT_EQ(o.step_factor, 1u);
  EXPECT_EQ(o.iters, 20);
  EXPECT_EQ(o.warmup_iters, 1);
  EXPECT_EQ(o.agg_iters, 1);
  EXPECT_EQ(o.check, 1);
  EXPECT_EQ(o.average, Average::kMean);
  EXPECT_EQ(o.hidden, 4096u);
  EXPECT_EQ(o.op, TimedOp::kBoth);
}

TEST(AlltoallPerfFlags, EveryFlagShortAndLong) {
  const std::vector<std::string> args = {"-b",       "1M",       "--maxbytes",
                                         "64M",      "-i",       "2K",
                                         "-f",       "2",        "-n",
                                         "7",        "-w",       "3",
                                         "-m",       "2",        "-c",
                                         "0",        "-d",       "half",
                                         "-a",       "3",        "-J",
                                         "out.json", "--hidden", "1024",
                                         "--ratio",  "0.25",     "--data",
                                         "random",   "--mode",   "centroids",
                                         "--op",     "combine",  "--max-rel-err=0.1"};
  PerfOptions o;
  std::string error;
  ASSERT_EQ(parse(args, &o, &error), ParseResult::kRun) << error;
  EXPECT_EQ(o.min_bytes, 1u << 20);
  EXPECT_EQ(o.max_bytes, 64u << 20);
  EXPECT_EQ(o.step_bytes, 2048u);
  EXPECT_EQ(o.step_factor, 2u);
  EXPECT_EQ(o.iters, 7);
  EXPECT_EQ(o.warmup_iters, 3);
  EXPECT_EQ(o.agg_iters, 2);
  EXPECT_EQ(o.check, 0);
  EXPECT_EQ(o.dtype, LSHMOE_FLOAT16);
  EXPECT_EQ(o.average, Average::kMax);
  EXPECT_EQ(o.output_file, "out.json");
  EXPECT_EQ(o.hidden, 1024u);
  EXPECT_EQ(o.ratio, "0.25");
  EXPECT_EQ(o.data, DataKind::kRandom);
  EXPECT_EQ(o.mode, LSHMOE_DISPATCH_CENTROIDS);
  EXPECT_EQ(o.op, TimedOp::kCombine);
  EXPECT_DOUBLE_EQ(o.max_rel_err, 0.1);
  ASSERT_EQ(parse({"--minbytes",
                   "8",
                   "-e",
                   "8",
                   "--stepbytes",
                   "8",
                   "--stepfactor",
                   "1",
                   "--iters",
                   "1",
                   "--warmup_iters",
                   "0",
                   "--agg_iters",
                   "1",
                   "--check",
                   "1",
                   "--datatype",
                   "float",
                   "--average",
                   "0",
                   "--output_file",
                   "x.json",
                   "--data",
                   "rows.npy",
                   "--backend",
                   "nccl",
                   "--cudagraph",
                   "4",
                   "--op",
                   "both"},
                  &o, &error),
            ParseResult::kRun)
      << error;
  EXPECT_EQ(o.dtype, LSHMOE_FLOAT32);
  EXPECT_EQ(o.data, DataKind::kFile);
  EXPECT_EQ(o.data_file, "rows.npy");
  EXPECT_EQ(o.backend, Backend::kNccl);
  EXPECT_EQ(o.cudagraph, 4);
  EXPECT_EQ(o.experts, 1);
  EXPECT_EQ(parse({"--experts", "8"}, &o, &error), ParseResult::kRun) << error;
  EXPECT_EQ(o.experts, 8);
  EXPECT_EQ(parse({"-h"}, &o, &error), ParseResult::kHelp);
}

TEST(AlltoallPerfFlags, BadValuesAreNamed) {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"-b", "12Q"}, "-b \"12Q\" is invalid"},
      {{"-e", "-5"}, "-e \"-5\" is invalid"},
      {{"-b", "2M", "-e", "1M"}, "--minbytes (2097152) is above --maxbytes (1048576)"},
      {{"-i", "0"}, "-i \"0\" is invalid"},
      {{"-f", "0"}, "-f \"0\" is invalid: expected an integer in [1, 1024]"},
      {{"-n", "0"}, "-n \"0\" is invalid"},
      {{"-w", "x"}, "-w \"x\" is invalid"},
      {{"-m", "0"}, "-m \"0\" is invalid"},
      {{"-c", "2"}, "-c \"2\" is invalid: expected 0 or 1"},
      {{"-d", "int8"}, "-d \"int8\" is invalid: expected bfloat16, half or float"},
      {{"-a", "4"}, "-a \"4\" is invalid"},
      {{"-J", ""}, "-J \"\" is invalid"},
      {{"--hidden", "0"}, "--hidden \"0\" is invalid"},
      {{"--ratio", "1.5"}, "--ratio \"1.5\" is invalid: expected a number in (0, 1]"},
      {{"--ratio", "nan"}, "--ratio \"nan\" is invalid"},
      {{"--data", "tokens.txt"}, "--data \"tokens.txt\" is invalid"},
      {{"--mode", "slots"}, "--mode \"slots\" is invalid: expected rows or centroids"},
      {{"--backend", "mpi"}, "--backend \"mpi\" is invalid: expected ucx or nccl"},
      {{"--op", "all"}, "--op \"all\" is invalid"},
      {{"--max-rel-err", "0"}, "--max-rel-err \"0\" is invalid"},
      {{"--experts", "0"}, "--experts \"0\" is invalid: expected an integer in [1, 65536]"},
      {{"--experts", "2", "--backend", "nccl"}, "--experts above 1 needs --backend ucx"},
      {{"-G", "1"}, "-G/--cudagraph needs --backend nccl"},
      {{"-G", "1", "--backend", "nccl", "--op", "combine"}, "use it with --op both"},
      {{"--mode", "centroids", "--op", "dispatch"}, "--op dispatch has no error of its own"},
      {{"--iters"}, "--iters needs a value"},
      {{"--frobnicate", "1"}, "unknown flag --frobnicate"},
  };
  for (const Case& c : cases) {
    PerfOptions o;
    std::string error;
    EXPECT_EQ(parse(c.args, &o, &error), ParseResult::kError) << c.args[0];
    EXPECT_NE(error.find(c.says), std::string::npos) << "got: " << error;
  }
}

TEST(AlltoallPerfFlags, SizesTakeNcclTestsSuffixes) {
  size_t b = 0;
  EXPECT_TRUE(parse_size("64", &b));
  EXPECT_EQ(b, 64u);
  EXPECT_TRUE(parse_size("4K", &b));
  EXPECT_EQ(b, 4096u);
  EXPECT_TRUE(parse_size("3m", &b));
  EXPECT_EQ(b, 3u << 20);
  EXPECT_TRUE(parse_size("2G", &b));
  EXPECT_EQ(b, size_t(2) << 30);
  for (const char* bad : {"", "K", "1.5M", "-1", "1T", "99999999999999999999", "17179869184G"}) {
    EXPECT_FALSE(parse_size(bad, &b)) << bad;
  }
}

TEST(AlltoallPerfSweep, RoundsDownToWholeRowsPerPeer) {
  PerfOptions o;
  o.hidden = 1000;  // bf16: 2000-byte rows; 4 ranks: 8000 bytes per row per peer
  o.min_bytes = 10000;
  o.max_bytes = 50000;
  o.step_bytes = 10000;
  const std::vector<SizePoint> s = size_sweep(o, 4, 2);
  // 10000 -> 8000 (1 row), 20000 -> 16000, 30000 -> 24000, 40000 -> 40000, 50000 -> 48000
  ASSERT_EQ(s.size(), 5u);
  EXPECT_EQ(s[0].bytes, 8000u);
  EXPECT_EQ(s[0].rows_per_peer, 1u);
  EXPECT_EQ(s[0].count, 4000u);
  EXPECT_EQ(s[3].bytes, 40000u);
  EXPECT_EQ(s[4].bytes, 48000u);
  EXPECT_EQ(s[4].rows_per_peer, 6u);
}

TEST(AlltoallPerfSweep, FactorStepsSkipRepeatsAndTooSmall) {
  PerfOptions o;
  o.hidden = 256;  // 512-byte rows; 2 ranks: 1024 bytes per row per peer
  o.min_bytes = 256;
  o.max_bytes = 8192;
  o.step_factor = 2;
  const std::vector<SizePoint> s = size_sweep(o, 2, 2);
  // 256, 512: no whole row; 1024, 2048, 4096, 8192.
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(s.front().bytes, 1024u);
  EXPECT_EQ(s.back().bytes, 8192u);
  o.min_bytes = 1024;
  o.max_bytes = 1500;
  o.step_factor = 1;
  o.step_bytes = 100;  // 1024..1500 all round to 1024: one row
  EXPECT_EQ(size_sweep(o, 2, 2).size(), 1u);
  o.max_bytes = size_t(-1);  // a step past the end of size_t ends the sweep
  o.min_bytes = size_t(-1) - 50;
  EXPECT_LE(size_sweep(o, 2, 2).size(), 1u);
}

TEST(AlltoallPerfBandwidth, AsNcclTestsComputesThem) {
  // 64 MiB in 10 ms: 6.7108864 GB/s; 4 ranks: busbw 3/4 of it.
  const double alg = alg_bandwidth_gbs(64.0 * 1024 * 1024, 0.010);
  EXPECT_NEAR(alg, 6.7108864, 1e-9);
  EXPECT_NEAR(bus_bandwidth_gbs(alg, 4), 5.0331648, 1e-9);
  EXPECT_EQ(bus_bandwidth_gbs(alg, 1), 0.0);
  PerfOptions o;
  SizePoint p;
  p.bytes = 1000000;
  o.op = TimedOp::kBoth;  // two all-to-alls per operation
  const HalfResult h = half_result(p, o, 2, {0.001, 0.003}, 0);
  EXPECT_NEAR(h.time_us, 2000.0, 1e-9);
  EXPECT_NEAR(h.alg_bw, 1.0, 1e-12);
  EXPECT_NEAR(h.bus_bw, 0.5, 1e-12);
}

TEST(AlltoallPerfBandwidth, TimeOverRanksFollowsAverage) {
  const std::vector<double> t = {3.0, 1.0, 2.0, 6.0};
  EXPECT_EQ(time_over_ranks(t, Average::kRank0), 3.0);
  EXPECT_EQ(time_over_ranks(t, Average::kMean), 3.0);
  EXPECT_EQ(time_over_ranks(t, Average::kMin), 1.0);
  EXPECT_EQ(time_over_ranks(t, Average::kMax), 6.0);
}

TEST(AlltoallPerfCheck, ACorruptedRowIsCountedWrong) {
  const size_t rows = 4, h = 8;
  std::vector<float> want(rows * h), got;
  for (size_t i = 0; i < want.size(); ++i) want[i] = float(i % 7) - 3.0f;
  got = want;
  double e2 = 0, n2 = 0;
  EXPECT_EQ(rows_beyond(got.data(), want.data(), rows, h, 0.05, &e2, &n2), 0u);
  EXPECT_EQ(e2, 0.0);
  got[2 * h + 3] += 10.0f;     // one row far off
  got[3 * h] = std::nanf("");  // a NaN is wrong whatever the bound
  got[1 * h + 1] *= 1.001f;    // within the bound
  e2 = n2 = 0;
  EXPECT_EQ(rows_beyond(got.data(), want.data(), rows, h, 0.05, &e2, &n2), 2u);
}

TEST(AlltoallPerfReport, SummaryAndJsonCarryEveryRow) {
  std::vector<RowResult> rows(2);
  rows[0].raw.bus_bw = 1.0;
  rows[1].raw.bus_bw = 3.0;
  rows[0].lshmoe.bus_bw = 4.0;
  rows[1].lshmoe.bus_bw = 8.0;
  rows[0].speedup = 4.0;
  rows[1].speedup = 2.0;
  rows[0].raw.wrong = rows[1].raw.wrong = 0;
  rows[0].lshmoe.wrong = 0;
  rows[1].lshmoe.wrong = 3;
  const Summary s = summarize(rows, true);
  EXPECT_DOUBLE_EQ(s.raw_bus_bw, 2.0);
  EXPECT_DOUBLE_EQ(s.lshmoe_bus_bw, 6.0);
  EXPECT_DOUBLE_EQ(s.speedup, 3.0);
  EXPECT_EQ(s.lshmoe_wrong, 3);
  EXPECT_FALSE(s.ok());
  EXPECT_TRUE(summarize(rows, false).ok());
  RunInfo info;
  info.args = {"lshmoe_alltoall_perf", "-J", "a \"quoted\" name"};
  const std::string j = json_report(info, rows, s);
  EXPECT_NE(j.find("\"average_bus_bandwidth\": {\"raw\": 2, \"lshmoe\": 6}"), std::string::npos)
      << j;
  EXPECT_NE(j.find("a \\\"quoted\\\" name"), std::string::npos);
  EXPECT_NE(j.find("\"okay\": false"), std::string::npos);
}

TEST(AlltoallPerfReport, CompactNumbersFitTheirColumn) {
  EXPECT_EQ(compact_number(1.234, 6), "  1.23");
  EXPECT_EQ(compact_number(1234.5, 6), "1234.5");
  EXPECT_EQ(compact_number(123456.0, 7), " 123456");
  EXPECT_EQ(compact_number(1.5e9, 7), "1.5e+09");
}

}  // namespace
}  // namespace lshmoe::perf
