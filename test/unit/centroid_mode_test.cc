// Centroid mode of the CPU codec: the expert gets the used slots (then zero
// padding) instead of rebuilt rows, and returns one output per slot.
#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "codec/wire_format.h"

namespace lshmoe::cpu {
namespace {

constexpr size_t kN = 400, kH = 64;
const DType kT = DType::kBFloat16;

std::vector<uint16_t> rows_of(uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> r(kN * kH);
  for (size_t i = 0; i < kN; ++i) {
    const float centre = float(i % 7);
    for (size_t j = 0; j < kH; ++j) r[i * kH + j] = float_to_bf16(centre + 0.1f * normal(rng));
  }
  return r;
}

struct Encoded {
  lshmoe_plan_t plan;
  std::vector<uint8_t> wire;
  OriginContext origin;
};

class CentroidMode : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_EQ(CpuCodec::create(Config{}, &codec_), LSHMOE_SUCCESS); }
  Encoded encode(const std::vector<uint16_t>& x) {
    Encoded e;
    EXPECT_EQ(codec_->plan(kN, kH, kT, &e.plan), LSHMOE_SUCCESS);
    e.wire.resize(e.plan.dispatch_bytes);
    EXPECT_EQ(
        codec_->dispatch_encode(x.data(), kN, kH, kT, 1, e.wire.data(), e.wire.size(), &e.origin),
        LSHMOE_SUCCESS);
    return e;
  }
  std::unique_ptr<CpuCodec> codec_;
};

TEST_F(CentroidMode, ExpertGetsTheUsedSlotsThenZeros) {
  const Encoded e = encode(rows_of(1));
  ASSERT_TRUE(e.plan.compressed);
  std::vector<uint16_t> slots(e.plan.slots * kH, 0xffff);
  ExpertContext ctx;
  ASSERT_EQ(codec_->dispatch_decode_slots(e.wire.data(), e.wire.size(), kN, kH, kT, 1, slots.data(),
                                          &ctx),
            LSHMOE_SUCCESS)
      << last_error();
  wire::Header h;
  memcpy(&h, e.wire.data(), sizeof(h));
  ASSERT_EQ(ctx.shape.used_slots, h.used_slots);
  const wire::Layout l = wire::layout(LSHMOE_DISPATCH, kN, kH, kT, e.plan.slots);
  EXPECT_EQ(0, memcmp(slots.data(), e.wire.data() + l.slots_offset, h.used_slots * kH * 2));
  for (size_t i = size_t(h.used_slots) * kH; i < slots.size(); ++i) ASSERT_EQ(slots[i], 0);
  EXPECT_EQ(ctx.assignment, e.origin.assignment);
}

TEST_F(CentroidMode, OutputsPerSlotComeBackAsTheRowsModeWould) {
  const std::vector<uint16_t> x = rows_of(2);
  const Encoded e = encode(x);
  // Rows mode: the expert sees rows rebuilt from slots; an expert that
  // doubles its input.
  std::vector<uint16_t> expanded(kN * kH), slots(e.plan.slots * kH);
  ExpertContext rows_ctx, slots_ctx;
  ASSERT_EQ(codec_->dispatch_decode(e.wire.data(), e.wire.size(), kN, kH, kT, 1, expanded.data(),
                                    &rows_ctx),
            LSHMOE_SUCCESS);
  ASSERT_EQ(codec_->dispatch_decode_slots(e.wire.data(), e.wire.size(), kN, kH, kT, 1, slots.data(),
                                          &slots_ctx),
            LSHMOE_SUCCESS);
  for (uint16_t& v : expanded) v = float_to_bf16(2.0f * bf16_to_float(v));
  for (uint16_t& v : slots) v = float_to_bf16(2.0f * bf16_to_float(v));
  // Stale bytes in the buffers must not survive into the messages.
  std::vector<uint8_t> w1(e.plan.combine_bytes, 0xab), w2(e.plan.combine_bytes, 0xcd);
  ASSERT_EQ(codec_->combine_encode(rows_ctx, expanded.data(), 2, w1.data(), w1.size()),
            LSHMOE_SUCCESS);
  ASSERT_EQ(codec_->combine_encode_slots(slots_ctx, slots.data(), 2, w2.data(), w2.size()),
            LSHMOE_SUCCESS);
  // Doubling is exact in bf16, and the mean of equal rows is that row.
  EXPECT_EQ(w1, w2);
  std::vector<uint16_t> y(kN * kH);
  ASSERT_EQ(codec_->combine_decode(e.origin, w2.data(), w2.size(), 2, y.data()), LSHMOE_SUCCESS);
}

TEST_F(CentroidMode, CorruptMessageWritesNothing) {
  Encoded e = encode(rows_of(3));
  const wire::Layout l = wire::layout(LSHMOE_DISPATCH, kN, kH, kT, e.plan.slots);
  e.wire[l.assignment_offset + 1] = 0xff;  // an index beyond the used slots
  std::vector<uint16_t> slots(e.plan.slots * kH, 0x1234);
  ExpertContext ctx;
  EXPECT_EQ(codec_->dispatch_decode_slots(e.wire.data(), e.wire.size(), kN, kH, kT, 1, slots.data(),
                                          &ctx),
            LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE);
  for (uint16_t v : slots) ASSERT_EQ(v, 0x1234);
  // No dispatch decoded: a combine from this context is refused.
  std::vector<uint8_t> w(e.plan.combine_bytes);
  EXPECT_EQ(codec_->combine_encode_slots(ctx, slots.data(), 2, w.data(), w.size()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
}

}  // namespace
}  // namespace lshmoe::cpu
