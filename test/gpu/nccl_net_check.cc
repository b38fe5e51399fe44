// One rank of a real NCCL job on the GPU: an all-reduce and an all-to-all
// whose results are checked exactly against values computed on the host.
// Run every rank with the torchrun-style environment (the ncclUniqueId goes
// through lshmoe's bootstrap); NCCL_NET picks the net (lshmoe through
// NCCL_NET_PLUGIN, or NCCL's own Socket) and the output names it, so two
// runs compare the plugin with NCCL's Socket net. Exits 77 without a GPU.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "transport/bootstrap.h"

namespace {

constexpr int kSkip = 77;
constexpr size_t kCount = size_t(1) << 22;  // floats per peer block (16 MiB)

#define CUDA_OK(call)                                                             \
  do {                                                                            \
    const cudaError_t e_ = (call);                                                \
    if (e_ != cudaSuccess) {                                                      \
      fprintf(stderr, "nccl_net_check: %s: %s\n", #call, cudaGetErrorString(e_)); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)
#define NCCL_OK(call)                                                             \
  do {                                                                            \
    const ncclResult_t r_ = (call);                                               \
    if (r_ != ncclSuccess) {                                                      \
      fprintf(stderr, "nccl_net_check: %s: %s\n", #call, ncclGetErrorString(r_)); \
      return 1;                                                                   \
    }                                                                             \
  } while (0)

// Integer-valued floats: sums are exact whatever the reduction order.
float value(int rank, int peer, size_t i) {
  return float((rank * 131 + peer * 17 + int(i % 1000)) % 512);
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    fprintf(stderr, "nccl_net_check: no CUDA device\n");
    return kSkip;
  }
  lshmoe::transport::BootstrapConfig boot;
  if (lshmoe::transport::bootstrap_config_from_env(&boot) != LSHMOE_SUCCESS) {
    fprintf(stderr, "nccl_net_check: %s\n", lshmoe_last_error());
    return 2;
  }
  const int rank = boot.rank, world = boot.world_size;
  ncclUniqueId id{};
  if (rank == 0) NCCL_OK(ncclGetUniqueId(&id));
  std::vector<std::vector<uint8_t>> ids;
  if (lshmoe::transport::bootstrap_allgather(boot, &id, rank == 0 ? sizeof(id) : 0, &ids) !=
      LSHMOE_SUCCESS) {
    fprintf(stderr, "nccl_net_check: %s\n", lshmoe_last_error());
    return 1;
  }
  memcpy(&id, ids[0].data(), sizeof(id));
  CUDA_OK(cudaSetDevice(rank % devices));
  ncclComm_t comm;
  NCCL_OK(ncclCommInitRank(&comm, world, id, rank));
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreate(&stream));

  const size_t total = kCount * size_t(world);
  std::vector<float> host(total), back(total);
  for (int p = 0; p < world; ++p) {
    for (size_t i = 0; i < kCount; ++i) host[size_t(p) * kCount + i] = value(rank, p, i);
  }
  float *send = nullptr, *recv = nullptr;
  CUDA_OK(cudaMalloc(&send, total * sizeof(float)));
  CUDA_OK(cudaMalloc(&recv, total * sizeof(float)));
  CUDA_OK(cudaMemcpy(send, host.data(), total * sizeof(float), cudaMemcpyHostToDevice));

  // All-reduce (sum) of the whole buffer.
  NCCL_OK(ncclAllReduce(send, recv, total, ncclFloat, ncclSum, comm, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(back.data(), recv, total * sizeof(float), cudaMemcpyDeviceToHost));
  size_t wrong_reduce = 0;
  double checksum = 0;
  for (int p = 0; p < world; ++p) {
    for (size_t i = 0; i < kCount; ++i) {
      float want = 0;
      for (int r = 0; r < world; ++r) want += value(r, p, i);
      wrong_reduce += back[size_t(p) * kCount + i] != want;
      checksum += back[size_t(p) * kCount + i];
    }
  }
  // All-to-all: block p goes to rank p.
  NCCL_OK(ncclAlltoAll(send, recv, kCount, ncclFloat, comm, stream));
  CUDA_OK(cudaStreamSynchronize(stream));
  CUDA_OK(cudaMemcpy(back.data(), recv, total * sizeof(float), cudaMemcpyDeviceToHost));
  size_t wrong_a2a = 0;
  for (int src = 0; src < world; ++src) {
    for (size_t i = 0; i < kCount; ++i) {
      wrong_a2a += back[size_t(src) * kCount + i] != value(src, rank, i);
      checksum += back[size_t(src) * kCount + i];
    }
  }
  const char* net = getenv("NCCL_NET");
  printf("nccl_net_check rank %d/%d net=%s allreduce_wrong=%zu alltoall_wrong=%zu checksum=%.0f\n",
         rank, world, net ? net : "(default)", wrong_reduce, wrong_a2a, checksum);
  ncclCommDestroy(comm);
  cudaFree(send);
  cudaFree(recv);
  return wrong_reduce == 0 && wrong_a2a == 0 ? 0 : 3;
}
