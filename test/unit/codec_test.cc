// The codec end to end through the C API: centroids, residual compensation,
// wire layout and round trips, plan rules, raw pass-through, thread counts.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "test_util.h"

namespace lshmoe::test {
namespace {

constexpr double kU32 = 5.9604644775390625e-8;  // 2^-24, fp32 unit roundoff

// Rows near a few centres, so that slots hold several rows each.
std::vector<float> clustered_rows(size_t n, size_t h, size_t centres, float noise, uint64_t seed) {
  const std::vector<float> c = gaussian(centres * h, seed);
  const std::vector<float> e = gaussian(n * h, seed + 1, noise);
  std::vector<float> rows(n * h);
  for (size_t i = 0; i < n; ++i)
    for (size_t k = 0; k < h; ++k) rows[i * h + k] = c[(i % centres) * h + k] + e[i * h + k];
  return rows;
}

std::vector<size_t> slot_counts(const WireView& w) {
  std::vector<size_t> count(w.slots, 0);
  for (uint32_t a : w.assignment) ++count[a];
  return count;
}

// Every used slot is the fp64 mean of its rows, rounded to the dtype: the
// codec sums c rows in fp32 (error <= (c - 1) u sum|x|) and scales by the
// float 1/c (two more roundings), then rounds to the dtype (half an ulp).
void expect_slots_are_means(const std::vector<uint8_t>& rows, const std::vector<uint8_t>& wire,
                            size_t n, size_t h, lshmoe_dtype_t dtype) {
  const WireView w = parse_wire(wire);
  ASSERT_EQ(w.n_rows, n);
  ASSERT_EQ(w.row_elems, h);
  ASSERT_GE(w.used_slots, 1u);
  ASSERT_LE(w.used_slots, w.slots);
  for (uint32_t a : w.assignment) ASSERT_LT(a, w.used_slots);
  const std::vector<size_t> count = slot_counts(w);
  for (uint32_t s = 0; s < w.used_slots; ++s)
    ASSERT_GT(count[s], 0u) << "used slot " << s << " is empty";
  const std::vector<float> x = decode_values(rows.data(), n * h, dtype);
  const std::vector<float> slots =
      decode_values(wire.data() + w.slots_offset, size_t(w.slots) * h, dtype);
  std::vector<double> sum(size_t(w.slots) * h, 0.0), abs_sum(size_t(w.slots) * h, 0.0);
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < h; ++k) {
      sum[w.assignment[i] * h + k] += x[i * h + k];
      abs_sum[w.assignment[i] * h + k] += std::fabs(x[i * h + k]);
    }
  }
  int bad = 0;
  for (uint32_t s = 0; s < w.slots; ++s) {
    for (size_t k = 0; k < h; ++k) {
      const double got = slots[s * h + k];
      if (s >= w.used_slots) {
        ASSERT_EQ(got, 0.0) << "padding slot " << s;
        continue;
      }
      const double c = double(count[s]);
      const double mean = sum[s * h + k] / c;
      const double err32 = (c + 2) * kU32 * abs_sum[s * h + k] / c;
      const double bound = err32 + 0.5 * ulp(dtype, std::fabs(mean) + err32);
      if (std::fabs(got - mean) > bound && ++bad <= 5) {
        ADD_FAILURE() << dtype_label(dtype) << " slot " << s << " elem " << k << " (" << count[s]
                      << " rows): " << got << " vs mean " << mean << ", bound " << bound;
      }
    }
  }
  EXPECT_EQ(bad, 0);
  // Padding of the slots part is zero.
  for (size_t b = w.slots_offset + size_t(w.slots) * h * esize(dtype); b < wire.size(); ++b)
    ASSERT_EQ(wire[b], 0) << "byte " << b;
}

