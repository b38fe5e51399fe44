// The hash's scalar math (src/codec/lsh_math.h): the projection generator,
// cross-polytope codes, key layout, and the hash through the CPU projection.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <random>
#include <vector>

#include "codec/cpu/kernels.h"
#include "codec/cpu/projection.h"
#include "codec/lsh_math.h"
#include "common/config.h"
#include "common/thread_pool.h"
#include "test_util.h"

namespace lshmoe {
namespace {

TEST(ProjectionEntry, IsDeterministic) {
  for (uint32_t t = 0; t < 4; ++t) {
    for (uint32_t row = 0; row < 8; ++row) {
      for (uint32_t col = 0; col < 64; ++col) {
        const float a = projection_entry(0x15a3e, t, row, col);
        const float b = projection_entry(0x15a3e, t, row, col);
        EXPECT_EQ(bit_cast_hd<uint32_t>(a), bit_cast_hd<uint32_t>(b));
        EXPECT_TRUE(std::isfinite(a));
      }
    }
  }
}

// Fraction of (row, col) entries that differ between two generator keys;
// independent streams agree only by accident (two equal floats).
template <typename Fn>
double fraction_differing(Fn&& entry_pair) {
  int differ = 0, total = 0;
  for (uint32_t row = 0; row < 16; ++row) {
    for (uint32_t col = 0; col < 256; ++col, ++total) {
      const auto [a, b] = entry_pair(row, col);
      differ += a != b;
    }
  }
  return double(differ) / total;
}

TEST(ProjectionEntry, DiffersAcrossSeedsTablesRowsAndColumns) {
  EXPECT_GT(fraction_differing([](uint32_t r, uint32_t c) {
              return std::pair{projection_entry(1, 0, r, c), projection_entry(2, 0, r, c)};
            }),
            0.999);
  // The high 32 bits of the seed are a key word too.
  EXPECT_GT(fraction_differing([](uint32_t r, uint32_t c) {
              return std::pair{projection_entry(7, 0, r, c),
                               projection_entry(7 + (uint64_t(1) << 32), 0, r, c)};
            }),
            0.999);
  EXPECT_GT(fraction_differing([](uint32_t r, uint32_t c) {
              return std::pair{projection_entry(5, 0, r, c), projection_entry(5, 1, r, c)};
            }),
            0.999);
  EXPECT_GT(fraction_differing([](uint32_t r, uint32_t c) {
              return std::pair{projection_entry(5, 3, r, c), projection_entry(5, 3, r + 16, c)};
            }),
            0.999);
  EXPECT_GT(fraction_differing([](uint32_t r, uint32_t c) {
              return std::pair{projection_entry(5, 3, r, c), projection_entry(5, 3, r, c + 256)};
            }),
            0.999);
}

// 102,400 samples. Standard errors: mean 1/sqrt(n) = 0.0031, variance
// sqrt(2/n) = 0.0044, P(|z| < 1) sqrt(0.683 * 0.317 / n) = 0.0015,
// P(|z| < 2) 0.00065; the tolerances are 5 or more standard errors.
TEST(ProjectionEntry, SamplesAreStandardNormal) {
  std::vector<double> v;
  for (uint32_t t = 0; t < 4; ++t)
    for (uint32_t row = 0; row < 32; ++row)
      for (uint32_t col = 0; col < 800; ++col) v.push_back(projection_entry(99, t, row, col));
  const double n = double(v.size());
  double sum = 0;
  for (double x : v) sum += x;
  const double mean = sum / n;
  double m2 = 0, m4 = 0;
  int within1 = 0, within2 = 0;
  for (double x : v) {
    m2 += (x - mean) * (x - mean);
    m4 += std::pow(x - mean, 4);
    within1 += std::fabs(x) < 1.0;
    within2 += std::fabs(x) < 2.0;
  }
  const double var = m2 / (n - 1);
  EXPECT_NEAR(mean, 0.0, 0.016);
  EXPECT_NEAR(var, 1.0, 0.025);
  EXPECT_NEAR(within1 / n, 0.682689, 0.01);
  EXPECT_NEAR(within2 / n, 0.954500, 0.004);
  // Kurtosis 3 for a Gaussian (standard error sqrt(24/n) = 0.015).
  EXPECT_NEAR(m4 / n / (var * var), 3.0, 0.1);
  // No value repeats beyond chance (a broken counter would repeat a stream).
  std::vector<double> sorted = v;
  std::sort(sorted.begin(), sorted.end());
  const size_t distinct = size_t(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
  EXPECT_GT(double(distinct), 0.99 * n);
}

TEST(LogExact, MatchesStdLogAcrossTheUnitInterval) {
  std::mt19937_64 rng(3);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::uniform_real_distribution<double> exponent(-1020.0, 0.0);
  std::vector<double> values = {0.5,
                                0.25,
                                0.70710678118654752440,
                                std::nextafter(0.70710678118654752440, 0.0),
                                std::nextafter(0.70710678118654752440, 1.0),
                                std::nextafter(1.0, 0.0),
                                1.0 - 1e-9,
                                std::nextafter(0.5, 0.0),
                                std::nextafter(0.5, 1.0),
                                DBL_MIN,
                                std::ldexp(1.0, -104)};  // the generator's smallest s
  for (int i = 0; i < 100000; ++i) values.push_back(unit(rng));
  for (int i = 0; i < 100000; ++i) values.push_back(std::exp2(exponent(rng)));
  int failures = 0;
  for (double s : values) {
    if (!(s > 0.0 && s < 1.0)) continue;
    const double want = std::log(s);
    const double got = log_exact(s);
    if (std::fabs(got - want) > 1e-15 * std::fabs(want) && ++failures <= 5) {
      ADD_FAILURE() << "log_exact(" << s << ") = " << got << ", std::log = " << want;
    }
  }
  EXPECT_EQ(failures, 0);
}

TEST(LogExact, HandlesSubnormalArguments) {
  for (double s : {std::ldexp(1.0, -1050), DBL_MIN / 3, std::nextafter(0.0, 1.0)}) {
    EXPECT_NEAR(log_exact(s), std::log(s), 1e-15 * std::fabs(std::log(s))) << s;
  }
}

TEST(CodeBits, IsLog2OfTwiceTheDimension) {
  EXPECT_EQ(code_bits(1), 1);
  EXPECT_EQ(code_bits(2), 2);
  EXPECT_EQ(code_bits(4), 3);
  EXPECT_EQ(code_bits(8), 4);
  EXPECT_EQ(code_bits(16), 5);
  EXPECT_EQ(code_bits(32), 6);
}

// Random vectors whose two largest magnitudes differ by 1 %, so that scaling
// (with its float rounding) cannot create a tie.
std::vector<float> vector_with_clear_max(std::mt19937_64& rng, int d) {
  std::normal_distribution<float> dist;
  for (;;) {
    std::vector<float> v(d);
    for (float& x : v) x = dist(rng);
    std::vector<float> mags(d);
    for (int j = 0; j < d; ++j) mags[j] = std::fabs(v[j]);
    std::sort(mags.rbegin(), mags.rend());
    if (d == 1 || mags[1] < 0.99f * mags[0]) return v;
  }
}

TEST(CrossPolytopeCode, IsTheSignedArgmaxAndScaleInvariant) {
  std::mt19937_64 rng(11);
  for (int d : {1, 2, 4, 8, 16, 32}) {
    for (int trial = 0; trial < 500; ++trial) {
      std::vector<float> v = vector_with_clear_max(rng, d);
      int j = 0;
      for (int k = 1; k < d; ++k)
        if (std::fabs(v[k]) > std::fabs(v[j])) j = k;
      const uint32_t code = cross_polytope_code(v.data(), d);
      ASSERT_EQ(code, uint32_t(2 * j + (v[j] < 0)));
      ASSERT_LT(code, uint32_t(1) << code_bits(d));
      for (float scale : {2.5f, 1e-3f, 1e4f}) {
        std::vector<float> w(v);
        for (float& x : w) x *= scale;
        ASSERT_EQ(cross_polytope_code(w.data(), d), code) << "scale " << scale;
      }
      // The sign is the code's low bit.
      std::vector<float> neg(v);
      for (float& x : neg) x = -x;
      ASSERT_EQ(cross_polytope_code(neg.data(), d), code ^ 1u);
    }
  }
}

TEST(CrossPolytopeCode, TiesGoToTheLowestIndex) {
  const float a[] = {1.0f, -3.0f, 3.0f, 0.5f};
  EXPECT_EQ(cross_polytope_code(a, 4), 2u * 1 + 1);
  const float b[] = {0.5f, 3.0f, -3.0f, 3.0f};
  EXPECT_EQ(cross_polytope_code(b, 4), 2u * 1);
  const float zeros[] = {0.0f, 0.0f, 0.0f, 0.0f};
  EXPECT_EQ(cross_polytope_code(zeros, 4), 0u);
  const float c[] = {-2.0f, 2.0f};
  EXPECT_EQ(cross_polytope_code(c, 2), 1u);
}

TEST(KeyLayout, TableZeroIsMostSignificant) {
  std::mt19937_64 rng(5);
  for (int d : {1, 2, 8, 32}) {
    const int bits = code_bits(d);
    const int tables = std::min(16, 64 / bits);
    const uint64_t mask = (uint64_t(1) << bits) - 1;
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<uint32_t> codes(tables);
      uint64_t key = 0;
      for (int t = 0; t < tables; ++t) {
        codes[t] = uint32_t(rng() % (2 * d));
        key = key_with_code(key, codes[t], t, tables, bits);
      }
      for (int t = 0; t < tables; ++t) {
        ASSERT_EQ((key >> ((tables - 1 - t) * bits)) & mask, codes[t]);
      }
      if (tables * bits < 64) {
        ASSERT_EQ(key >> (tables * bits), 0u);
      }
      // Keys order lexicographically by (code_0, code_1, ...).
      std::vector<uint32_t> other(codes);
      const int t = int(rng() % tables);
      other[t] = uint32_t(rng() % (2 * d));
      uint64_t other_key = 0;
      for (int u = 0; u < tables; ++u)
        other_key = key_with_code(other_key, other[u], u, tables, bits);
      ASSERT_EQ(other_key < key, other < codes);
    }
  }
}

int first_differing_bit_reference(uint64_t a, uint64_t b, int key_bits) {
  for (int i = 0; i < key_bits; ++i) {
    const int bit = key_bits - 1 - i;
    if (((a >> bit) & 1) != ((b >> bit) & 1)) return i;
  }
  return key_bits;
}

TEST(FirstDifferingBit, MatchesBitByBitReference) {
  std::mt19937_64 rng(9);
  for (int key_bits = 1; key_bits <= 64; ++key_bits) {
    const uint64_t mask = key_bits == 64 ? ~uint64_t(0) : (uint64_t(1) << key_bits) - 1;
    for (int trial = 0; trial < 300; ++trial) {
      const uint64_t a = rng() & mask;
      uint64_t b;
      switch (trial % 3) {
        case 0:
          b = a;
          break;
        case 1:
          b = a ^ (uint64_t(1) << (rng() % key_bits));
          break;
        default:
          b = rng() & mask;
          break;
      }
      ASSERT_EQ(first_differing_bit(a, b, key_bits), first_differing_bit_reference(a, b, key_bits))
          << std::hex << a << " " << b << std::dec << " bits " << key_bits;
      ASSERT_EQ(first_differing_bit(a, b, key_bits), first_differing_bit(b, a, key_bits));
    }
  }
}

// The whole hash path: x and 2.5x share every table's code (the projection
// is linear, codes are scale-invariant), and -x flips every sign bit.
class HashKeys : public ::testing::TestWithParam<ProjectionKind> {};

TEST_P(HashKeys, PositiveMultipleSharesTheKeyAndNegationFlipsSigns) {
  constexpr int kTables = 6, kDim = 8;
  constexpr size_t kH = 100;
  cpu::Projection proj;
  cpu::build_projection(ProjectionSpec{0x15a3e, GetParam(), 16, kH}, kTables, kDim, DType::kFloat32,
                        &proj);
  ASSERT_EQ(proj.cols % cpu::kProjectColBlock, 0u);
  ASSERT_GE(proj.cols, size_t(kTables * kDim));
  ThreadPool pool(1);
  const int bits = code_bits(kDim);
  uint64_t sign_bits = 0;
  for (int t = 0; t < kTables; ++t) sign_bits = key_with_code(sign_bits, 1, t, kTables, bits);
  for (const char* isa : {"scalar", "avx2"}) {
    const cpu::Kernels* kernels = cpu::select_kernels(isa);
    if (kernels == nullptr) continue;  // no AVX2 on this processor
    std::mt19937_64 rng(21);
    std::normal_distribution<float> dist;
    int distinct_keys = 0;
    uint64_t previous = 0;
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> rows(3 * kH);
      for (size_t k = 0; k < kH; ++k) {
        rows[k] = dist(rng);
        rows[kH + k] = 2.5f * rows[k];
        rows[2 * kH + k] = -rows[k];
      }
      std::vector<float> y(3 * proj.cols);
      cpu::project_rows(*kernels, pool, proj, DType::kFloat32, rows.data(), 3, false, y.data());
      uint64_t keys[3];
      cpu::hash_keys(y.data(), 3, proj.cols, kTables, kDim, keys);
      ASSERT_EQ(keys[0], keys[1]) << isa << " trial " << trial;
      ASSERT_EQ(keys[2], keys[0] ^ sign_bits) << isa << " trial " << trial;
      distinct_keys += trial == 0 || keys[0] != previous;
      previous = keys[0];
    }
    // The keys do depend on the data.
    EXPECT_GT(distinct_keys, 190) << isa;
  }
}

INSTANTIATE_TEST_SUITE_P(Projections, HashKeys,
                         ::testing::Values(ProjectionKind::kGaussian, ProjectionKind::kSparseSign),
                         [](const auto& param_info) {
                           return param_info.param == ProjectionKind::kGaussian ? "Gaussian"
                                                                                : "Sparse";
                         });

// The projection matrix is the generator's output, row t*dim + j of the
// matrix being row j of table t, zero-padded.
TEST(BuildProjection, UsesTheGeneratorEntries) {
  cpu::Projection proj;
  cpu::build_projection(ProjectionSpec{77, ProjectionKind::kGaussian, 0, 13}, 3, 4, DType::kFloat32,
                        &proj);
  ASSERT_EQ(proj.stride % cpu::kRowPad, 0u);
  ASSERT_GE(proj.stride, 13u);
  for (uint32_t t = 0; t < 3; ++t) {
    for (uint32_t j = 0; j < 4; ++j) {
      for (uint32_t k = 0; k < proj.stride; ++k) {
        const float want = k < 13 ? projection_entry(77, t, j, k) : 0.0f;
        ASSERT_EQ(proj.matrix[(t * 4 + j) * proj.stride + k], want);
      }
    }
  }
  for (size_t r = 12; r < proj.cols; ++r)
    for (size_t k = 0; k < proj.stride; ++k) ASSERT_EQ(proj.matrix[r * proj.stride + k], 0.0f);
}

// A sparse output has exactly one nonzero, +1 or -1, in each block of
// ceil(H / nnz) elements; the CPU's lists are the generator's nonzeros.
TEST(BuildProjection, SparseHasOneSignPerBlock) {
  for (uint32_t h : {7u, 100u, 256u, 1000u, 4096u}) {
    for (uint32_t nnz : {1u, 16u, 64u, 5000u}) {
      const ProjectionSpec spec{0x15a3e, ProjectionKind::kSparseSign, nnz, h};
      cpu::Projection proj;
      cpu::build_projection(spec, 6, 8, DType::kBFloat16, &proj);
      const uint32_t block = sparse_block_elems(spec);
      ASSERT_EQ(proj.per_col, (h + block - 1) / block) << h << " " << nnz;
      ASSERT_LE(proj.per_col, std::min(h, nnz));
      ASSERT_GE(proj.per_col, std::min(h, nnz) / 2 + 1);
      ASSERT_TRUE(proj.matrix.empty());
      size_t negative = 0;
      for (uint32_t r = 0; r < 48; ++r) {
        size_t listed = 0;
        for (uint32_t k = 0; k < h; ++k) {
          const float v = projection_value(spec, r / 8, r % 8, k);
          if (v == 0.0f) continue;
          ASSERT_TRUE(v == 1.0f || v == -1.0f);
          ASSERT_LT(listed, proj.per_col);
          const uint32_t e = proj.nonzeros[r * proj.per_col + listed++];
          ASSERT_EQ(e & cpu::kSparseIndexMask, k);
          ASSERT_EQ((e & cpu::kSparseNegative) != 0, v < 0.0f);
          ASSERT_EQ((e & cpu::kSparseIndexMask) / block, listed - 1);
          negative += v < 0.0f;
        }
        ASSERT_EQ(listed, proj.per_col);
      }
      if (proj.per_col * 48 >= 400) {
        const double share = double(negative) / double(proj.per_col * 48);
        EXPECT_NEAR(share, 0.5, 0.1) << h << " " << nnz;
      }
    }
  }
}

// Outputs of different tables, rows and seeds place their nonzeros
// independently: two outputs share about 1/block of their places.
TEST(BuildProjection, SparseOutputsAreIndependent) {
  const uint32_t h = 4096, nnz = 64;
  const ProjectionSpec a{1, ProjectionKind::kSparseSign, nnz, h};
  const ProjectionSpec b{2, ProjectionKind::kSparseSign, nnz, h};
  size_t same_row = 0, same_seed = 0, pairs = 0;
  for (uint32_t r = 0; r + 1 < 48; ++r) {
    for (uint32_t blk = 0; blk < nnz; ++blk) {
      bool neg = false;
      const uint32_t k = sparse_nonzero(a, r / 8, r % 8, blk, &neg);
      same_row += k == sparse_nonzero(a, (r + 1) / 8, (r + 1) % 8, blk, &neg);
      same_seed += k == sparse_nonzero(b, r / 8, r % 8, blk, &neg);
      ++pairs;
    }
  }
  // Expected pairs * (1 / 64) = 47; far from every place shared.
  EXPECT_LT(same_row, pairs / 16);
  EXPECT_LT(same_seed, pairs / 16);
}

}  // namespace
}  // namespace lshmoe

// The configuration validates key widths without the codec's headers: its
// count must be the codec's.
TEST(LshMath, ConfigKeyBitsAreTheCodecs) {
  for (int64_t d = 1; d <= 32; d *= 2) {
    lshmoe::Config c;
    c.hashes = 5;
    c.proj_dim = d;
    EXPECT_EQ(lshmoe::key_bits(c), 5 * lshmoe::code_bits(int(d))) << "d = " << d;
  }
}
