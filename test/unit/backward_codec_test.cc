// The codec's half of the backward, one message at a time: what each
// decoder writes (slot means, their sums, dx = S + alpha (g - M)), and that
// a gradient message that is corrupt, of the wrong kind or out of order is
// rejected with a named error and writes nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "common/config.h"
#include "common/dtype.h"

namespace lshmoe::cpu {
namespace {

constexpr size_t kRows = 96, kElems = 32;

std::vector<float> clustered(size_t n, size_t h, float offset) {
  std::vector<float> v(n * h);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < h; ++j)
      v[i * h + j] =
          std::sin(float(i % 6) * 1.3f + float(j) * 0.7f) + offset + 0.01f * float((i * 7 + j) % 5);
  return v;
}

class BackwardCodec : public ::testing::Test {
 protected:
  void SetUp() override {
    Config config;
    config.verify = true;
    ASSERT_EQ(CpuCodec::create(config, &codec_), LSHMOE_SUCCESS);
    x_ = clustered(kRows, kElems, 0.0f);
    g_ = clustered(kRows, kElems, 0.5f);
    lshmoe_plan_t plan;
    ASSERT_EQ(codec_->plan(kRows, kElems, DType::kFloat32, &plan), LSHMOE_SUCCESS);
    ASSERT_TRUE(plan.compressed);
    std::vector<uint8_t> wire(plan.dispatch_bytes), back(plan.combine_bytes);
    expanded_.resize(x_.size());
    std::vector<float> y(x_.size());
    ASSERT_EQ(codec_->dispatch_encode(x_.data(), kRows, kElems, DType::kFloat32, 1, wire.data(),
                                      wire.size(), &origin_),
              LSHMOE_SUCCESS);
    ASSERT_EQ(codec_->dispatch_decode(wire.data(), wire.size(), kRows, kElems, DType::kFloat32, 1,
                                      expanded_.data(), &expert_),
              LSHMOE_SUCCESS);
    ASSERT_EQ(codec_->combine_encode(expert_, expanded_.data(), 2, back.data(), back.size()),
              LSHMOE_SUCCESS);
    ASSERT_EQ(codec_->combine_decode(origin_, back.data(), back.size(), 2, y.data()),
              LSHMOE_SUCCESS);
    bytes_ = origin_.shape.wire_bytes(LSHMOE_COMBINE_GRAD);
  }

  // M_k (the mean of g over slot k), per row.
  std::vector<double> slot_mean_of(const std::vector<float>& v) const {
    std::vector<double> sum(origin_.shape.slots * kElems, 0.0), count(origin_.shape.slots, 0.0);
    for (size_t i = 0; i < kRows; ++i) {
      count[origin_.assignment[i]] += 1;
      for (size_t j = 0; j < kElems; ++j)
        sum[origin_.assignment[i] * kElems + j] += v[i * kElems + j];
    }
    std::vector<double> per_row(kRows * kElems);
    for (size_t i = 0; i < kRows; ++i)
      for (size_t j = 0; j < kElems; ++j)
        per_row[i * kElems + j] =
            sum[origin_.assignment[i] * kElems + j] / count[origin_.assignment[i]];
    return per_row;
  }