// With the identity expert, y_i = round(Y_a + round(x_i - c_a)) where Y_a is
// the mean of identical copies of c_a: |y - x| <= half an ulp for the
// residual, half an ulp for the sum, and the fp32 mean of c identical rows
// (at most (c + 2) u |c_a|), so 2 ulp of |x| + |c| plus that term.
void expect_compensated(const std::vector<uint8_t>& rows, const PairRun& r, size_t n, size_t h,
                        lshmoe_dtype_t dtype) {
  const WireView w = parse_wire(r.dispatch_wire);
  const std::vector<size_t> count = slot_counts(w);
  const std::vector<float> x = decode_values(rows.data(), n * h, dtype);
  const std::vector<float> y = decode_values(r.output.data(), n * h, dtype);
  const std::vector<float> c = decode_values(r.expanded.data(), n * h, dtype);
  int bad = 0;
  double worst_ulps = 0;
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < h; ++k) {
      const size_t e = i * h + k;
      const double scale = std::fabs(x[e]) + std::fabs(c[e]);
      const double bound =
          2 * ulp(dtype, scale) + (double(count[w.assignment[i]]) + 2) * kU32 * std::fabs(c[e]);
      const double err = std::fabs(double(y[e]) - x[e]);
      worst_ulps = std::max(worst_ulps, err / ulp(dtype, scale));
      if (!(err <= bound) && ++bad <= 5) {
        ADD_FAILURE() << dtype_label(dtype) << " row " << i << " elem " << k << ": y " << y[e]
                      << " x " << x[e] << " c " << c[e] << " bound " << bound;
      }
    }
  }
  EXPECT_EQ(bad, 0) << "worst error " << worst_ulps << " ulp";
}

TEST(Codec, SlotsAreRowMeansAndCompensationRestoresRows) {
  const size_t n = 600, h = 67;  // h not a multiple of the vector width
  for (lshmoe_dtype_t dtype : kAllDtypes) {
    SCOPED_TRACE(dtype_label(dtype));
    CodecPtr codec = make_codec();
    ASSERT_NE(codec, nullptr);
    const std::vector<uint8_t> rows = encode_values(clustered_rows(n, h, 40, 0.3f, 1), dtype);
    const PairRun r = run_pair(codec.get(), rows, n, h, dtype);
    ASSERT_EQ(r.plan.compressed, 1);
    expect_slots_are_means(rows, r.dispatch_wire, n, h, dtype);
    expect_compensated(rows, r, n, h, dtype);

    // The residuals are not nothing: without compensation the error is far larger.
    const std::vector<float> x = decode_values(rows.data(), n * h, dtype);
    EXPECT_GT(relative_error(decode_values(r.expanded.data(), n * h, dtype), x), 0.05);

    // The codec's counters: sum ||x||^2 and sum ||x - c||^2 in dtype values.
    lshmoe_stats_t stats{};
    ASSERT_EQ(lshmoe_codec_stats(codec.get(), &stats), LSHMOE_SUCCESS);
    EXPECT_EQ(stats.messages_compressed, 1u);
    EXPECT_EQ(stats.messages_raw, 0u);
    EXPECT_EQ(stats.logical_bytes, 2 * rows.size());
    EXPECT_EQ(stats.wire_bytes, r.plan.dispatch_bytes + r.plan.combine_bytes);
    const std::vector<float> c = decode_values(r.expanded.data(), n * h, dtype);
    double xx = 0, rr = 0;
    for (size_t e = 0; e < n * h; ++e) {
      xx += double(x[e]) * x[e];
      rr += (double(x[e]) - c[e]) * (double(x[e]) - c[e]);
    }
    EXPECT_NEAR(stats.input_energy, xx, 1e-6 * xx);
    // The codec squares residuals rounded to the dtype.
    EXPECT_NEAR(stats.residual_energy, rr, (dtype == LSHMOE_FLOAT32 ? 1e-5 : 1e-2) * rr);
  }
}

TEST(Codec, WithoutCompensationEveryRowGetsItsSlotOutput) {
  const size_t n = 300, h = 32;
  for (lshmoe_dtype_t dtype : kAllDtypes) {
    SCOPED_TRACE(dtype_label(dtype));
    CodecPtr codec = make_codec({{"LSHMOE_COMPENSATE", "0"}});
    ASSERT_NE(codec, nullptr);
    const std::vector<uint8_t> rows = encode_values(clustered_rows(n, h, 20, 0.3f, 2), dtype);
    // A non-identity, row-wise expert: y = 2x + 1.
    PairRun first = run_pair(codec.get(), rows, n, h, dtype);
    std::vector<float> ex = decode_values(first.expanded.data(), n * h, dtype);
    for (float& v : ex) v = 2 * v + 1;
    const std::vector<uint8_t> expert_out = encode_values(ex, dtype);
    const PairRun r = run_pair(codec.get(), rows, n, h, dtype, &expert_out);
    const WireView w = parse_wire(r.dispatch_wire);
    const WireView cw = parse_wire(r.combine_wire);
    const size_t row_bytes = h * esize(dtype);
    for (size_t i = 0; i < n; ++i) {
      ASSERT_EQ(memcmp(&r.output[i * row_bytes],
                       &r.combine_wire[cw.slots_offset + w.assignment[i] * row_bytes], row_bytes),
                0)
          << "row " << i;
    }
    // Rows of one slot got identical inputs, so the slot output is theirs
    // (up to the fp32 mean of identical values).
    const std::vector<float> y = decode_values(r.output.data(), n * h, dtype);
    const std::vector<size_t> count = slot_counts(w);
    for (size_t e = 0; e < n * h; ++e) {
      ASSERT_NEAR(
          y[e], ex[e],
          (count[w.assignment[e / h]] + 2) * kU32 * std::fabs(ex[e]) + 0.5 * ulp(dtype, ex[e]));
    }
  }
}

