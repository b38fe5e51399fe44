// The codec's steps of a pair kept for the shim's exact backward: the
// backward of a regrouped combine (its own grouping b) against a float64
// reference, a replayed forward that gives the forward's bytes back, and
// kept-pair messages that are corrupt, of the other step or out of order,
// rejected with a named error and writing nothing.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "common/config.h"
#include "common/dtype.h"

namespace lshmoe::cpu {
namespace {

constexpr size_t kRows = 120, kElems = 32;
constexpr float kAlpha = 0.75f;

std::vector<float> clustered(size_t n, size_t h, float phase, size_t clusters) {
  std::vector<float> v(n * h);
  for (size_t i = 0; i < n; ++i)
    for (size_t j = 0; j < h; ++j)
      v[i * h + j] = std::sin(float(i % clusters) * 1.3f + float(j) * 0.7f + phase) +
                     0.02f * float((i * 7 + j * 3) % 5);
  return v;
}

// Per row, the mean over its slot of `v` under `assignment`.
std::vector<double> slot_means_per_row(const std::vector<float>& v,
                                       const std::vector<uint32_t>& assignment) {
  uint32_t slots = 0;
  for (uint32_t a : assignment) slots = std::max(slots, a + 1);
  std::vector<double> sum(slots * kElems, 0.0), count(slots, 0.0);
  for (size_t i = 0; i < kRows; ++i) {
    count[assignment[i]] += 1;
    for (size_t j = 0; j < kElems; ++j) sum[assignment[i] * kElems + j] += v[i * kElems + j];
  }
  std::vector<double> out(kRows * kElems);
  for (size_t i = 0; i < kRows; ++i)
    for (size_t j = 0; j < kElems; ++j)
      out[i * kElems + j] = sum[assignment[i] * kElems + j] / count[assignment[i]];
  return out;
}

class KeptPair : public ::testing::Test {
 protected:
  void SetUp() override {
    Config config;
    config.verify = true;
    config.compensate = kAlpha;
    ASSERT_EQ(CpuCodec::create(config, &codec_), LSHMOE_SUCCESS);
    x_ = clustered(kRows, kElems, 0.0f, 6);
    lshmoe_plan_t plan;
    ASSERT_EQ(codec_->plan(kRows, kElems, DType::kFloat32, &plan), LSHMOE_SUCCESS);
    ASSERT_TRUE(plan.compressed);
    bytes_ = plan.combine_bytes;
    std::vector<uint8_t> wire(plan.dispatch_bytes), back(plan.dispatch_bytes);
    xe_.resize(x_.size());
    y_.resize(x_.size());
    ASSERT_EQ(codec_->dispatch_encode(x_.data(), kRows, kElems, DType::kFloat32, 1, wire.data(),
                                      wire.size(), &origin_),
              LSHMOE_SUCCESS);
    ASSERT_EQ(codec_->dispatch_decode(wire.data(), wire.size(), kRows, kElems, DType::kFloat32, 1,
                                      xe_.data(), &expert_),
              LSHMOE_SUCCESS);
    // Two experts on the rank: even rows doubled, odd rows negated, so
    // that the combine's grouping b differs from the dispatch's a.
    ye_ = expert(xe_);
    ASSERT_EQ(codec_->combine_encode_regrouped(expert_, ye_.data(), 2, back.data(), back.size(),
                                               &expert_groups_),
              LSHMOE_SUCCESS);
    ASSERT_EQ(codec_->combine_decode_regrouped(origin_, back.data(), back.size(), 2, y_.data(),
                                               &origin_groups_),
              LSHMOE_SUCCESS);
    ASSERT_EQ(expert_groups_.assignment, origin_groups_.assignment);
    ASSERT_EQ(expert_groups_.used_slots, origin_groups_.used_slots);
    ASSERT_NE(expert_groups_.assignment, origin_.assignment) << "b should differ from a here";
  }

  static std::vector<float> expert(const std::vector<float>& in) {
    std::vector<float> out(in.size());
    for (size_t i = 0; i < kRows; ++i)
      for (size_t j = 0; j < kElems; ++j)
        out[i * kElems + j] = (i % 2 == 0 ? 2.0f : -1.0f) * in[i * kElems + j];
    return out;
  }

