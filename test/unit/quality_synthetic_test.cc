// Dispatch quality on clustered synthetic rows, against a bound derived
// from how the data were made.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "test_util.h"

namespace lshmoe::test {
namespace {

// Rows x_i = o + c_{j(i)} + sigma * e_i in H dimensions: C centres c_j ~
// N(0, I), a shared offset o ~ N(0, offset^2 I) (activations share a large
// mean, which is what centred hashing is for), noise e_i ~ N(0, I), and the
// cluster j(i) uniform. Keeps ||E||_F^2 = sum ||e_i||^2 for the bound.
struct Clustered {
  std::vector<float> rows;
  double noise_energy = 0;  // ||E||_F^2
};

Clustered make_clustered(size_t n, size_t h, size_t centres, float sigma, float offset,
                         uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> g;
  std::vector<float> o(h), c(centres * h);
  for (float& v : o) v = offset * g(rng);
  for (float& v : c) v = g(rng);
  Clustered d;
  d.rows.resize(n * h);
  for (size_t i = 0; i < n; ++i) {
    const size_t j = rng() % centres;
    for (size_t k = 0; k < h; ++k) {
      const float e = g(rng);
      d.noise_energy += double(e) * e;
      d.rows[i * h + k] = o[k] + c[j * h + k] + sigma * e;
    }
  }
  return d;
}

constexpr size_t kN = 2000, kH = 64, kCentres = 64;
constexpr float kSigma = 0.3f, kOffset = 2.0f;

struct Outcome {
  double error = 0;        // ||X_hat - X||_F / ||X||_F, measured
  double stats_error = 0;  // the same from the codec's counters
};

Outcome dispatch_error(const std::vector<float>& x, lshmoe_dtype_t dtype,
                       const Settings& settings) {
  CodecPtr codec = make_codec(settings);
  if (codec == nullptr) return {};
  const std::vector<uint8_t> rows = encode_values(x, dtype);
  const PairRun r = run_pair(codec.get(), rows, kN, kH, dtype);
  EXPECT_EQ(r.plan.compressed, 1);
  Outcome out;
  out.error = relative_error(decode_values(r.expanded.data(), kN * kH, dtype), x);
  lshmoe_stats_t stats{};
  EXPECT_EQ(lshmoe_codec_stats(codec.get(), &stats), LSHMOE_SUCCESS);
  out.stats_error = std::sqrt(stats.residual_energy / stats.input_energy);
  return out;
}

// The bound. With K = ceil(0.2 n) = 400 slots for 64 clusters, the codec
// can keep every slot inside one cluster. If it does, a row of slot s in
// cluster j decodes to the slot mean o + c_j + sigma * mean_s(e), so its
// error is sigma * (mean_s(e) - e_i), and per slot
//   sum_{i in s} ||e_i - mean_s(e)||^2 = sum ||e_i||^2 - |s| ||mean_s(e)||^2
//                                      <= sum_{i in s} ||e_i||^2.
// Summed over slots: ||X_hat - X||_F <= sigma ||E||_F, i.e. a relative error
// of at most sigma ||E||_F / ||X||_F (about sigma / sqrt(1 + offset^2 +
// sigma^2) = 0.133 here). A slot that mixes m_a rows of cluster a with m_b
// of cluster b instead adds (m_a m_b / (m_a + m_b)) ||c_a - c_b||^2, about
// H / 2 per row for an even split (E||c_a - c_b||^2 = 2H): five rows' worth
// of noise energy (sigma^2 H = 0.09 H), so mixed slots soon break the bound. Rounding to bf16 adds
// at most 2^-9 relative per element, far inside the slack of the subset
// inequality.
double cluster_bound(const Clustered& d) {
  double xx = 0;
  for (float v : d.rows) xx += double(v) * v;
  return kSigma * std::sqrt(d.noise_energy / xx);
}

TEST(QualitySynthetic, DefaultConfigStaysWithinTheClusterBound) {
  const Clustered d = make_clustered(kN, kH, kCentres, kSigma, kOffset, 1);
  const double bound = cluster_bound(d);
  ASSERT_NEAR(bound, 0.133, 0.01);  // the generator does what its comment says
  for (lshmoe_dtype_t dtype : {LSHMOE_FLOAT32, LSHMOE_BFLOAT16}) {
    const Outcome o = dispatch_error(d.rows, dtype, {});
    EXPECT_LT(o.error, bound) << dtype_label(dtype);
    EXPECT_GT(o.error, 0.0);
    // The codec's counters measure the same error (residuals in the dtype).
    EXPECT_NEAR(o.stats_error, o.error, (dtype == LSHMOE_FLOAT32 ? 1e-4 : 1e-2) * o.error);
  }
  // Control: with fewer slots than clusters (K = 40 < 64) slots must mix
  // clusters, and the bound is exceeded: it is not loose.
  const Outcome few = dispatch_error(d.rows, LSHMOE_FLOAT32, {{"LSHMOE_RATIO", "0.02"}});
  EXPECT_GT(few.error, 1.5 * bound);
}

TEST(QualitySynthetic, RefinementReducesTheError) {
  const Clustered d = make_clustered(kN, kH, kCentres, kSigma, kOffset, 2);
  const Outcome lsh_only = dispatch_error(d.rows, LSHMOE_FLOAT32, {{"LSHMOE_REFINE", "0"}});
  const Outcome refined = dispatch_error(d.rows, LSHMOE_FLOAT32, {});
  const Outcome more = dispatch_error(d.rows, LSHMOE_FLOAT32, {{"LSHMOE_REFINE", "3"}});
  // Noise this large splits clusters across hash buckets and the budget
  // then forces shorter prefixes that mix clusters; one Lloyd step reassigns
  // rows to their cluster's slots.
  EXPECT_LT(refined.error, 0.8 * lsh_only.error);
  EXPECT_LT(more.error, 1.01 * refined.error);
  // Spare singletons lower the error too (exact copies of the worst rows).
  const Outcome no_spare =
      dispatch_error(d.rows, LSHMOE_FLOAT32, {{"LSHMOE_REFINE", "0"}, {"LSHMOE_SPARE_SLOTS", "0"}});
  EXPECT_LT(lsh_only.error, no_spare.error);
}

}  // namespace
}  // namespace lshmoe::test