TEST(Codec, ContextsAreReusableAcrossShapes) {
  CodecPtr codec = make_codec();
  ASSERT_NE(codec, nullptr);
  OriginPtr origin = make_origin();
  ExpertPtr expert = make_expert();
  const lshmoe_dtype_t dtype = LSHMOE_BFLOAT16;
  for (size_t n : {2000, 64, 900, 31, 500}) {
    const size_t h = n % 2 ? 24 : 40;
    const std::vector<uint8_t> rows = encode_values(clustered_rows(n, h, 10, 0.2f, n), dtype);
    // Reference: fresh contexts.
    const PairRun ref = run_pair(codec.get(), rows, n, h, dtype);
    std::vector<uint8_t> wire(ref.plan.dispatch_bytes), x_hat(rows.size()),
        wire2(ref.plan.combine_bytes), y(rows.size());
    ASSERT_EQ(lshmoe_dispatch_encode(codec.get(), rows.data(), n, h, dtype, 1, wire.data(),
                                     wire.size(), origin.get()),
              LSHMOE_SUCCESS);
    ASSERT_EQ(lshmoe_dispatch_decode(codec.get(), wire.data(), wire.size(), n, h, dtype, 1,
                                     x_hat.data(), expert.get()),
              LSHMOE_SUCCESS);
    ASSERT_EQ(lshmoe_combine_encode(codec.get(), expert.get(), x_hat.data(), 2, wire2.data(),
                                    wire2.size()),
              LSHMOE_SUCCESS);
    ASSERT_EQ(
        lshmoe_combine_decode(codec.get(), origin.get(), wire2.data(), wire2.size(), 2, y.data()),
        LSHMOE_SUCCESS);
    EXPECT_EQ(wire, ref.dispatch_wire) << n;
    EXPECT_EQ(wire2, ref.combine_wire) << n;
    EXPECT_EQ(y, ref.output) << n;
  }
}

size_t expected_wire_bytes(lshmoe_kind_t kind, size_t n, size_t h, lshmoe_dtype_t dtype,
                           size_t slots) {
  if (slots > n) return 0;  // no such message
  const size_t width = slots <= 65536 ? 2 : 4;
  const size_t assignment = kind == LSHMOE_DISPATCH ? align16(n * width) : 0;
  return 64 + assignment + align16(slots * h * esize(dtype));
}

// Sizes the 32-bit header cannot describe, or that overflow, have no message.
TEST(WireBytes, IsZeroForImpossibleMessages) {
  const size_t big = size_t(1) << 62;
  EXPECT_EQ(lshmoe_wire_bytes(LSHMOE_DISPATCH, big, 8, LSHMOE_FLOAT32, big), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(LSHMOE_DISPATCH, size_t(1) << 40, 8, LSHMOE_FLOAT32, 1000), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(LSHMOE_COMBINE, 1000, size_t(1) << 33, LSHMOE_FLOAT32, 10), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(LSHMOE_COMBINE, 0, 0, LSHMOE_FLOAT32, 0), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(LSHMOE_DISPATCH, 10, 8, LSHMOE_FLOAT32, 0), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(LSHMOE_DISPATCH, 10, 8, LSHMOE_FLOAT32, 11), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(lshmoe_kind_t(5), 10, 8, LSHMOE_FLOAT32, 2), 0u);
}

