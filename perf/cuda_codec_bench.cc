// lshmoe_cuda_codec_bench: the CUDA codec's four steps on one GPU against a
// device-to-device copy of the same bytes measured in the same run (CUDA
// events, warm-up, median of many): 8 peers x 8192 rows of bf16 clustered
// tokens, rho = 0.2, H = 4096 and 7168. Exits 77 without a GPU.
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <vector>

#include "codec/cuda/cuda_codec.h"
#include "common/dtype.h"
#include "eval/synthetic.h"

namespace {

constexpr int kPeers = 8, kRows = 8192, kWarmup = 3, kIters = 21;

#define CUDA_OK(call)                                                               \
  do {                                                                              \
    const cudaError_t e_ = (call);                                                  \
    if (e_ != cudaSuccess) {                                                        \
      fprintf(stderr, "cuda_codec_bench: %s: %s\n", #call, cudaGetErrorString(e_)); \
      return 1;                                                                     \
    }                                                                               \
  } while (0)

// Median milliseconds of fn on the stream.
float time_ms(cudaStream_t stream, const std::function<bool()>& fn) {
  cudaEvent_t a, b;
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  std::vector<float> ms;
  for (int i = 0; i < kWarmup + kIters; ++i) {
    cudaEventRecord(a, stream);
    if (!fn()) return -1.0f;
    cudaEventRecord(b, stream);
    cudaEventSynchronize(b);
    float t = 0;
    cudaEventElapsedTime(&t, a, b);
    if (i >= kWarmup) ms.push_back(t);
  }
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main() {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    fprintf(stderr, "cuda_codec_bench: no CUDA device\n");
    return 77;
  }
  lshmoe::Config config;
  std::unique_ptr<lshmoe::cuda::CudaCodec> codec;
  if (lshmoe::cuda::CudaCodec::create(config, &codec) != LSHMOE_SUCCESS) {
    fprintf(stderr, "cuda_codec_bench: %s\n", lshmoe_last_error());
    return 1;
  }
  cudaStream_t stream;
  CUDA_OK(cudaStreamCreate(&stream));
  const lshmoe::DType t = lshmoe::DType::kBFloat16;
  printf("| H | step | ms | GB/s of rows | vs device copy |\n|---|---|---|---|---|\n");
  for (size_t h : {size_t(4096), size_t(7168)}) {
    lshmoe::eval::SyntheticSpec spec;
    spec.rows = kRows;
    spec.row_elems = h;
    const std::vector<float> tokens = lshmoe::eval::clustered_tokens(spec);
    std::vector<uint16_t> host(size_t(kPeers) * kRows * h);
    for (int p = 0; p < kPeers; ++p) {  // each peer's message: the rows in another order
      for (size_t i = 0; i < size_t(kRows); ++i) {
        const size_t src = (i * 2654435761u + size_t(p) * 97) % kRows;
        for (size_t j = 0; j < h; ++j) {
          host[(size_t(p) * kRows + i) * h + j] = lshmoe::float_to_bf16(tokens[src * h + j]);
        }
      }
    }
    lshmoe_plan_t plan;
    codec->plan(kRows, h, t, &plan);
    std::vector<size_t> n_rows(kPeers, kRows), dispatch_at(kPeers), combine_at(kPeers);
    for (int p = 0; p < kPeers; ++p) {
      dispatch_at[size_t(p)] = size_t(p) * ((plan.dispatch_bytes + 15) / 16 * 16);
      combine_at[size_t(p)] = size_t(p) * ((plan.combine_bytes + 15) / 16 * 16);
    }
    const size_t bytes = host.size() * 2;
    void *rows, *rows2, *wire, *wire2, *copy;
    CUDA_OK(cudaMalloc(&rows, bytes));
    CUDA_OK(cudaMalloc(&rows2, bytes));
    CUDA_OK(cudaMalloc(&copy, bytes));
    CUDA_OK(cudaMalloc(&wire, kPeers * ((plan.dispatch_bytes + 15) / 16 * 16)));
    CUDA_OK(cudaMalloc(&wire2, kPeers * ((plan.combine_bytes + 15) / 16 * 16)));
    CUDA_OK(cudaMemcpy(rows, host.data(), bytes, cudaMemcpyHostToDevice));
    lshmoe::cuda::BatchContext origin, expert;
    auto ok = [](lshmoe_status_t s) {
      if (s != LSHMOE_SUCCESS) fprintf(stderr, "cuda_codec_bench: %s\n", lshmoe_last_error());
      return s == LSHMOE_SUCCESS;
    };
    const float copy_ms = time_ms(stream, [&] {
      return cudaMemcpyAsync(copy, rows, bytes, cudaMemcpyDeviceToDevice, stream) == cudaSuccess;
    });
    const float compress_ms = time_ms(stream, [&] {
      return ok(codec->dispatch_encode(rows, n_rows.data(), kPeers, h, t, 1, wire,
                                       dispatch_at.data(), &origin, stream));
    });
    const float expand_ms = time_ms(stream, [&] {
      return ok(codec->dispatch_decode(wire, dispatch_at.data(), n_rows.data(), kPeers, h, t, 1,
                                       rows2, &expert, stream));
    });
    const float encode2_ms = time_ms(stream, [&] {
      return ok(codec->combine_encode(expert, rows2, 2, wire2, combine_at.data(), stream));
    });
    const float decode2_ms = time_ms(stream, [&] {
      return ok(codec->combine_decode(origin, wire2, combine_at.data(), 2, rows2, stream));
    });
    if (codec->check_errors(stream) != LSHMOE_SUCCESS) {
      fprintf(stderr, "cuda_codec_bench: %s\n", lshmoe_last_error());
      return 1;
    }
    const struct {
      const char* name;
      float ms;
    } steps[] = {{"device copy", copy_ms},
                 {"compress", compress_ms},
                 {"expand", expand_ms},
                 {"combine encode", encode2_ms},
                 {"combine decode", decode2_ms}};
    for (const auto& s : steps) {
      printf("| %zu | %s | %.3f | %.0f | %.2fx |\n", h, s.name, s.ms, double(bytes) / s.ms / 1e6,
             double(copy_ms) / s.ms);
    }
    cudaFree(rows);
    cudaFree(rows2);
    cudaFree(copy);
    cudaFree(wire);
    cudaFree(wire2);
  }
  return 0;
}
