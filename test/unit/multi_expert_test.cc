// Several experts per rank: a message to a rank carries the rows of each of
// its experts, and a token routed top-2 to two experts of that rank appears
// twice, identical. Such rows share a dispatch slot but get different
// experts: a combine by slot means averages different experts' outputs.
// The regrouped combine groups the outputs afresh and is right either way.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "codec/wire_format.h"
#include "common/config.h"
#include "test_util.h"

namespace lshmoe::test {
namespace {

constexpr size_t kHidden = 64;

float expert_a(float x) {
  return 2.0f * std::tanh(x);
}
float expert_b(float x) {
  return x * x - 0.5f;
}

struct Routed {
  std::vector<float> rows;  // [expert A's rows | expert B's rows]
  size_t a_rows = 0, n = 0;
};

// Tokens near a few centres; token t goes to expert t % 2, and one in three
// to the other expert too (top-2, both on this rank).
Routed route(size_t tokens, uint64_t seed) {
  const std::vector<float> centres = gaussian(8 * kHidden, seed);
  const std::vector<float> noise = gaussian(tokens * kHidden, seed + 1, 0.05f);
  std::vector<std::vector<float>> a, b;
  for (size_t t = 0; t < tokens; ++t) {
    std::vector<float> x(kHidden);
    for (size_t k = 0; k < kHidden; ++k)
      x[k] = centres[(t % 8) * kHidden + k] + noise[t * kHidden + k];
    (t % 2 == 0 ? a : b).push_back(x);
    if (t % 3 == 0) (t % 2 == 0 ? b : a).push_back(x);
  }
  Routed r;
  r.a_rows = a.size();
  for (auto* list : {&a, &b})
    for (const auto& x : *list) r.rows.insert(r.rows.end(), x.begin(), x.end());
  r.n = a.size() + b.size();
  return r;
}

std::vector<float> apply_experts(const std::vector<float>& rows, size_t a_rows) {
  std::vector<float> y(rows.size());
  for (size_t i = 0; i < rows.size(); ++i) {
    y[i] = i / kHidden < a_rows ? expert_a(rows[i]) : expert_b(rows[i]);
  }
  return y;
}

double rel_err(const std::vector<float>& got, const std::vector<float>& want) {
  double e = 0, n = 0;
  for (size_t i = 0; i < want.size(); ++i) {
    e += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    n += double(want[i]) * want[i];
  }
  return std::sqrt(e / n);
}

struct Errors {
  double dispatch, slots, regrouped;
};

Errors round_trip(const Routed& r, size_t a_rows) {
  Config config;
  std::unique_ptr<cpu::CpuCodec> codec;
  EXPECT_EQ(cpu::CpuCodec::create(config, &codec), LSHMOE_SUCCESS);
  lshmoe_plan_t plan;
  EXPECT_EQ(codec->plan(r.n, kHidden, DType::kFloat32, &plan), LSHMOE_SUCCESS);
  EXPECT_TRUE(plan.compressed);
  cpu::OriginContext origin;
  cpu::ExpertContext expert;
  std::vector<uint8_t> wire(plan.dispatch_bytes), back(plan.dispatch_bytes);
  std::vector<float> x_hat(r.rows.size()), y_slots(r.rows.size()), y_regrouped(r.rows.size());
  EXPECT_EQ(codec->dispatch_encode(r.rows.data(), r.n, kHidden, DType::kFloat32, 7, wire.data(),
                                   wire.size(), &origin),
            LSHMOE_SUCCESS);
  EXPECT_EQ(codec->dispatch_decode(wire.data(), wire.size(), r.n, kHidden, DType::kFloat32, 7,
                                   x_hat.data(), &expert),
            LSHMOE_SUCCESS);
  const std::vector<float> outputs = apply_experts(x_hat, a_rows);
  std::vector<uint8_t> combine(plan.combine_bytes);
  EXPECT_EQ(codec->combine_encode(expert, outputs.data(), 7, combine.data(), combine.size()),
            LSHMOE_SUCCESS);
  EXPECT_EQ(codec->combine_decode(origin, combine.data(), combine.size(), 7, y_slots.data()),
            LSHMOE_SUCCESS);
  EXPECT_EQ(codec->combine_encode_regrouped(expert, outputs.data(), 7, back.data(), back.size()),
            LSHMOE_SUCCESS);
  EXPECT_EQ(
      codec->combine_decode_regrouped(origin, back.data(), back.size(), 7, y_regrouped.data()),
      LSHMOE_SUCCESS);
  // The uncompressed result: each expert on its own rows.
  const std::vector<float> want = apply_experts(r.rows, a_rows);
  return {rel_err(x_hat, r.rows), rel_err(y_slots, want), rel_err(y_regrouped, want)};
}

TEST(MultiExpert, SlotMeansMixTwoExpertsAndTheRegroupedCombineDoesNot) {
  const Routed r = route(600, 3);
  const Errors e = round_trip(r, r.a_rows);
  RecordProperty("dispatch", std::to_string(e.dispatch));
  RecordProperty("slots", std::to_string(e.slots));
  RecordProperty("regrouped", std::to_string(e.regrouped));
  // Duplicated tokens share a slot across the two experts: their slot mean
  // is half of each expert's output.
  EXPECT_GT(e.slots, 0.3) << "slot means: " << e.slots;
  // ||E(x_hat) + a (x - x_hat) - E(x)|| with experts of Lipschitz constant
  // 2 on these rows, plus the regrouping's own error.
  EXPECT_LT(e.regrouped, 4 * e.dispatch + 0.02) << "dispatch " << e.dispatch;
  EXPECT_LT(e.regrouped, e.slots / 5);
}

TEST(MultiExpert, OneExpertPerRankLosesLittleToRegrouping) {
  const Routed r = route(600, 5);
  const Errors e = round_trip(r, r.n);  // every row to expert A
  EXPECT_LT(e.slots, 4 * e.dispatch + 0.02);
  EXPECT_LT(e.regrouped, 1.5 * e.slots + 0.01) << "slots " << e.slots;
}

TEST(MultiExpert, ARegroupedCombineIsCheckedLikeADispatch) {
  const Routed r = route(300, 9);
  Config config;
  std::unique_ptr<cpu::CpuCodec> codec;
  ASSERT_EQ(cpu::CpuCodec::create(config, &codec), LSHMOE_SUCCESS);
  lshmoe_plan_t plan;
  ASSERT_EQ(codec->plan(r.n, kHidden, DType::kFloat32, &plan), LSHMOE_SUCCESS);
  cpu::OriginContext origin;
  cpu::ExpertContext expert;
  std::vector<uint8_t> wire(plan.dispatch_bytes), back(plan.dispatch_bytes);
  std::vector<float> x_hat(r.rows.size()), y(r.rows.size(), 42.0f);
  ASSERT_EQ(codec->dispatch_encode(r.rows.data(), r.n, kHidden, DType::kFloat32, 1, wire.data(),
                                   wire.size(), &origin),
            LSHMOE_SUCCESS);
  ASSERT_EQ(codec->dispatch_decode(wire.data(), wire.size(), r.n, kHidden, DType::kFloat32, 1,
                                   x_hat.data(), &expert),
            LSHMOE_SUCCESS);
  ASSERT_EQ(codec->combine_encode_regrouped(expert, x_hat.data(), 1, back.data(), back.size()),
            LSHMOE_SUCCESS);
  // Another pair's sequence number, a truncated message, an index out of
  // range: an error, and the rows untouched.
  EXPECT_EQ(codec->combine_decode_regrouped(origin, back.data(), back.size(), 2, y.data()),
            LSHMOE_ERR_WIRE_BAD_SEQUENCE);
  EXPECT_NE(codec->combine_decode_regrouped(origin, back.data(), back.size() - 16, 1, y.data()),
            LSHMOE_SUCCESS);
  const wire::Layout layout =
      wire::layout(LSHMOE_DISPATCH, r.n, kHidden, DType::kFloat32, plan.slots);
  std::vector<uint8_t> bad = back;
  const uint16_t out_of_range = uint16_t(plan.slots + 1);
  memcpy(bad.data() + layout.assignment_offset + 3 * sizeof(uint16_t), &out_of_range, 2);
  EXPECT_NE(codec->combine_decode_regrouped(origin, bad.data(), bad.size(), 1, y.data()),
            LSHMOE_SUCCESS);
  for (float v : y) ASSERT_EQ(v, 42.0f);
}

}  // namespace
}  // namespace lshmoe::test