// A context keeps the sizes of its pair: a combine encoded by a codec whose
// configuration plans that message differently is refused, not overrun.
TEST(Codec, CombineEncodeRefusesAContextFromAnotherConfiguration) {
  const size_t n = 300, h = 16;
  const std::vector<uint8_t> rows = encode_values(gaussian(n * h, 3), LSHMOE_FLOAT32);
  CodecPtr raw_codec = make_codec({{"LSHMOE_ENABLE", "0"}});
  CodecPtr codec = make_codec();
  ASSERT_NE(raw_codec, nullptr);
  ASSERT_NE(codec, nullptr);
  OriginPtr origin = make_origin();
  ExpertPtr expert = make_expert();
  std::vector<uint8_t> wire(rows.size()), x(rows.size());
  ASSERT_EQ(lshmoe_dispatch_encode(raw_codec.get(), rows.data(), n, h, LSHMOE_FLOAT32, 0,
                                   wire.data(), wire.size(), origin.get()),
            LSHMOE_SUCCESS);
  ASSERT_EQ(lshmoe_dispatch_decode(raw_codec.get(), wire.data(), wire.size(), n, h, LSHMOE_FLOAT32,
                                   0, x.data(), expert.get()),
            LSHMOE_SUCCESS);
  lshmoe_plan_t plan;
  ASSERT_EQ(lshmoe_codec_plan(codec.get(), n, h, LSHMOE_FLOAT32, &plan), LSHMOE_SUCCESS);
  ASSERT_TRUE(plan.compressed);
  std::vector<uint8_t> out(plan.combine_bytes + 64, 0xA5);
  const std::vector<uint8_t> before = out;
  EXPECT_EQ(
      lshmoe_combine_encode(codec.get(), expert.get(), x.data(), 0, out.data(), plan.combine_bytes),
      LSHMOE_ERR_CONTEXT_MISMATCH);
  EXPECT_NE(std::string(lshmoe_last_error()).find("configuration"), std::string::npos);
  EXPECT_EQ(out, before);
}

// A message whose size cannot be addressed is an error, never a wrapped size.
TEST(Plan, RejectsSizesThatOverflow) {
  CodecPtr codec = make_codec();
  ASSERT_NE(codec, nullptr);
  lshmoe_plan_t plan;
  const size_t big = size_t(1) << 31;
  EXPECT_EQ(lshmoe_codec_plan(codec.get(), big, big * 4, LSHMOE_FLOAT32, &plan),
            LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lshmoe_last_error()).find("too large"), std::string::npos);
  OriginPtr origin = make_origin();
  EXPECT_EQ(lshmoe_dispatch_encode(codec.get(), nullptr, big, big * 4, LSHMOE_FLOAT32, 0, nullptr,
                                   0, origin.get()),
            LSHMOE_ERR_INVALID_ARGUMENT);
}

TEST(WireBytes, FollowsTheLayout) {
  for (lshmoe_dtype_t dtype : kAllDtypes) {
    for (size_t n : {1, 2, 7, 8, 9, 100, 65535, 65536, 65537, 400000}) {
      for (size_t h : {1, 3, 8, 17, 4096}) {
        for (size_t slots : {size_t(1), size_t(5), (n + 4) / 5, size_t(65536), size_t(65537)}) {
          for (lshmoe_kind_t kind :
               {LSHMOE_DISPATCH, LSHMOE_COMBINE, LSHMOE_COMBINE_GRAD, LSHMOE_DISPATCH_GRAD}) {
            ASSERT_EQ(lshmoe_wire_bytes(kind, n, h, dtype, slots),
                      expected_wire_bytes(kind, n, h, dtype, slots))
                << "kind " << kind << " n " << n << " h " << h << " slots " << slots;
          }
        }
      }
    }
  }
  // Invalid values within the enums' C++ range (C callers can pass any int:
  // see c_api_test.c).
  EXPECT_EQ(lshmoe_wire_bytes(LSHMOE_DISPATCH, 10, 4, lshmoe_dtype_t(0), 2), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(lshmoe_kind_t(5), 10, 4, LSHMOE_FLOAT32, 2), 0u);
  EXPECT_EQ(lshmoe_wire_bytes(lshmoe_kind_t(0), 10, 4, LSHMOE_FLOAT32, 2), 0u);
  EXPECT_EQ(lshmoe_dtype_size(LSHMOE_FLOAT32), 4u);
  EXPECT_EQ(lshmoe_dtype_size(LSHMOE_FLOAT16), 2u);
  EXPECT_EQ(lshmoe_dtype_size(LSHMOE_BFLOAT16), 2u);
  EXPECT_EQ(lshmoe_dtype_size(lshmoe_dtype_t(0)), 0u);
}