  std::unique_ptr<CpuCodec> codec_;
  std::vector<float> x_, xe_, ye_, y_;
  OriginContext origin_;
  ExpertContext expert_;
  Grouping expert_groups_, origin_groups_;
  size_t bytes_ = 0;
};

TEST_F(KeptPair, BackwardOfTheRegroupedCombineIsTheReferenceGradient) {
  const std::vector<float> g = clustered(kRows, kElems, 2.0f, 9);
  std::vector<uint8_t> wire(bytes_), wire2(bytes_);
  ASSERT_EQ(codec_->kept_combine_backward_encode(&origin_, origin_groups_, g.data(), 5, wire.data(),
                                                 wire.size()),
            LSHMOE_SUCCESS);
  std::vector<float> ge(x_.size());
  ASSERT_EQ(codec_->kept_combine_backward_decode(expert_, expert_groups_, wire.data(), wire.size(),
                                                 5, ge.data()),
            LSHMOE_SUCCESS);
  // Row j of the expert gets M'_b(j), the mean of g over its combine slot.
  const std::vector<double> m_b = slot_means_per_row(g, expert_groups_.assignment);
  for (size_t k = 0; k < ge.size(); ++k) ASSERT_NEAR(ge[k], m_b[k], 1e-5) << k;
  // The expert's own backward, then the dispatch's.
  const std::vector<float> gxe = expert(ge);
  ASSERT_EQ(
      codec_->dispatch_backward_encode(expert_, gxe.data(), 6, wire2.data(), wire2.size(), false),
      LSHMOE_SUCCESS);
  std::vector<float> dx(x_.size());
  ASSERT_EQ(codec_->dispatch_backward_decode(origin_, wire2.data(), wire2.size(), 6, dx.data()),
            LSHMOE_SUCCESS);
  // dx_i = S_a(i) + alpha (g_i - M_a(i)), S the slot mean of gxe under a.
  const std::vector<double> s_a = slot_means_per_row(gxe, origin_.assignment);
  const std::vector<double> m_a = slot_means_per_row(g, origin_.assignment);
  for (size_t k = 0; k < dx.size(); ++k) {
    ASSERT_NEAR(dx[k], s_a[k] + kAlpha * (g[k] - m_a[k]), 1e-5) << k;
  }
}

TEST_F(KeptPair, TheAdjointOfTheLinearForwardHolds) {
  // With the groupings fixed the forward is linear in x (the expert is), so
  // <y, g> = <x, dx> for the exact backward.
  const std::vector<float> g = clustered(kRows, kElems, 1.0f, 7);
  std::vector<uint8_t> wire(bytes_);
  std::vector<float> ge(x_.size()), dx(x_.size());
  ASSERT_EQ(codec_->kept_combine_backward_encode(&origin_, origin_groups_, g.data(), 5, wire.data(),
                                                 wire.size()),
            LSHMOE_SUCCESS);
  ASSERT_EQ(codec_->kept_combine_backward_decode(expert_, expert_groups_, wire.data(), wire.size(),
                                                 5, ge.data()),
            LSHMOE_SUCCESS);
  const std::vector<float> gxe = expert(ge);
  ASSERT_EQ(
      codec_->dispatch_backward_encode(expert_, gxe.data(), 6, wire.data(), wire.size(), false),
      LSHMOE_SUCCESS);
  ASSERT_EQ(codec_->dispatch_backward_decode(origin_, wire.data(), wire.size(), 6, dx.data()),
            LSHMOE_SUCCESS);
  double yg = 0.0, xdx = 0.0, scale = 0.0;
  for (size_t k = 0; k < x_.size(); ++k) {
    yg += double(y_[k]) * g[k];
    xdx += double(x_[k]) * dx[k];
    scale += std::fabs(double(y_[k]) * g[k]);
  }
  EXPECT_NEAR(yg, xdx, 1e-5 * scale);
}

TEST_F(KeptPair, AReplayedForwardGivesTheForwardsBytesBack) {
  std::vector<uint8_t> wire(bytes_), back(bytes_);
  ASSERT_EQ(codec_->replay_dispatch_encode(&origin_, x_.data(), 7, wire.data(), wire.size()),
            LSHMOE_SUCCESS);
  EXPECT_TRUE(CpuCodec::is_replay(wire.data(), wire.size()));
  std::vector<float> xe(x_.size(), -1.0f), y(x_.size(), -1.0f);
  ASSERT_EQ(codec_->replay_dispatch_decode(expert_, wire.data(), wire.size(), 7, xe.data()),
            LSHMOE_SUCCESS);
  EXPECT_EQ(0, memcmp(xe.data(), xe_.data(), xe.size() * sizeof(float)));
  const std::vector<float> ye = expert(xe);
  ASSERT_EQ(codec_->replay_combine_encode(expert_, expert_groups_, ye.data(), 8, back.data(),
                                          back.size()),
            LSHMOE_SUCCESS);
  ASSERT_EQ(
      codec_->replay_combine_decode(origin_, origin_groups_, back.data(), back.size(), 8, y.data()),
      LSHMOE_SUCCESS);
  EXPECT_EQ(0, memcmp(y.data(), y_.data(), y.size() * sizeof(float)));
  // The pair is still whole: its backward runs after the replay.
  const std::vector<float> g = clustered(kRows, kElems, 2.0f, 9);
  EXPECT_EQ(codec_->kept_combine_backward_encode(&origin_, origin_groups_, g.data(), 9, wire.data(),
                                                 wire.size()),
            LSHMOE_SUCCESS);
  EXPECT_FALSE(CpuCodec::is_replay(wire.data(), wire.size()));
}

TEST_F(KeptPair, MessagesOfTheOtherStepOrCorruptAreRejectedAndWriteNothing) {
  std::vector<uint8_t> replay(bytes_), grad(bytes_);
  ASSERT_EQ(codec_->replay_dispatch_encode(&origin_, x_.data(), 7, replay.data(), replay.size()),
            LSHMOE_SUCCESS);
  const std::vector<float> untouched(x_.size(), 42.0f);
  std::vector<float> out = untouched;
  // A replay is not a combine gradient, nor the reverse.
  EXPECT_EQ(codec_->kept_combine_backward_decode(expert_, expert_groups_, replay.data(),
                                                 replay.size(), 7, out.data()),
            LSHMOE_ERR_WIRE_BAD_KIND);
  // The wrong pair's sequence number, a flipped byte, a short message.
  EXPECT_EQ(codec_->replay_dispatch_decode(expert_, replay.data(), replay.size(), 8, out.data()),
            LSHMOE_ERR_WIRE_BAD_SEQUENCE);
  std::vector<uint8_t> bad = replay;
  bad[bad.size() - 3] ^= 0x40;
  EXPECT_EQ(codec_->replay_dispatch_decode(expert_, bad.data(), bad.size(), 7, out.data()),
            LSHMOE_ERR_WIRE_BAD_CHECKSUM);
  EXPECT_NE(
      codec_->replay_dispatch_decode(expert_, replay.data(), replay.size() - 16, 7, out.data()),
      LSHMOE_SUCCESS);
  // A grouping of another size.
  Grouping wrong = expert_groups_;
  wrong.assignment.pop_back();
  EXPECT_EQ(
      codec_->replay_combine_decode(origin_, wrong, replay.data(), replay.size(), 7, out.data()),
      LSHMOE_ERR_CONTEXT_MISMATCH);
  EXPECT_EQ(out, untouched);
  // After the combine's backward the forward cannot be replayed, nor the
  // backward run twice.
  const std::vector<float> g = clustered(kRows, kElems, 2.0f, 9);
  ASSERT_EQ(codec_->kept_combine_backward_encode(&origin_, origin_groups_, g.data(), 9, grad.data(),
                                                 grad.size()),
            LSHMOE_SUCCESS);
  EXPECT_EQ(codec_->replay_dispatch_encode(&origin_, x_.data(), 7, replay.data(), replay.size()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
  EXPECT_EQ(codec_->kept_combine_backward_encode(&origin_, origin_groups_, g.data(), 9, grad.data(),
                                                 grad.size()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
  EXPECT_EQ(codec_->replay_combine_decode(origin_, origin_groups_, replay.data(), replay.size(), 7,
                                          out.data()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
  EXPECT_EQ(out, untouched);
}

TEST(KeptPairRaw, APairThatTravelledRawKeepsNothing) {
  Config config;
  std::unique_ptr<CpuCodec> codec;
  ASSERT_EQ(CpuCodec::create(config, &codec), LSHMOE_SUCCESS);
  const std::vector<float> x = clustered(2, kElems, 0.0f, 2);
  OriginContext origin;
  std::vector<uint8_t> wire(x.size() * sizeof(float));
  ASSERT_EQ(codec->dispatch_encode(x.data(), 2, kElems, DType::kFloat32, 1, wire.data(),
                                   wire.size(), &origin),
            LSHMOE_SUCCESS);
  ASSERT_FALSE(origin.shape.compressed);
  EXPECT_EQ(codec->replay_dispatch_encode(&origin, x.data(), 1, wire.data(), wire.size()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
}

}  // namespace
}  // namespace lshmoe::cpu
