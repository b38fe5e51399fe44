/*
 * A compressed ncclAlltoAll captured in a CUDA graph, under the LD_PRELOAD
 * shim and the real NCCL (perf/gpu_check.sh runs it, 2 ranks on one GPU):
 * a dispatch all-to-all of clustered bf16 rows, an identity expert, the
 * combine all-to-all back. Run eagerly on two inputs (the first run also
 * meets the peers), then captured once and replayed with each input copied
 * in before its replay: every replay must give the eager bytes exactly, and
 * the combine the input within the codec's bound. Without the shim the
 * same program checks that the combine is the input exactly.
 *
 * Environment: SHIM_EXPECTED=1 when the shim is preloaded (LSHMOE_HIDDEN=256).
 * Exits 77 without a CUDA device.
 */
#include "nccl_test_util.h"
#include "test_rows.h"

#include <cuda_runtime.h>
#include <math.h>

enum { kHidden = 256, kRowsPerPeer = 512, kClusters = 16 };

#define CUDA_TEST_CHECK(call)                                \
  do {                                                       \
    cudaError_t cuda_test_error_ = (call);                   \
    NCCL_TEST_REQUIRE(cuda_test_error_ == cudaSuccess, "%s", \
                      cudaGetErrorString(cuda_test_error_)); \
  } while (0)

/* Input `which` of this rank: rows near one of kClusters centres. */
static void fill(uint16_t* x, size_t rows, int rank, int which) {
  size_t i, k;
  for (i = 0; i < rows; ++i) {
    const uint32_t cluster = (uint32_t)((i * 7 + (size_t)which) % kClusters);
    for (k = 0; k < kHidden; ++k) {
      const float centre = 2.0f * noise(cluster, (uint32_t)k, 11u + (uint32_t)which);
      x[i * kHidden + k] =
          to_bf16(centre + 0.05f * noise((uint32_t)i, (uint32_t)k, (uint32_t)(rank * 31 + which)));
    }
  }
}

/* Dispatch, identity expert, combine: all on `stream`. */
static void step(ncclComm_t comm, const void* x, void* xe, void* ye, void* y, size_t rows,
                 cudaStream_t stream) {
  const size_t count = (size_t)kRowsPerPeer * kHidden;
  NCCL_TEST_CHECK(ncclAlltoAll(x, xe, count, ncclBfloat16, comm, stream));
  CUDA_TEST_CHECK(cudaMemcpyAsync(ye, xe, rows * kHidden * 2, cudaMemcpyDeviceToDevice, stream));
  NCCL_TEST_CHECK(ncclAlltoAll(ye, y, count, ncclBfloat16, comm, stream));
}

static double relative_error(const uint16_t* got, const uint16_t* want, size_t n) {
  double e = 0.0, w = 0.0;
  size_t i;
  for (i = 0; i < n; ++i) {
    const double d = (double)from_bf16(got[i]) - (double)from_bf16(want[i]);
    e += d * d;
    w += (double)from_bf16(want[i]) * (double)from_bf16(want[i]);
  }
  return sqrt(e / (w > 0.0 ? w : 1.0));
}