// Encode, decode and combine one message, checking every byte of the wire
// against the layout; `index_width` is what K must give.
void round_trip(lshmoe_codec_t* codec, size_t n, size_t h, lshmoe_dtype_t dtype,
                uint8_t index_width) {
  SCOPED_TRACE(std::string(dtype_label(dtype)) + " n " + std::to_string(n));
  const std::vector<uint8_t> rows = encode_values(clustered_rows(n, h, 50, 0.5f, n + h), dtype);
  const PairRun r = run_pair(codec, rows, n, h, dtype);
  ASSERT_EQ(r.plan.compressed, 1);
  const size_t k = r.plan.slots;
  ASSERT_EQ(k, (2 * n + 9) / 10);  // ceil(0.2 n)
  ASSERT_EQ(r.dispatch_wire.size(), lshmoe_wire_bytes(LSHMOE_DISPATCH, n, h, dtype, k));
  ASSERT_EQ(r.combine_wire.size(), lshmoe_wire_bytes(LSHMOE_COMBINE, n, h, dtype, k));

  const WireView w = parse_wire(r.dispatch_wire);
  EXPECT_EQ(memcmp(r.dispatch_wire.data(), "LSM1", 4), 0);
  EXPECT_EQ(w.version, 1);
  EXPECT_EQ(w.kind, LSHMOE_DISPATCH);
  EXPECT_EQ(w.dtype, dtype);
  ASSERT_EQ(w.index_width, index_width);
  EXPECT_EQ(w.n_rows, n);
  EXPECT_EQ(w.row_elems, h);
  EXPECT_EQ(w.slots, k);
  EXPECT_EQ(w.seq, 1u);
  ASSERT_LE(w.used_slots, k);
  EXPECT_GT(w.used_slots, k / 2);
  for (uint32_t a : w.assignment) ASSERT_LT(a, w.used_slots);
  // Index padding up to the slots part is zero.
  for (size_t b = 64 + n * index_width; b < w.slots_offset; ++b) ASSERT_EQ(r.dispatch_wire[b], 0);

  // The expert side got slot a(i) for row i, bit for bit.
  const size_t row_bytes = h * esize(dtype);
  for (size_t i = 0; i < n; ++i) {
    ASSERT_EQ(memcmp(&r.expanded[i * row_bytes],
                     &r.dispatch_wire[w.slots_offset + w.assignment[i] * row_bytes], row_bytes),
              0)
        << "row " << i;
  }

  // Combine: same slots, no assignment; identical rows average to themselves
  // (exactly in 16-bit dtypes, within the fp32 sum's rounding in fp32).
  const WireView cw = parse_wire(r.combine_wire);
  EXPECT_EQ(cw.kind, LSHMOE_COMBINE);
  EXPECT_EQ(cw.used_slots, w.used_slots);
  EXPECT_EQ(cw.slots, k);
  EXPECT_EQ(cw.seq, 2u);
  ASSERT_EQ(cw.slots_offset, 64u);
  const std::vector<size_t> count = slot_counts(w);
  const std::vector<float> ds =
      decode_values(r.dispatch_wire.data() + w.slots_offset, k * h, dtype);
  const std::vector<float> cs = decode_values(r.combine_wire.data() + 64, k * h, dtype);
  for (size_t s = 0; s < k; ++s) {
    for (size_t e = 0; e < h; ++e) {
      const float want = ds[s * h + e];
      if (dtype == LSHMOE_FLOAT32 && s < w.used_slots) {
        ASSERT_NEAR(cs[s * h + e], want, (count[s] + 2) * kU32 * std::fabs(want)) << "slot " << s;
      } else {
        ASSERT_EQ(cs[s * h + e], want) << "slot " << s;
      }
    }
  }
  expect_compensated(rows, r, n, h, dtype);
}

TEST(WireRoundTrip, TwoByteIndices) {
  CodecPtr codec = make_codec();
  ASSERT_NE(codec, nullptr);
  for (lshmoe_dtype_t dtype : kAllDtypes) round_trip(codec.get(), 1500, 40, dtype, 2);
  // The largest K with 2-byte indices.
  CodecPtr plain = make_codec({{"LSHMOE_REFINE", "0"}});
  ASSERT_NE(plain, nullptr);
  round_trip(plain.get(), 327680, 4, LSHMOE_BFLOAT16, 2);
}

// K = ceil(0.2 n) > 65536 needs 4-byte indices. Refinement is off: its
// n x K search would dominate the suite's time and it is tested elsewhere.
TEST(WireRoundTrip, FourByteIndices) {
  CodecPtr codec = make_codec({{"LSHMOE_REFINE", "0"}});
  ASSERT_NE(codec, nullptr);
  for (lshmoe_dtype_t dtype : kAllDtypes) round_trip(codec.get(), 340000, 8, dtype, 4);
}

lshmoe_plan_t plan_of(lshmoe_codec_t* codec, size_t n, size_t h, lshmoe_dtype_t dtype) {
  lshmoe_plan_t p{};
  EXPECT_EQ(lshmoe_codec_plan(codec, n, h, dtype, &p), LSHMOE_SUCCESS) << lshmoe_last_error();
  return p;
}