  std::unique_ptr<CpuCodec> codec_;
  std::vector<float> x_, g_, expanded_;
  OriginContext origin_;
  ExpertContext expert_;
  size_t bytes_ = 0;
};

TEST_F(BackwardCodec, GradientsAreTheSlotMeansAndTheResidualPath) {
  std::vector<uint8_t> wire(bytes_), wire2(bytes_);
  ASSERT_EQ(codec_->combine_backward_encode(&origin_, g_.data(), 3, wire.data(), wire.size()),
            LSHMOE_SUCCESS);
  std::vector<float> gy(g_.size());
  ASSERT_EQ(codec_->combine_backward_decode(expert_, wire.data(), wire.size(), 3, gy.data(), false),
            LSHMOE_SUCCESS);
  const std::vector<double> m = slot_mean_of(g_);
  for (size_t e = 0; e < gy.size(); ++e) ASSERT_NEAR(gy[e], m[e], 1e-5) << e;
  // The expert's input gradient: 2 gy (a doubling expert).
  std::vector<float> gxe(gy.size()), gx(gy.size());
  for (size_t e = 0; e < gy.size(); ++e) gxe[e] = 2.0f * gy[e];
  ASSERT_EQ(
      codec_->dispatch_backward_encode(expert_, gxe.data(), 4, wire2.data(), wire2.size(), false),
      LSHMOE_SUCCESS);
  ASSERT_EQ(codec_->dispatch_backward_decode(origin_, wire2.data(), wire2.size(), 4, gx.data()),
            LSHMOE_SUCCESS);
  for (size_t e = 0; e < gx.size(); ++e) {
    ASSERT_NEAR(gx[e], 2.0 * m[e] + (g_[e] - m[e]), 1e-5) << e;  // alpha = 1
  }
}

TEST_F(BackwardCodec, CorruptOrMisplacedGradientMessagesWriteNothing) {
  std::vector<uint8_t> wire(bytes_);
  std::vector<float> out(g_.size(), -7.0f);
  const std::vector<float> untouched = out;
  // Before the combine's backward, the origin has no g - M to add.
  ASSERT_EQ(codec_->dispatch_backward_decode(origin_, wire.data(), wire.size(), 4, out.data()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
  ASSERT_EQ(codec_->combine_backward_encode(&origin_, g_.data(), 3, wire.data(), wire.size()),
            LSHMOE_SUCCESS);
  // Twice: refused (g - M has replaced the residual, and again it would not).
  std::vector<uint8_t> again(bytes_);
  EXPECT_EQ(codec_->combine_backward_encode(&origin_, g_.data(), 3, again.data(), again.size()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
  // The forward's combine decode can no longer run on this context.
  EXPECT_EQ(codec_->combine_decode(origin_, wire.data(), wire.size(), 3, out.data()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
  // A combine-gradient message is not a dispatch-gradient one.
  EXPECT_EQ(codec_->dispatch_backward_decode(origin_, wire.data(), wire.size(), 3, out.data()),
            LSHMOE_ERR_WIRE_BAD_KIND);
  EXPECT_NE(std::string(last_error()).find("dispatch backward decode"), std::string::npos)
      << last_error();
  // A flipped payload byte (LSHMOE_VERIFY=1), a wrong sequence, a short message.
  std::vector<uint8_t> bad = wire;
  bad[bad.size() - 5] ^= 0x40;
  EXPECT_EQ(codec_->combine_backward_decode(expert_, bad.data(), bad.size(), 3, out.data(), false),
            LSHMOE_ERR_WIRE_BAD_CHECKSUM);
  EXPECT_EQ(codec_->combine_backward_decode(expert_, wire.data(), wire.size(), 9, out.data(), true),
            LSHMOE_ERR_WIRE_BAD_SEQUENCE);
  EXPECT_EQ(
      codec_->combine_backward_decode(expert_, wire.data(), wire.size() - 16, 3, out.data(), false),
      LSHMOE_ERR_WIRE_TRUNCATED);
  EXPECT_EQ(out, untouched);
}

TEST_F(BackwardCodec, CentroidModeSlotsGetTheSumAndSendTheirGradientOverTheCount) {
  std::vector<uint8_t> wire(bytes_), wire2(bytes_);
  ASSERT_EQ(codec_->combine_backward_encode(&origin_, g_.data(), 3, wire.data(), wire.size()),
            LSHMOE_SUCCESS);
  const size_t slots = origin_.shape.slots, used = origin_.shape.used_slots;
  std::vector<float> gslot(slots * kElems, -1.0f);
  ASSERT_EQ(
      codec_->combine_backward_decode(expert_, wire.data(), wire.size(), 3, gslot.data(), true),
      LSHMOE_SUCCESS);
  std::vector<double> sum(slots * kElems, 0.0), count(slots, 0.0);
  for (size_t i = 0; i < kRows; ++i) {
    count[origin_.assignment[i]] += 1;
    for (size_t j = 0; j < kElems; ++j)
      sum[origin_.assignment[i] * kElems + j] += g_[i * kElems + j];
  }
  for (size_t k = 0; k < slots; ++k)
    for (size_t j = 0; j < kElems; ++j)
      ASSERT_NEAR(gslot[k * kElems + j], k < used ? sum[k * kElems + j] : 0.0,
                  1e-4 * (1 + std::fabs(sum[k * kElems + j])));
  // The slot's gradient goes back over its count: dx = gslot / |k| + (g - M).
  std::vector<float> gx(g_.size());
  ASSERT_EQ(
      codec_->dispatch_backward_encode(expert_, gslot.data(), 4, wire2.data(), wire2.size(), true),
      LSHMOE_SUCCESS);
  ASSERT_EQ(codec_->dispatch_backward_decode(origin_, wire2.data(), wire2.size(), 4, gx.data()),
            LSHMOE_SUCCESS);
  for (size_t e = 0; e < gx.size(); ++e) ASSERT_NEAR(gx[e], g_[e], 1e-5) << e;
}

}  // namespace
}  // namespace lshmoe::cpu