int main(void) {
  int rank, world, devices = 0, input;
  const int expect_compressed = getenv("SHIM_EXPECTED") != NULL;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    printf("shim_graph_check: no CUDA device\n");
    return 77;
  }
  ncclComm_t comm = nccl_test_init(&rank, &world);
  const size_t rows = (size_t)kRowsPerPeer * (size_t)world, bytes = rows * kHidden * 2;
  uint16_t* inputs[2];
  uint16_t* eager[2];
  uint16_t* got = malloc(bytes);
  void *x, *xe, *ye, *y;
  cudaStream_t stream;
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  NCCL_TEST_REQUIRE(got != NULL, "out of memory");
  CUDA_TEST_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  CUDA_TEST_CHECK(cudaMalloc(&x, bytes));
  CUDA_TEST_CHECK(cudaMalloc(&xe, bytes));
  CUDA_TEST_CHECK(cudaMalloc(&ye, bytes));
  CUDA_TEST_CHECK(cudaMalloc(&y, bytes));
  for (input = 0; input < 2; ++input) {
    inputs[input] = malloc(bytes);
    eager[input] = malloc(bytes);
    NCCL_TEST_REQUIRE(inputs[input] != NULL && eager[input] != NULL, "out of memory");
    fill(inputs[input], rows, rank, input);
  }

  /* Eager: the reference bytes (the first run also meets the peers). */
  for (input = 0; input < 2; ++input) {
    CUDA_TEST_CHECK(cudaMemcpyAsync(x, inputs[input], bytes, cudaMemcpyHostToDevice, stream));
    step(comm, x, xe, ye, y, rows, stream);
    CUDA_TEST_CHECK(cudaMemcpyAsync(eager[input], y, bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_TEST_CHECK(cudaStreamSynchronize(stream));
    {
      const double err = relative_error(eager[input], inputs[input], rows * kHidden);
      NCCL_TEST_REQUIRE(expect_compressed ? err < 0.01 : err == 0.0,
                        "eager input %d: the combine is %.4g from the input", input, err);
      NCCL_TEST_REQUIRE(!expect_compressed || err > 0.0,
                        "eager input %d: the combine equals the input exactly: nothing was "
                        "compressed",
                        input);
    }
  }

  /* Captured once, replayed with each input copied in first. */
  CUDA_TEST_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
  step(comm, x, xe, ye, y, rows, stream);
  CUDA_TEST_CHECK(cudaStreamEndCapture(stream, &graph));
  CUDA_TEST_CHECK(cudaGraphInstantiate(&exec, graph, 0));
  for (int replay = 0; replay < 4; ++replay) {
    input = replay % 2;
    CUDA_TEST_CHECK(cudaMemcpyAsync(x, inputs[input], bytes, cudaMemcpyHostToDevice, stream));
    CUDA_TEST_CHECK(cudaMemsetAsync(y, 0xff, bytes, stream));
    CUDA_TEST_CHECK(cudaGraphLaunch(exec, stream));
    CUDA_TEST_CHECK(cudaMemcpyAsync(got, y, bytes, cudaMemcpyDeviceToHost, stream));
    CUDA_TEST_CHECK(cudaStreamSynchronize(stream));
    NCCL_TEST_REQUIRE(memcmp(got, eager[input], bytes) == 0,
                      "replay %d (input %d) differs from the eager run: %.4g", replay, input,
                      relative_error(got, eager[input], rows * kHidden));
  }
  /* An eager step after the replays still gives its own bytes. */
  CUDA_TEST_CHECK(cudaMemcpyAsync(x, inputs[1], bytes, cudaMemcpyHostToDevice, stream));
  step(comm, x, xe, ye, y, rows, stream);
  CUDA_TEST_CHECK(cudaMemcpyAsync(got, y, bytes, cudaMemcpyDeviceToHost, stream));
  CUDA_TEST_CHECK(cudaStreamSynchronize(stream));
  NCCL_TEST_REQUIRE(memcmp(got, eager[1], bytes) == 0, "an eager step after the replays differs");

  CUDA_TEST_CHECK(cudaGraphExecDestroy(exec));
  CUDA_TEST_CHECK(cudaGraphDestroy(graph));
  NCCL_TEST_CHECK(ncclCommDestroy(comm));
  cudaFree(x);
  cudaFree(xe);
  cudaFree(ye);
  cudaFree(y);
  cudaStreamDestroy(stream);
  for (input = 0; input < 2; ++input) {
    free(inputs[input]);
    free(eager[input]);
  }
  free(got);
  printf("rank %d: shim_graph_check done (%s)\n", rank, expect_compressed ? "shim" : "raw");
  return 0;
}
