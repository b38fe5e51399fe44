// The helpers shared by the CPU and CUDA back ends must compute identical
// results on both: projection matrices, cross-polytope codes, dtype
// conversions and header checksums. Skipped without a GPU.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "codec/lsh_math.h"
#include "codec/wire_format.h"
#include "common/dtype.h"
#include "shared_math_kernels.h"

namespace lshmoe {
namespace {

TEST(SharedMathGpu, DeviceMatchesHostBitForBit) {
  if (!gputest::device_available()) GTEST_SKIP() << "no CUDA device";
  gputest::SharedMathInput in;
  in.seed = 0x15a3e;
  in.tables = 6;
  in.rows = 8;
  in.cols = 4096;
  in.dim = 8;
  std::mt19937 rng(7);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  in.vectors.resize(size_t(in.dim) * 10000);
  for (float& v : in.vectors) v = normal(rng);
  // Exact ties must also resolve identically (lowest index).
  for (int j = 0; j < in.dim; ++j) in.vectors[j] = (j % 2) ? -1.0f : 1.0f;
  in.values.resize(100000);
  std::uniform_int_distribution<uint32_t> bits;
  for (float& v : in.values) {
    const uint32_t b = bits(rng);
    memcpy(&v, &b, 4);
  }
  in.header.resize(64);
  for (auto& b : in.header) b = uint8_t(bits(rng));

  gputest::SharedMathOutput out;
  ASSERT_TRUE(gputest::run_shared_math(in, &out));

  size_t mismatches = 0;
  for (uint32_t t = 0; t < in.tables; ++t)
    for (uint32_t r = 0; r < in.rows; ++r)
      for (uint32_t c = 0; c < in.cols; ++c) {
        const float host = projection_entry(in.seed, t, r, c);
        const float dev = out.projection[(size_t(t) * in.rows + r) * in.cols + c];
        mismatches += memcmp(&host, &dev, 4) != 0;
      }
  EXPECT_EQ(mismatches, 0u) << "projection entries differ between host and device";
  for (size_t i = 0; i < out.codes.size(); ++i) {
    ASSERT_EQ(out.codes[i], cross_polytope_code(&in.vectors[i * in.dim], in.dim)) << "vector " << i;
  }
  for (size_t i = 0; i < in.values.size(); ++i) {
    ASSERT_EQ(out.bf16[i], float_to_bf16(in.values[i])) << "value " << i;
    ASSERT_EQ(out.fp16[i], float_to_fp16(in.values[i])) << "value " << i;
  }
  EXPECT_EQ(out.header_crc, wire::crc32c_bitwise(0, in.header.data(), 60));
}

}  // namespace
}  // namespace lshmoe