void expect_raw(const lshmoe_plan_t& p, size_t n, size_t h, lshmoe_dtype_t dtype) {
  EXPECT_EQ(p.compressed, 0);
  EXPECT_EQ(p.slots, 0u);
  EXPECT_EQ(p.logical_bytes, n * h * esize(dtype));
  EXPECT_EQ(p.dispatch_bytes, p.logical_bytes);
  EXPECT_EQ(p.combine_bytes, p.logical_bytes);
}

// Compressed iff the wire is smaller than the raw rows, with K = ceil(rho n).
TEST(Plan, CompressesExactlyWhenTheWireIsSmaller) {
  CodecPtr codec = make_codec();
  CodecPtr quarter = make_codec({{"LSHMOE_RATIO", "0.25"}});
  ASSERT_NE(codec, nullptr);
  ASSERT_NE(quarter, nullptr);
  int compressed = 0, raw = 0;
  for (lshmoe_dtype_t dtype : kAllDtypes) {
    for (size_t n = 32; n <= 400; ++n) {
      for (size_t h = 1; h <= 12; ++h) {
        for (auto [c, num, den] :
             {std::tuple{codec.get(), 2, 10}, std::tuple{quarter.get(), 1, 4}}) {
          const lshmoe_plan_t p = plan_of(c, n, h, dtype);
          const size_t k = (n * num + den - 1) / den;
          const size_t wire = expected_wire_bytes(LSHMOE_DISPATCH, n, h, dtype, k);
          if (wire < n * h * esize(dtype)) {
            ASSERT_EQ(p.compressed, 1) << n << "x" << h;
            ASSERT_EQ(p.slots, k);
            ASSERT_EQ(p.dispatch_bytes, wire);
            ASSERT_EQ(p.combine_bytes, expected_wire_bytes(LSHMOE_COMBINE, n, h, dtype, k));
            ASSERT_EQ(p.logical_bytes, n * h * esize(dtype));
            ++compressed;
          } else {
            expect_raw(p, n, h, dtype);
            ++raw;
          }
        }
      }
    }
  }
  // Both outcomes occur in the range.
  EXPECT_GT(compressed, 1000);
  EXPECT_GT(raw, 1000);
  // A wire exactly as large as the rows is not worth it (found by search).
  bool found_equal = false;
  for (size_t n = 32; n < 4000 && !found_equal; ++n) {
    for (size_t h = 1; h < 64 && !found_equal; ++h) {
      const size_t k = (2 * n + 9) / 10;
      if (expected_wire_bytes(LSHMOE_DISPATCH, n, h, LSHMOE_FLOAT16, k) == n * h * 2) {
        found_equal = true;
        expect_raw(plan_of(codec.get(), n, h, LSHMOE_FLOAT16), n, h, LSHMOE_FLOAT16);
      }
    }
  }
  EXPECT_TRUE(found_equal);
  // Slot counts for large n, where rounding of ratio * n could bite.
  for (size_t n = 1000; n < 200000; n += 997) {
    ASSERT_EQ(plan_of(codec.get(), n, 64, LSHMOE_BFLOAT16).slots, (2 * n + 9) / 10) << n;
  }
}

TEST(Plan, MinRows) {
  CodecPtr codec = make_codec({{"LSHMOE_MIN_ROWS", "100"}});
  ASSERT_NE(codec, nullptr);
  expect_raw(plan_of(codec.get(), 99, 64, LSHMOE_FLOAT32), 99, 64, LSHMOE_FLOAT32);
  EXPECT_EQ(plan_of(codec.get(), 100, 64, LSHMOE_FLOAT32).compressed, 1);
  CodecPtr defaults = make_codec();
  ASSERT_NE(defaults, nullptr);
  expect_raw(plan_of(defaults.get(), 31, 64, LSHMOE_FLOAT32), 31, 64, LSHMOE_FLOAT32);
  EXPECT_EQ(plan_of(defaults.get(), 32, 64, LSHMOE_FLOAT32).compressed, 1);
}

TEST(Plan, EnableZeroSendsEverythingRaw) {
  CodecPtr codec = make_codec({{"LSHMOE_ENABLE", "0"}});
  ASSERT_NE(codec, nullptr);
  for (lshmoe_dtype_t dtype : kAllDtypes) {
    expect_raw(plan_of(codec.get(), 10000, 1024, dtype), 10000, 1024, dtype);
  }
}

