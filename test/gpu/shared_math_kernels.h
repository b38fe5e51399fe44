// Device-side evaluation of the scalar helpers the CPU and CUDA back ends
// share, for comparison with the host (compiled by nvcc, called from GTest).
#pragma once

#include <cstdint>
#include <vector>

namespace lshmoe::gputest {

// True when a CUDA device can be used.
bool device_available();

struct SharedMathInput {
  uint64_t seed;
  uint32_t tables, rows, cols;  // projection entries evaluated on the device
  std::vector<float> vectors;   // cross-polytope codes of vectors of `dim` values
  int dim;
  std::vector<float> values;    // converted to bf16 and fp16
  std::vector<uint8_t> header;  // 64 bytes: header checksum
};

struct SharedMathOutput {
  std::vector<float> projection;  // [tables][rows][cols]
  std::vector<uint32_t> codes;
  std::vector<uint16_t> bf16, fp16;
  uint32_t header_crc;
};

// Returns false (with nothing written) when a CUDA call fails.
bool run_shared_math(const SharedMathInput& in, SharedMathOutput* out);

}  // namespace lshmoe::gputest
