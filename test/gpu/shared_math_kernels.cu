#include <cuda_runtime.h>

#include "codec/lsh_math.h"
#include "codec/wire_format.h"
#include "common/dtype.h"
#include "shared_math_kernels.h"

namespace lshmoe::gputest {
namespace {

__global__ void projection_kernel(uint64_t seed, uint32_t tables, uint32_t rows, uint32_t cols,
                                  float* out) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i >= tables * rows * cols) return;
  const uint32_t t = i / (rows * cols), r = (i / cols) % rows, c = i % cols;
  out[i] = projection_entry(seed, t, r, c);
}

__global__ void code_kernel(const float* vectors, int dim, uint32_t n, uint32_t* codes) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) codes[i] = cross_polytope_code(vectors + size_t(i) * dim, dim);
}

__global__ void convert_kernel(const float* values, uint32_t n, uint16_t* bf16, uint16_t* fp16) {
  const uint32_t i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) {
    bf16[i] = float_to_bf16(values[i]);
    fp16[i] = float_to_fp16(values[i]);
  }
}

__global__ void crc_kernel(const uint8_t* header, uint32_t* crc) {
  *crc = wire::crc32c_bitwise(0, header, offsetof(wire::Header, header_checksum));
}

template <typename T>
struct DeviceBuffer {
  T* ptr = nullptr;
  explicit DeviceBuffer(size_t n) {
    if (cudaMalloc(&ptr, (n ? n : 1) * sizeof(T)) != cudaSuccess) ptr = nullptr;
  }
  ~DeviceBuffer() { cudaFree(ptr); }
};

unsigned blocks(size_t n) {
  return unsigned((n + 255) / 256);
}

}  // namespace

bool device_available() {
  int count = 0;
  return cudaGetDeviceCount(&count) == cudaSuccess && count > 0;
}

bool run_shared_math(const SharedMathInput& in, SharedMathOutput* out) {
  const size_t n_proj = size_t(in.tables) * in.rows * in.cols;
  const size_t n_vec = in.vectors.size() / size_t(in.dim);
  const size_t n_val = in.values.size();
  DeviceBuffer<float> proj(n_proj), vec(in.vectors.size()), val(n_val);
  DeviceBuffer<uint32_t> codes(n_vec), crc(1);
  DeviceBuffer<uint16_t> bf16(n_val), fp16(n_val);
  DeviceBuffer<uint8_t> header(64);
  if (!proj.ptr || !vec.ptr || !val.ptr || !codes.ptr || !crc.ptr || !bf16.ptr || !fp16.ptr ||
      !header.ptr) {
    return false;
  }
  bool ok = cudaMemcpy(vec.ptr, in.vectors.data(), in.vectors.size() * sizeof(float),
                       cudaMemcpyHostToDevice) == cudaSuccess &&
            cudaMemcpy(val.ptr, in.values.data(), n_val * sizeof(float), cudaMemcpyHostToDevice) ==
                cudaSuccess &&
            cudaMemcpy(header.ptr, in.header.data(), 64, cudaMemcpyHostToDevice) == cudaSuccess;
  if (!ok) return false;
  projection_kernel<<<blocks(n_proj), 256>>>(in.seed, in.tables, in.rows, in.cols, proj.ptr);
  code_kernel<<<blocks(n_vec), 256>>>(vec.ptr, in.dim, uint32_t(n_vec), codes.ptr);
  convert_kernel<<<blocks(n_val), 256>>>(val.ptr, uint32_t(n_val), bf16.ptr, fp16.ptr);
  crc_kernel<<<1, 1>>>(header.ptr, crc.ptr);
  if (cudaDeviceSynchronize() != cudaSuccess) return false;
  out->projection.resize(n_proj);
  out->codes.resize(n_vec);
  out->bf16.resize(n_val);
  out->fp16.resize(n_val);
  ok = cudaMemcpy(out->projection.data(), proj.ptr, n_proj * sizeof(float),
                  cudaMemcpyDeviceToHost) == cudaSuccess &&
       cudaMemcpy(out->codes.data(), codes.ptr, n_vec * sizeof(uint32_t), cudaMemcpyDeviceToHost) ==
           cudaSuccess &&
       cudaMemcpy(out->bf16.data(), bf16.ptr, n_val * 2, cudaMemcpyDeviceToHost) == cudaSuccess &&
       cudaMemcpy(out->fp16.data(), fp16.ptr, n_val * 2, cudaMemcpyDeviceToHost) == cudaSuccess &&
       cudaMemcpy(&out->header_crc, crc.ptr, 4, cudaMemcpyDeviceToHost) == cudaSuccess;
  return ok;
}

}  // namespace lshmoe::gputest
