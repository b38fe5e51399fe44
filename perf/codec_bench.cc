// Codec throughput in GB/s of logical rows (bf16, 8192 rows, ratio 0.2),
// next to a memcpy of the same bytes measured in the same run.
//
//   [LSHMOE_CPU_ISA=avx2 ...] codec_bench [--benchmark_filter=...]
#include <benchmark/benchmark.h>

#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "common/thread_pool.h"
#include "eval/npy.h"
#include "eval/synthetic.h"

namespace {

using lshmoe::DType;
using lshmoe::cpu::CpuCodec;

constexpr size_t kRows = 8192;
constexpr DType kDType = DType::kBFloat16;

// Structured tokens (eval/synthetic.h) as bf16, one set per row length.
const std::vector<uint8_t>& tokens(size_t row_elems) {
  static std::map<size_t, std::vector<uint8_t>> cache;
  auto it = cache.find(row_elems);
  if (it == cache.end()) {
    lshmoe::eval::SyntheticSpec spec;
    spec.rows = kRows;
    spec.row_elems = row_elems;
    spec.clusters = 256;
    it = cache
             .emplace(row_elems, lshmoe::eval::from_float(lshmoe::eval::clustered_tokens(spec),
                                                          {kRows, row_elems}, kDType)
                                     .data)
             .first;
  }
  return it->second;
}

// One message through all four steps, so each benchmark can time its own.
struct Pair {
  std::unique_ptr<CpuCodec> codec;
  lshmoe_plan_t plan{};
  std::vector<uint8_t> wire, combine_wire, expanded, output;
  lshmoe::cpu::OriginContext origin;
  lshmoe::cpu::ExpertContext expert;

  Pair(size_t row_elems, int threads) {
    lshmoe::Config config;  // LSHMOE_* from the environment (e.g. LSHMOE_CPU_ISA)
    if (lshmoe::config_from_env(config) != LSHMOE_SUCCESS) abort();
    config.cpu_threads = threads;
    if (CpuCodec::create(config, &codec) != LSHMOE_SUCCESS) abort();
    check(codec->plan(kRows, row_elems, kDType, &plan));
    wire.resize(plan.dispatch_bytes);
    combine_wire.resize(plan.combine_bytes);
    expanded.resize(plan.logical_bytes);
    output.resize(plan.logical_bytes);
    const auto& x = tokens(row_elems);
    check(codec->dispatch_encode(x.data(), kRows, row_elems, kDType, 0, wire.data(), wire.size(),
                                 &origin));
    check(codec->dispatch_decode(wire.data(), wire.size(), kRows, row_elems, kDType, 0,
                                 expanded.data(), &expert));
    check(codec->combine_encode(expert, expanded.data(), 0, combine_wire.data(),
                                combine_wire.size()));
  }
  static void check(lshmoe::Status s) {
    if (s != LSHMOE_SUCCESS) abort();
  }
};

void finish(benchmark::State& state, const Pair& pair) {
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(pair.plan.logical_bytes));
  state.counters["wire_ratio"] = double(pair.plan.dispatch_bytes) / double(pair.plan.logical_bytes);
}

void BM_compress(benchmark::State& state) {
  Pair pair(size_t(state.range(0)), int(state.range(1)));
  const auto& x = tokens(size_t(state.range(0)));
  for (auto _ : state) {
    Pair::check(pair.codec->dispatch_encode(x.data(), kRows, size_t(state.range(0)), kDType, 0,
                                            pair.wire.data(), pair.wire.size(), &pair.origin));
  }
  finish(state, pair);
}

void BM_expand(benchmark::State& state) {
  Pair pair(size_t(state.range(0)), int(state.range(1)));
  for (auto _ : state) {
    Pair::check(pair.codec->dispatch_decode(pair.wire.data(), pair.wire.size(), kRows,
                                            size_t(state.range(0)), kDType, 0, pair.expanded.data(),
                                            &pair.expert));
  }
  finish(state, pair);
}

void BM_combine_encode(benchmark::State& state) {
  Pair pair(size_t(state.range(0)), int(state.range(1)));
  for (auto _ : state) {
    Pair::check(pair.codec->combine_encode(pair.expert, pair.expanded.data(), 0,
                                           pair.combine_wire.data(), pair.combine_wire.size()));
  }
  finish(state, pair);
}

void BM_combine_decode(benchmark::State& state) {
  Pair pair(size_t(state.range(0)), int(state.range(1)));
  for (auto _ : state) {
    Pair::check(pair.codec->combine_decode(pair.origin, pair.combine_wire.data(),
                                           pair.combine_wire.size(), 0, pair.output.data()));
  }
  finish(state, pair);
}

// The baseline: copying the logical rows once, split between the threads
// of a pool as the codec splits its passes (the 2-thread copy is the
// ceiling of any pass bound by memory bandwidth).
void BM_memcpy(benchmark::State& state) {
  const auto& x = tokens(size_t(state.range(0)));
  std::vector<uint8_t> out(x.size());
  lshmoe::ThreadPool pool(int(state.range(1)));
  const size_t row_bytes = size_t(state.range(0)) * lshmoe::dtype_size(kDType);
  for (auto _ : state) {
    pool.parallel_for(kRows, x.size(), [&](size_t r0, size_t r1) {
      memcpy(out.data() + r0 * row_bytes, x.data() + r0 * row_bytes, (r1 - r0) * row_bytes);
    });
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(x.size()));
}

void shapes(benchmark::internal::Benchmark* b) {
  for (int64_t h : {1024, 4096, 7168})
    for (int64_t threads : {1, 2}) b->Args({h, threads});
  b->ArgNames({"H", "threads"})->UseRealTime()->Unit(benchmark::kMillisecond);
}

BENCHMARK(BM_memcpy)->Apply(shapes);
BENCHMARK(BM_compress)->Apply(shapes);
BENCHMARK(BM_expand)->Apply(shapes);
BENCHMARK(BM_combine_encode)->Apply(shapes);
BENCHMARK(BM_combine_decode)->Apply(shapes);

}  // namespace

BENCHMARK_MAIN();
