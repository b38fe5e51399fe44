// What the shim costs a call it passes through: the same NCCL calls made
// through ncclXxx (the shim, when preloaded) and through pncclXxx (the NCCL
// behind it, directly), in one process, on a one-rank communicator of the
// host stand-in. Run it with LD_PRELOAD=liblshmoe_preload.so.
#include <benchmark/benchmark.h>
#include <dlfcn.h>
#include <nccl.h>

#include <cstdio>
#include <vector>

namespace {

ncclComm_t g_comm = nullptr;

bool shim_loaded() {
  return dlsym(RTLD_DEFAULT, "ncclSend") != dlsym(RTLD_DEFAULT, "pncclSend");
}

struct Api {
  decltype(&ncclGroupStart) group_start;
  decltype(&ncclGroupEnd) group_end;
  decltype(&ncclSend) send;
  decltype(&ncclRecv) recv;
  decltype(&ncclAlltoAll) all_to_all;
};
const Api kThroughShim = {ncclGroupStart, ncclGroupEnd, ncclSend, ncclRecv, ncclAlltoAll};
const Api kDirect = {pncclGroupStart, pncclGroupEnd, pncclSend, pncclRecv, pncclAlltoAll};

// A group of a send and a receive to itself: what PyTorch's all_to_all_single
// issues per peer, here with one peer.
void SendRecvGroup(benchmark::State& state, const Api* api) {
  if (!shim_loaded()) state.SkipWithError("the shim is not preloaded");
  const size_t count = size_t(state.range(0));
  std::vector<uint16_t> out(count, 1), in(count);
  for (auto _ : state) {
    api->group_start();
    api->send(out.data(), count, ncclBfloat16, 0, g_comm, nullptr);
    api->recv(in.data(), count, ncclBfloat16, 0, g_comm, nullptr);
    if (api->group_end() != ncclSuccess) state.SkipWithError("ncclGroupEnd failed");
    benchmark::DoNotOptimize(in.data());
  }
}

void AllToAll(benchmark::State& state, const Api* api) {
  if (!shim_loaded()) state.SkipWithError("the shim is not preloaded");
  const size_t count = size_t(state.range(0));
  std::vector<uint16_t> out(count, 1), in(count);
  for (auto _ : state) {
    if (api->all_to_all(out.data(), in.data(), count, ncclBfloat16, g_comm, nullptr) !=
        ncclSuccess) {
      state.SkipWithError("ncclAlltoAll failed");
    }
    benchmark::DoNotOptimize(in.data());
  }
}

BENCHMARK_CAPTURE(SendRecvGroup, direct, &kDirect)->Arg(256);
BENCHMARK_CAPTURE(SendRecvGroup, through_shim, &kThroughShim)->Arg(256);
BENCHMARK_CAPTURE(AllToAll, direct, &kDirect)->Arg(256);
BENCHMARK_CAPTURE(AllToAll, through_shim, &kThroughShim)->Arg(256);

}  // namespace

int main(int argc, char** argv) {
  ncclUniqueId id;
  if (ncclGetUniqueId(&id) != ncclSuccess || ncclCommInitRank(&g_comm, 1, id, 0) != ncclSuccess) {
    fprintf(stderr, "shim_bench: no one-rank communicator\n");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  ncclCommDestroy(g_comm);
  return 0;
}