TEST(Plan, OnlyListedDtypes) {
  CodecPtr codec = make_codec({{"LSHMOE_DTYPES", "bf16"}});
  ASSERT_NE(codec, nullptr);
  EXPECT_EQ(plan_of(codec.get(), 1000, 64, LSHMOE_BFLOAT16).compressed, 1);
  expect_raw(plan_of(codec.get(), 1000, 64, LSHMOE_FLOAT32), 1000, 64, LSHMOE_FLOAT32);
  expect_raw(plan_of(codec.get(), 1000, 64, LSHMOE_FLOAT16), 1000, 64, LSHMOE_FLOAT16);
  CodecPtr two = make_codec({{"LSHMOE_DTYPES", "fp16,fp32"}});
  ASSERT_NE(two, nullptr);
  expect_raw(plan_of(two.get(), 1000, 64, LSHMOE_BFLOAT16), 1000, 64, LSHMOE_BFLOAT16);
  EXPECT_EQ(plan_of(two.get(), 1000, 64, LSHMOE_FLOAT16).compressed, 1);
  EXPECT_EQ(plan_of(two.get(), 1000, 64, LSHMOE_FLOAT32).compressed, 1);
  lshmoe_plan_t p{};
  EXPECT_EQ(lshmoe_codec_plan(codec.get(), 10, 4, lshmoe_dtype_t(0), &p),
            LSHMOE_ERR_INVALID_ARGUMENT);
}

TEST(Plan, OnlyTheHiddenSize) {
  CodecPtr codec = make_codec({{"LSHMOE_HIDDEN", "128"}});
  ASSERT_NE(codec, nullptr);
  expect_raw(plan_of(codec.get(), 1000, 64, LSHMOE_FLOAT32), 1000, 64, LSHMOE_FLOAT32);
  expect_raw(plan_of(codec.get(), 1000, 256, LSHMOE_FLOAT32), 1000, 256, LSHMOE_FLOAT32);
  EXPECT_EQ(plan_of(codec.get(), 1000, 128, LSHMOE_FLOAT32).compressed, 1);
}

TEST(Plan, EmptyMessagesAreRaw) {
  CodecPtr codec = make_codec({{"LSHMOE_MIN_ROWS", "1"}});
  ASSERT_NE(codec, nullptr);
  expect_raw(plan_of(codec.get(), 0, 64, LSHMOE_FLOAT32), 0, 64, LSHMOE_FLOAT32);
  expect_raw(plan_of(codec.get(), 64, 0, LSHMOE_FLOAT32), 64, 0, LSHMOE_FLOAT32);
}

// Raw messages are the rows' bytes, whatever they hold (NaN payloads too),
// in both halves; compensation does not touch them.
TEST(Codec, RawMessagesPassThroughBitExact) {
  std::mt19937_64 rng(4);
  struct Case {
    Settings settings;
    size_t n, h;
    lshmoe_dtype_t dtype;
  };
  const Case cases[] = {{{{"LSHMOE_ENABLE", "0"}}, 500, 64, LSHMOE_FLOAT32},
                        {{}, 31, 64, LSHMOE_BFLOAT16},
                        {{{"LSHMOE_DTYPES", "fp32"}}, 500, 33, LSHMOE_FLOAT16},
                        {{}, 64, 1, LSHMOE_FLOAT16}};
  for (const Case& c : cases) {
    CodecPtr codec = make_codec(c.settings);
    ASSERT_NE(codec, nullptr);
    std::vector<uint8_t> rows(c.n * c.h * esize(c.dtype)), expert_out(rows.size());
    for (uint8_t& b : rows) b = uint8_t(rng());
    for (uint8_t& b : expert_out) b = uint8_t(rng());
    const PairRun r = run_pair(codec.get(), rows, c.n, c.h, c.dtype, &expert_out);
    ASSERT_EQ(r.plan.compressed, 0);
    EXPECT_EQ(r.dispatch_wire, rows);
    EXPECT_EQ(r.expanded, rows);
    EXPECT_EQ(r.combine_wire, expert_out);
    EXPECT_EQ(r.output, expert_out);
    lshmoe_stats_t stats{};
    ASSERT_EQ(lshmoe_codec_stats(codec.get(), &stats), LSHMOE_SUCCESS);
    EXPECT_EQ(stats.messages_raw, 1u);
    EXPECT_EQ(stats.messages_compressed, 0u);
    EXPECT_EQ(stats.wire_bytes, stats.logical_bytes);
  }
}

