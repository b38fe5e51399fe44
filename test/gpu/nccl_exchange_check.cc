// One rank of the device all-to-all over NCCL, through the public API:
// lshmoe_comm_create_from_nccl, dispatch_async and combine_async of bf16
// rows with unequal splits (zeros too), an identity expert (on rows, or on
// the slots in centroid mode), and checks: the round trip returns the input
// within rounding (compressed), or exactly (LSHMOE_ENABLE=0), and no
// decoder found a bad message, and the communicator's counters agree.
// Each compressing communicator in rows mode also runs a round with two
// experts per rank (lshmoe_dispatch_experts_async). Each communicator runs three rounds of
// growing and shrinking sizes, each with two handles in flight combined in
// reverse order and freed before the stream is synchronised. Run every rank
// with the torchrun-style environment; ranks may share a GPU (give each its
// own NCCL_HOSTID). Exits 77 without a GPU.
#include <cuda_runtime.h>
#include <nccl.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "lshmoe/lshmoe.h"
#include "transport/bootstrap.h"

namespace {

constexpr size_t kH = 1024;

size_t rows_between(int s, int d, size_t scale) {
  static const size_t kRows[] = {0, 20, 700, 1500, 3000};
  return scale * kRows[size_t(s * 3 + d * 2 + 2) % 5];  // 2 ranks: 700, 3000; 0, 700
}

float token(int s, int d, size_t i, size_t j) {
  const uint32_t c = uint32_t((s * 7 + d * 13 + int(i)) % 8);
  return std::sin(float(c) * 1.3f + float(j) * 0.05f) + 0.02f * float((i * 31 + j) % 17) / 17.0f;
}

#define CHECK(cond, ...)                                    \
  do {                                                      \
    if (!(cond)) {                                          \
      fprintf(stderr, "nccl_exchange_check: " __VA_ARGS__); \
      fprintf(stderr, "\n");                                \
      return 1;                                             \
    }                                                       \
  } while (0)

int round_trip(lshmoe_comm_t* comm, int rank, int world, bool compressed,
               lshmoe_dispatch_mode_t mode, size_t scale, cudaStream_t stream) {
  std::vector<size_t> send_rows(static_cast<size_t>(world));
  std::vector<size_t> recv_rows(send_rows.size());
  size_t send_total = 0, recv_total = 0;
  for (int p = 0; p < world; ++p) {
    send_total += send_rows[size_t(p)] = rows_between(rank, p, scale);
    recv_total += recv_rows[size_t(p)] = rows_between(p, rank, scale);
  }
  std::vector<uint16_t> x(send_total * kH), y(send_total * kH), y2(send_total * kH);
  size_t r = 0;
  for (int p = 0; p < world; ++p) {
    for (size_t i = 0; i < send_rows[size_t(p)]; ++i, ++r) {
      for (size_t j = 0; j < kH; ++j) x[r * kH + j] = lshmoe::float_to_bf16(token(rank, p, i, j));
    }
  }
  // The expert side's rows: slots of compressed messages in centroid mode.
  std::vector<size_t> expert_rows(recv_rows.size());
  CHECK(lshmoe_comm_expert_rows(comm, recv_rows.data(), kH, LSHMOE_BFLOAT16, mode,
                                expert_rows.data()) == LSHMOE_SUCCESS,
        "expert_rows: %s", lshmoe_last_error());
  size_t expert_total = 0;
  for (size_t e : expert_rows) expert_total += e;
  if (mode == LSHMOE_DISPATCH_ROWS) CHECK(expert_total == recv_total, "expert rows");
  void *send, *recv, *recv2, *out, *out2;
  CHECK(cudaMalloc(&send, x.size() * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMalloc(&recv, expert_total * kH * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMalloc(&recv2, expert_total * kH * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMalloc(&out, x.size() * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMalloc(&out2, x.size() * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMemcpy(send, x.data(), x.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess, "copy");
  // Two handles in flight, combined in reverse order, freed before the
  // stream is synchronised (the device memory of a freed handle is reused).
  lshmoe_handle_t *h = nullptr, *h2 = nullptr;
  CHECK(lshmoe_dispatch_async(comm, send, send_rows.data(), recv, recv_rows.data(), kH,
                              LSHMOE_BFLOAT16, mode, stream, &h) == LSHMOE_SUCCESS,
        "dispatch: %s", lshmoe_last_error());
  CHECK(lshmoe_dispatch_async(comm, send, send_rows.data(), recv2, recv_rows.data(), kH,
                              LSHMOE_BFLOAT16, mode, stream, &h2) == LSHMOE_SUCCESS,
        "dispatch: %s", lshmoe_last_error());
  CHECK(lshmoe_combine_async(comm, h2, recv2, out2, stream) == LSHMOE_SUCCESS, "combine: %s",
        lshmoe_last_error());
  CHECK(lshmoe_combine_async(comm, h, recv, out, stream) == LSHMOE_SUCCESS, "combine: %s",
        lshmoe_last_error());
  // The backward of h with the identity as expert, x as the output's
  // gradient: the expert's input gradient is its output gradient, so the
  // origin gets S + alpha (g - M) = g back (exactly when uncompressed).
  void *grad_expert, *grad_in;
  CHECK(cudaMalloc(&grad_expert, expert_total * kH * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMalloc(&grad_in, x.size() * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(lshmoe_combine_backward_async(comm, h, send, grad_expert, stream) == LSHMOE_SUCCESS,
        "combine backward: %s", lshmoe_last_error());
  CHECK(lshmoe_dispatch_backward_async(comm, h, grad_expert, grad_in, stream) == LSHMOE_SUCCESS,
        "dispatch backward: %s", lshmoe_last_error());
  CHECK(lshmoe_dispatch_backward_async(comm, h, grad_expert, grad_in, stream) ==
            LSHMOE_ERR_CONTEXT_MISMATCH,
        "a second dispatch backward was accepted");
  lshmoe_handle_free(h2);
  lshmoe_handle_free(h);
  CHECK(lshmoe_comm_check(comm, stream) == LSHMOE_SUCCESS, "decoders: %s", lshmoe_last_error());
  std::vector<uint16_t> gx(x.size());
  CHECK(cudaMemcpy(gx.data(), grad_in, gx.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess,
        "copy");
  double grad_worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = lshmoe::bf16_to_float(x[i]), b = lshmoe::bf16_to_float(gx[i]);
    grad_worst = std::max(grad_worst, std::fabs(a - b) / (std::fabs(a) + 0.1));
  }
  CHECK(compressed ? grad_worst < 0.02 : grad_worst == 0.0, "backward off by %g", grad_worst);
  cudaFree(grad_expert);
  cudaFree(grad_in);
  CHECK(cudaMemcpy(y.data(), out, y.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess, "copy");
  CHECK(cudaMemcpy(y2.data(), out2, y2.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess, "copy");
  // The two handles saw the same rows: the same outputs.
  CHECK(y == y2, "two handles of the same rows combined differently");
  double worst = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double a = lshmoe::bf16_to_float(x[i]), b = lshmoe::bf16_to_float(y[i]);
    worst = std::max(worst, std::fabs(a - b) / (std::fabs(a) + 0.1));
  }
  printf(
      "nccl_exchange_check rank %d/%d %s %s x%zu: %zu rows out, %zu in (%zu at the expert), "
      "worst relative error %.2e (backward %.2e)\n",
      rank, world, compressed ? "compressed" : "disabled",
      mode == LSHMOE_DISPATCH_ROWS ? "rows" : "centroids", scale, send_total, recv_total,
      expert_total, worst, grad_worst);
  CHECK(compressed ? worst < 0.02 : worst == 0.0, "round trip off by %g", worst);
  cudaFree(send);
  cudaFree(recv);
  cudaFree(recv2);
  cudaFree(out);
  cudaFree(out2);
  return 0;
}

// Two experts per rank through lshmoe_dispatch_experts_async: a peer's
// rows split between its experts (identity and 2x + 1, applied on the
// host between the two halves), each part compressed on its own, so the
// combine returns each expert's output within rounding.
float expert_out(size_t expert, float x) {
  return expert == 0 ? x : 2.0f * x + 1.0f;
}

int experts_round_trip(lshmoe_comm_t* comm, int rank, int world, cudaStream_t stream) {
  constexpr int E = 2;
  std::vector<size_t> send_rows, recv_rows;
  for (int p = 0; p < world; ++p) {
    const size_t out = rows_between(rank, p, 1), in = rows_between(p, rank, 1);
    send_rows.insert(send_rows.end(), {out / 2, out - out / 2});
    recv_rows.insert(recv_rows.end(), {in / 2, in - in / 2});
  }
  size_t send_total = 0, recv_total = 0;
  for (size_t n : send_rows) send_total += n;
  for (size_t n : recv_rows) recv_total += n;
  std::vector<uint16_t> x(send_total * kH), xe(recv_total * kH), y(send_total * kH);
  std::vector<size_t> expert_of_send, expert_of_recv;
  size_t r = 0;
  for (int p = 0; p < world; ++p) {
    for (size_t i = 0; i < send_rows[size_t(p) * E] + send_rows[size_t(p) * E + 1]; ++i, ++r) {
      expert_of_send.push_back(i < send_rows[size_t(p) * E] ? 0 : 1);
      for (size_t j = 0; j < kH; ++j) x[r * kH + j] = lshmoe::float_to_bf16(token(rank, p, i, j));
    }
    for (size_t i = 0; i < recv_rows[size_t(p) * E] + recv_rows[size_t(p) * E + 1]; ++i) {
      expert_of_recv.push_back(i < recv_rows[size_t(p) * E] ? 0 : 1);
    }
  }
  void *send, *recv, *out;
  CHECK(cudaMalloc(&send, x.size() * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMalloc(&recv, xe.size() * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMalloc(&out, y.size() * 2 + 16) == cudaSuccess, "cudaMalloc");
  CHECK(cudaMemcpy(send, x.data(), x.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess, "copy");
  lshmoe_handle_t* h = nullptr;
  CHECK(lshmoe_dispatch_experts_async(comm, send, send_rows.data(), recv, recv_rows.data(), E, kH,
                                      LSHMOE_BFLOAT16, LSHMOE_DISPATCH_ROWS, stream,
                                      &h) == LSHMOE_SUCCESS,
        "dispatch_experts: %s", lshmoe_last_error());
  CHECK(lshmoe_comm_check(comm, stream) == LSHMOE_SUCCESS, "decoders: %s", lshmoe_last_error());
  CHECK(cudaMemcpy(xe.data(), recv, xe.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess, "copy");
  for (size_t i = 0; i < xe.size(); ++i) {
    xe[i] = lshmoe::float_to_bf16(expert_out(expert_of_recv[i / kH], lshmoe::bf16_to_float(xe[i])));
  }
  CHECK(cudaMemcpy(recv, xe.data(), xe.size() * 2, cudaMemcpyHostToDevice) == cudaSuccess, "copy");
  CHECK(lshmoe_combine_async(comm, h, recv, out, stream) == LSHMOE_SUCCESS, "combine: %s",
        lshmoe_last_error());
  lshmoe_handle_free(h);
  CHECK(lshmoe_comm_check(comm, stream) == LSHMOE_SUCCESS, "decoders: %s", lshmoe_last_error());
  CHECK(cudaMemcpy(y.data(), out, y.size() * 2, cudaMemcpyDeviceToHost) == cudaSuccess, "copy");
  // y = E(c) + (x - c): the identity returns x, 2x + 1 is off by |x - c|,
  // the dispatch error (small on these clustered rows).
  double err = 0, norm = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    const double want = expert_out(expert_of_send[i / kH], lshmoe::bf16_to_float(x[i]));
    const double d = lshmoe::bf16_to_float(y[i]) - want;
    err += d * d;
    norm += want * want;
  }
  const double rel = norm > 0 ? std::sqrt(err / norm) : 0.0;
  printf("nccl_exchange_check rank %d/%d two experts per rank: relative error %.2e\n", rank, world,
         rel);
  CHECK(rel < 0.05, "two experts: round trip off by %g", rel);
  cudaFree(send);
  cudaFree(recv);
  cudaFree(out);
  return 0;
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    fprintf(stderr, "nccl_exchange_check: no CUDA device\n");
    return 77;
  }
  lshmoe::transport::BootstrapConfig boot;
  CHECK(lshmoe::transport::bootstrap_config_from_env(&boot) == LSHMOE_SUCCESS, "%s",
        lshmoe_last_error());
  // Ranks sharing a GPU must look like different hosts to NCCL.
  if (devices < boot.world_size && getenv("NCCL_HOSTID") == nullptr) {
    const std::string host = "lshmoe-rank-" + std::to_string(boot.rank);
    setenv("NCCL_HOSTID", host.c_str(), 1);
  }
  ncclUniqueId id{};
  if (boot.rank == 0) CHECK(ncclGetUniqueId(&id) == ncclSuccess, "ncclGetUniqueId");
  std::vector<std::vector<uint8_t>> ids;
  CHECK(lshmoe::transport::bootstrap_allgather(boot, &id, boot.rank == 0 ? sizeof(id) : 0, &ids) ==
            LSHMOE_SUCCESS,
        "%s", lshmoe_last_error());
  memcpy(&id, ids[0].data(), sizeof(id));
  CHECK(cudaSetDevice(boot.rank % devices) == cudaSuccess, "cudaSetDevice");
  ncclComm_t nccl;
  CHECK(ncclCommInitRank(&nccl, boot.world_size, id, boot.rank) == ncclSuccess, "init");
  cudaStream_t stream;
  CHECK(cudaStreamCreate(&stream) == cudaSuccess, "stream");
  struct Run {
    bool compressed;
    lshmoe_dispatch_mode_t mode;
  };
  for (const Run run : {Run{true, LSHMOE_DISPATCH_ROWS}, Run{true, LSHMOE_DISPATCH_CENTROIDS},
                        Run{false, LSHMOE_DISPATCH_ROWS}}) {
    lshmoe_config_t* config = nullptr;
    lshmoe_config_create(&config);
    CHECK(lshmoe_config_set(config, "LSHMOE_ENABLE", run.compressed ? "1" : "0") == LSHMOE_SUCCESS,
          "config");
    lshmoe_comm_t* comm = nullptr;
    CHECK(lshmoe_comm_create_from_nccl(nccl, config, &comm) == LSHMOE_SUCCESS, "%s",
          lshmoe_last_error());
    lshmoe_config_destroy(config);
    for (const size_t scale : {1, 2, 1}) {
      if (round_trip(comm, boot.rank, boot.world_size, run.compressed, run.mode, scale, stream) !=
          0) {
        return 1;
      }
    }
    // The counters: every message to another rank, smaller on the wire
    // exactly when compressed (every rank sends or answers large messages).
    lshmoe_stats_t st{};
    CHECK(lshmoe_comm_stats(comm, &st) == LSHMOE_SUCCESS, "stats: %s", lshmoe_last_error());
    printf("nccl_exchange_check rank %d stats: %llu compressed, %llu raw, %llu -> %llu bytes\n",
           boot.rank, (unsigned long long)st.messages_compressed,
           (unsigned long long)st.messages_raw, (unsigned long long)st.logical_bytes,
           (unsigned long long)st.wire_bytes);
    // Two dispatches per round to each other rank this rank sends rows to.
    uint64_t dispatches = 0;
    for (const size_t scale : {1, 2, 1}) {
      for (int p = 0; p < boot.world_size; ++p) {
        if (p != boot.rank && rows_between(boot.rank, p, scale) > 0) dispatches += 2;
      }
    }
    CHECK(st.messages_compressed + st.messages_raw == dispatches,
          "%llu dispatch messages counted, %llu sent",
          (unsigned long long)(st.messages_compressed + st.messages_raw),
          (unsigned long long)dispatches);
    CHECK(st.logical_bytes > 0, "no bytes counted");
    if (run.compressed) {
      CHECK(st.wire_bytes < st.logical_bytes, "compressed run: %llu of %llu bytes on the wire",
            (unsigned long long)st.wire_bytes, (unsigned long long)st.logical_bytes);
      // The dispatch error squared, from the device's energies: each
      // destination gets 8 clusters x 17 noise patterns, few enough for the
      // slots (the CPU codec on rank 0's rows gives 4e-5).
      if (st.messages_compressed > 0) {
        CHECK(st.input_energy > 0 && st.residual_energy >= 0 &&
                  st.residual_energy < 0.01 * st.input_energy,
              "energies: input %g, residual %g", st.input_energy, st.residual_energy);
      }
    } else {
      CHECK(st.messages_compressed == 0 && st.wire_bytes == st.logical_bytes,
            "disabled run: %llu compressed messages, %llu of %llu bytes on the wire",
            (unsigned long long)st.messages_compressed, (unsigned long long)st.wire_bytes,
            (unsigned long long)st.logical_bytes);
    }
    if (run.compressed && run.mode == LSHMOE_DISPATCH_ROWS &&
        experts_round_trip(comm, boot.rank, boot.world_size, stream) != 0) {
      return 1;
    }
    lshmoe_comm_destroy(comm);
  }
  ncclCommDestroy(nccl);
  return 0;
}
