// liblshmoe_preload_cuda.so: the shim's device back end (src/interpose/
// device_api.h), a thin table over the CUDA codec, one message per call.
#include <cuda_runtime.h>

#include <memory>
#include <vector>

#include "codec/cuda/cuda_codec.h"
#include "codec/cuda/device_arena.h"
#include "common/config.h"
#include "common/status.h"
#include "interpose/device_api.h"

namespace {

namespace cuda = lshmoe::cuda;
using lshmoe::DType;

struct Pool {
  std::vector<std::unique_ptr<cuda::DeviceBuffer>> buffers;
};

cuda::CudaCodec* codec_of(void* c) {
  return static_cast<cuda::CudaCodec*>(c);
}

void* codec_create() {
  lshmoe::Config config;
  if (lshmoe::config_from_env(config) != LSHMOE_SUCCESS) return nullptr;
  config.stats = false;  // the shim reports per communicator
  // LSHMOE_VERIFY asks the shim for per-call checks of the device decoders;
  // payload checksums are the CPU codec's only.
  config.verify = false;
  std::unique_ptr<cuda::CudaCodec> codec;
  if (cuda::CudaCodec::create(config, &codec) != LSHMOE_SUCCESS) return nullptr;
  return codec.release();
}

void codec_destroy(void* c) {
  delete codec_of(c);
}

void* context_create() {
  return new cuda::BatchContext();
}

void context_destroy(void* ctx) {
  delete static_cast<cuda::BatchContext*>(ctx);
}

constexpr size_t kAtStart = 0;

int dispatch_encode(void* c, const void* rows, size_t n_rows, size_t row_elems, int dtype,
                    uint64_t seq, void* wire, void* ctx, void* stream) {
  return codec_of(c)->dispatch_encode(rows, &n_rows, 1, row_elems, DType(dtype), seq, wire,
                                      &kAtStart, static_cast<cuda::BatchContext*>(ctx), stream);
}

int dispatch_decode(void* c, const void* wire, size_t n_rows, size_t row_elems, int dtype,
                    uint64_t seq, void* rows, void* ctx, void* stream) {
  return codec_of(c)->dispatch_decode(wire, &kAtStart, &n_rows, 1, row_elems, DType(dtype), seq,
                                      rows, static_cast<cuda::BatchContext*>(ctx), stream);
}

int combine_encode(void* c, const void* ctx, const void* rows, uint64_t seq, void* wire,
                   int regrouped, void* stream) {
  const auto& context = *static_cast<const cuda::BatchContext*>(ctx);
  return regrouped
             ? codec_of(c)->combine_encode_regrouped(context, rows, seq, wire, &kAtStart, stream)
             : codec_of(c)->combine_encode(context, rows, seq, wire, &kAtStart, stream);
}

int combine_decode(void* c, const void* ctx, const void* wire, uint64_t seq, void* rows,
                   int regrouped, void* stream) {
  const auto& context = *static_cast<const cuda::BatchContext*>(ctx);
  return regrouped
             ? codec_of(c)->combine_decode_regrouped(context, wire, &kAtStart, seq, rows, stream)
             : codec_of(c)->combine_decode(context, wire, &kAtStart, seq, rows, stream);
}

void* pool_create() {
  return new Pool();
}

void pool_destroy(void* pool) {
  delete static_cast<Pool*>(pool);
}

void* buffer(void* p, size_t index, size_t bytes, void* stream) {
  auto& buffers = static_cast<Pool*>(p)->buffers;
  while (buffers.size() <= index) buffers.push_back(std::make_unique<cuda::DeviceBuffer>());
  if (buffers[index]->ensure(bytes > 0 ? bytes : 1, static_cast<cudaStream_t>(stream)) !=
      LSHMOE_SUCCESS) {
    return nullptr;
  }
  return buffers[index]->as<void>();
}

int capturing(void* stream) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  if (cudaStreamIsCapturing(static_cast<cudaStream_t>(stream), &status) != cudaSuccess) {
    cudaGetLastError();  // not sticky: the call's own checks report a bad stream
    return 0;
  }
  return status != cudaStreamCaptureStatusNone ? 1 : 0;
}

int copy(void* dst, const void* src, size_t bytes, void* stream) {
  if (capturing(stream)) {
    return lshmoe::fail(LSHMOE_ERR_INVALID_ARGUMENT,
                        "cuda: a shim record (settings compared at a communicator's first "
                        "compressed call, or LSHMOE_VERIFY=1) needs a wait, which a graph capture "
                        "cannot hold: run the step once before capturing, without LSHMOE_VERIFY");
  }
  auto s = static_cast<cudaStream_t>(stream);
  cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDefault, s);
  if (e == cudaSuccess) e = cudaStreamSynchronize(s);
  if (e == cudaSuccess) return LSHMOE_SUCCESS;
  return lshmoe::fail(LSHMOE_ERR_INTERNAL, "cuda: copying a shim record: %s",
                      cudaGetErrorString(e));
}

int check(void* c, void* stream) {
  return codec_of(c)->check_errors(stream);
}

int poll(void* c) {
  return codec_of(c)->poll_errors();
}

const char* last_error() {
  return lshmoe::last_error();
}

const LshmoeShimDeviceApi kApi = {
    lshmoe::interpose::kShimDeviceApiVersion,
    codec_create,
    codec_destroy,
    context_create,
    context_destroy,
    dispatch_encode,
    dispatch_decode,
    combine_encode,
    combine_decode,
    pool_create,
    pool_destroy,
    buffer,
    copy,
    capturing,
    check,
    poll,
    last_error,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const LshmoeShimDeviceApi* lshmoe_shim_device_api(
    void) {
  return &kApi;
}