// One non-finite element (an overflowed activation) must not spoil the
// other rows of its message, wherever it is: with long rows the sparse
// projection samples about half of the elements.
TEST(Codec, OneNonFiniteRowLeavesTheOthersIntact) {
  for (size_t h : {size_t(16), size_t(4096)}) {
    const size_t n = 300;
    const std::vector<float> clean = clustered_rows(n, h, 20, 0.2f, 9);
    CodecPtr codec = make_codec();
    ASSERT_NE(codec, nullptr);
    const PairRun ref =
        run_pair(codec.get(), encode_values(clean, LSHMOE_FLOAT32), n, h, LSHMOE_FLOAT32);
    const double clean_error =
        relative_error(decode_values(ref.expanded.data(), n * h, LSHMOE_FLOAT32), clean);
    for (size_t at : {size_t(3), h / 2 + 1, h - 1}) {
      for (float bad : {NAN, INFINITY}) {
        std::vector<float> x = clean;
        x[5 * h + at] = bad;
        const PairRun r =
            run_pair(codec.get(), encode_values(x, LSHMOE_FLOAT32), n, h, LSHMOE_FLOAT32);
        const std::vector<float> got = decode_values(r.expanded.data(), n * h, LSHMOE_FLOAT32);
        std::vector<float> got_rest, clean_rest;
        for (size_t i = 0; i < n; ++i) {
          if (i == 5) continue;
          got_rest.insert(got_rest.end(), got.begin() + i * h, got.begin() + (i + 1) * h);
          clean_rest.insert(clean_rest.end(), clean.begin() + i * h, clean.begin() + (i + 1) * h);
        }
        const double error = relative_error(got_rest, clean_rest);
        EXPECT_LT(error, 2 * clean_error + 0.01)
            << "with " << bad << " at element " << at << " of row 5, h " << h;
        EXPECT_GT(parse_wire(r.dispatch_wire).used_slots, 1u);
      }
    }
  }
}

// Splitting the work over threads must not change a byte: the receiver may
// run another thread count than the sender.
TEST(Codec, ThreadCountDoesNotChangeTheWire) {
  const size_t n = 5000, h = 96;  // n * h above the codec's parallel threshold
  for (lshmoe_dtype_t dtype : {LSHMOE_FLOAT32, LSHMOE_BFLOAT16}) {
    const std::vector<uint8_t> rows = encode_values(clustered_rows(n, h, 300, 0.4f, 6), dtype);
    std::vector<PairRun> runs;
    for (const char* threads : {"1", "2", "3"}) {
      CodecPtr codec = make_codec({{"LSHMOE_CPU_THREADS", threads}, {"LSHMOE_REFINE", "2"}});
      ASSERT_NE(codec, nullptr);
      runs.push_back(run_pair(codec.get(), rows, n, h, dtype));
    }
    for (size_t t = 1; t < runs.size(); ++t) {
      EXPECT_EQ(runs[t].dispatch_wire, runs[0].dispatch_wire) << dtype_label(dtype) << " " << t;
      EXPECT_EQ(runs[t].combine_wire, runs[0].combine_wire) << dtype_label(dtype) << " " << t;
      EXPECT_EQ(runs[t].output, runs[0].output) << dtype_label(dtype) << " " << t;
    }
  }
}

}  // namespace
}  // namespace lshmoe::test

namespace lshmoe::test {
namespace {

// LSHMOE_STATS=1 reports the counters when the codec is destroyed.
TEST(CodecStats, WrittenToTheStatsFileAtDestroy) {
  const std::string path = ::testing::TempDir() + "lshmoe_stats_test.txt";
  std::remove(path.c_str());
  {
    CodecPtr codec = make_codec({{"LSHMOE_STATS", "1"}, {"LSHMOE_STATS_FILE", path.c_str()}});
    ASSERT_NE(codec, nullptr);
    const size_t n = 200, h = 8;
    const std::vector<uint8_t> rows = encode_values(gaussian(n * h, 4), LSHMOE_FLOAT32);
    OriginPtr origin = make_origin();
    std::vector<uint8_t> wire(rows.size());
    ASSERT_EQ(lshmoe_dispatch_encode(codec.get(), rows.data(), n, h, LSHMOE_FLOAT32, 0, wire.data(),
                                     wire.size(), origin.get()),
              LSHMOE_SUCCESS);
  }
  std::ifstream f(path);
  std::stringstream text;
  text << f.rdbuf();
  EXPECT_NE(text.str().find("1 compressed, 0 raw"), std::string::npos) << text.str();
  std::remove(path.c_str());
}

}  // namespace
}  // namespace lshmoe::test
