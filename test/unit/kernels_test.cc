// CPU kernels: the AVX2 table against the scalar one and against plain
// references, and the scalar dtype conversions against independent ones.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "codec/cpu/kernels.h"
#include "codec/cpu/projection.h"
#include "codec/cpu/stream_store.h"
#include "common/dtype.h"
#include "common/thread_pool.h"
#include "test_util.h"

namespace lshmoe::cpu {
namespace {

using test::ulp;

constexpr DType kDtypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};

lshmoe_dtype_t public_dtype(DType d) {
  return lshmoe_dtype_t(d);
}

uint32_t bits(float f) {
  return bit_cast_hd<uint32_t>(f);
}
float from_bits(uint32_t u) {
  return bit_cast_hd<float>(u);
}

class Kernels2 : public ::testing::Test {
 protected:
  void SetUp() override {
    scalar_ = select_kernels("scalar");
    ASSERT_NE(scalar_, nullptr);
    EXPECT_STREQ(scalar_->isa, "scalar");
    avx2_ = select_kernels("avx2");
    if (avx2_ == nullptr) GTEST_SKIP() << "no AVX2+FMA+F16C on this processor";
    EXPECT_STREQ(avx2_->isa, "avx2");
    EXPECT_EQ(select_kernels("auto"), avx512bf16_supported() ? &avx512bf16_kernels() : avx2_);
  }
  const Kernels* scalar_ = nullptr;
  const Kernels* avx2_ = nullptr;
};

std::vector<uint8_t> random_elems(DType d, size_t n, std::mt19937_64& rng, float scale = 1.0f) {
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<uint8_t> out(n * dtype_size(d));
  for (size_t i = 0; i < n; ++i) store_elem(d, out.data(), i, dist(rng));
  return out;
}

TEST_F(Kernels2, ProjectAgreesWithReference) {
  std::mt19937_64 rng(1);
  std::normal_distribution<float> dist;
  for (DType d : kDtypes) {
    for (size_t row_elems : {1, 7, 8, 100, 1030, 2100}) {
      for (size_t cols : {4, 48}) {
        const size_t n = 37, stride = (row_elems + kRowPad - 1) / kRowPad * kRowPad;
        const std::vector<uint8_t> x = random_elems(d, n * row_elems, rng);
        std::vector<float> p(cols * stride, 0.0f);
        for (size_t j = 0; j < cols; ++j)
          for (size_t k = 0; k < row_elems; ++k) p[j * stride + k] = dist(rng);
        // Rows [5, n) only: the kernels must honour row_begin.
        const float kUnset = -12345.0f;
        std::vector<float> ys(n * cols, kUnset), ya(n * cols, kUnset);
        scalar_->project(d, x.data(), 5, n, row_elems, p.data(), nullptr, stride, cols, ys.data());
        avx2_->project(d, x.data(), 5, n, row_elems, p.data(), nullptr, stride, cols, ya.data());
        for (size_t r = 0; r < n; ++r) {
          for (size_t j = 0; j < cols; ++j) {
            if (r < 5) {
              ASSERT_EQ(ys[r * cols + j], kUnset);
              ASSERT_EQ(ya[r * cols + j], kUnset);
              continue;
            }
            double ref = 0, mag = 0;
            for (size_t k = 0; k < row_elems; ++k) {
              const double t =
                  double(load_elem(d, x.data(), r * row_elems + k)) * p[j * stride + k];
              ref += t;
              mag += std::fabs(t);
            }
            // fp32 sums of row_elems terms in blocks: error well below 1e-5 sum|t|.
            const double tol = 1e-5 * mag + 1e-30;
            ASSERT_NEAR(ys[r * cols + j], ref, tol) << "scalar " << row_elems << " " << cols;
            ASSERT_NEAR(ya[r * cols + j], ref, tol) << "avx2 " << row_elems << " " << cols;
          }
        }
      }
    }
  }
}

// The AVX-512 BF16 projection of bf16 rows against a bf16-exact matrix:
// products are exact, only the summation order differs from the reference.
TEST(KernelsAvx512Bf16, ProjectAgreesWithReference) {
  if (!avx512bf16_supported()) GTEST_SKIP() << "no AVX-512 BF16 on this processor";
  const Kernels& k = avx512bf16_kernels();
  EXPECT_STREQ(k.isa, "avx512bf16");
  std::mt19937_64 rng(11);
  std::normal_distribution<float> dist;
  for (size_t row_elems : {1, 31, 32, 33, 100, 1030, 4096}) {
    for (size_t cols : {4, 12, 48}) {
      const size_t n = 23, stride = (row_elems + kRowPad - 1) / kRowPad * kRowPad;
      const std::vector<uint8_t> x = random_elems(DType::kBFloat16, n * row_elems, rng);
      std::vector<float> p(cols * stride, 0.0f);
      std::vector<uint16_t> p16(cols * stride, 0);
      for (size_t j = 0; j < cols; ++j) {
        for (size_t kk = 0; kk < row_elems; ++kk) {
          p16[j * stride + kk] = float_to_bf16(dist(rng));
          p[j * stride + kk] = bf16_to_float(p16[j * stride + kk]);
        }
      }
      const float kUnset = -12345.0f;
      std::vector<float> y(n * cols, kUnset);
      k.project(DType::kBFloat16, x.data(), 2, n, row_elems, p.data(), p16.data(), stride, cols,
                y.data());
      for (size_t r = 0; r < n; ++r) {
        for (size_t j = 0; j < cols; ++j) {
          if (r < 2) {
            ASSERT_EQ(y[r * cols + j], kUnset);
            continue;
          }
          double ref = 0, mag = 0;
          for (size_t kk = 0; kk < row_elems; ++kk) {
            const double t = double(load_elem(DType::kBFloat16, x.data(), r * row_elems + kk)) *
                             p[j * stride + kk];
            ref += t;
            mag += std::fabs(t);
          }
          ASSERT_NEAR(y[r * cols + j], ref, 1e-5 * mag + 1e-30) << row_elems << " " << cols;
        }
      }
    }
  }
}

// The sparse projection follows its contract exactly (one sum in entry
// order), so every table, AVX-512 BF16 included, gives the same bits,
// and the sums are the double-precision ones within rounding. Output counts
// from 15 to 80 take every accumulator count of the AVX-512 permute kernel
// (1 to 4 registers of 16 outputs) and its fallback beyond 64.
TEST(KernelsSparse, ProjectFollowsTheContractOnEveryIsa) {
  std::mt19937_64 rng(11);
  struct Case {
    uint32_t h, nnz;
    int tables, dim;
  };
  for (DType d : kDtypes) {
    for (Case c :
         {Case{5, 64, 6, 8}, Case{256, 64, 6, 8}, Case{1000, 64, 6, 8}, Case{4096, 64, 6, 8},
          Case{4096, 3, 6, 8}, Case{1500, 1, 6, 8}, Case{1000, 64, 3, 5}, Case{4096, 64, 4, 8},
          Case{7168, 64, 8, 8}, Case{300, 64, 10, 8}}) {
      const uint32_t h = c.h, nnz = c.nnz;
      SCOPED_TRACE("h " + std::to_string(h) + " outputs " + std::to_string(c.tables * c.dim));
      const ProjectionSpec spec{0x15a3e, ProjectionKind::kSparseSign, nnz, h};
      Projection proj;
      build_projection(spec, c.tables, c.dim, d, &proj);
      const size_t n = 21, used = size_t(c.tables * c.dim);
      const size_t cols = proj.cols + kProjectColBlock;  // padding checked too
      std::vector<uint8_t> x = random_elems(d, n * h, rng, 3.0f);
      // Row 3 holds an infinity where no output samples (when there is such
      // an element), row 12 a NaN at element 0: both must come out NaN.
      std::vector<bool> sampled(h, false), poisoned(n, false);
      for (uint32_t e : proj.nonzeros) sampled[e & kSparseIndexMask] = true;
      const size_t unsampled =
          size_t(std::find(sampled.begin(), sampled.end(), false) - sampled.begin());
      store_elem(d, x.data(), 3 * h + (unsampled < h ? unsampled : 0), INFINITY);
      store_elem(d, x.data(), 12 * h, NAN);
      poisoned[3] = poisoned[12] = true;
      if (h == 4096 && nnz == 64) {
        ASSERT_LT(unsampled, h) << "the case this checks";
      }
      std::vector<float> want(n * cols, 0.0f);
      for (size_t r = 0; r < n; ++r) {
        for (size_t j = 0; j < used; ++j) {
          float sum = 0.0f;
          double exact = 0.0;
          for (size_t i = 0; i < proj.per_col; ++i) {
            const uint32_t e = proj.nonzeros[j * proj.per_col + i];
            const float v = load_elem(d, x.data(), r * h + (e & kSparseIndexMask));
            sum += (e & kSparseNegative) ? -v : v;
            exact += (e & kSparseNegative) ? -double(v) : double(v);
          }
          if (poisoned[r]) {
            want[r * cols + j] = NAN;
            continue;
          }
          want[r * cols + j] = sum;
          ASSERT_NEAR(want[r * cols + j], exact, 1e-4 * (1.0 + std::fabs(exact)));
        }
      }
      for (const char* isa : {"scalar", "avx2", "avx512bf16"}) {
        const Kernels* k = select_kernels(isa);
        if (k == nullptr) continue;
        std::vector<float> y(n * cols, 123.0f);
        k->project_sparse(d, x.data(), 1, n, h, proj.nonzeros.data(), proj.per_col,
                          sparse_block_elems(spec), used, cols, y.data());
        for (size_t j = 0; j < cols; ++j) ASSERT_EQ(y[j], 123.0f) << "row 0 is outside the range";
        for (size_t i = cols; i < n * cols; ++i)
          ASSERT_EQ(bits(y[i]), bits(want[i]))
              << isa << " " << dtype_name(d) << " h " << h << " at " << i;
      }
    }
  }
}

// Through the whole hash (bf16 projection, centring, codes): the AVX-512 BF16
// and scalar kernels differ only in summation order, which may flip a
// near-tie in a code now and then, never more.
TEST(KernelsAvx512Bf16, BucketKeysAgreeWithScalar) {
  if (!avx512bf16_supported()) GTEST_SKIP() << "no AVX-512 BF16 on this processor";
  const size_t n = 20000, h = 1000;
  std::mt19937_64 rng(5);
  const std::vector<uint8_t> x = random_elems(DType::kBFloat16, n * h, rng);
  Projection proj;
  build_projection(ProjectionSpec{99, ProjectionKind::kGaussian, 0, uint32_t(h)}, 6, 8,
                   DType::kBFloat16, &proj);
  ASSERT_EQ(proj.matrix_bf16.size(), proj.matrix.size());
  ThreadPool pool(1);
  std::vector<float> ya(n * proj.cols), yb(n * proj.cols);
  project_rows(avx512bf16_kernels(), pool, proj, DType::kBFloat16, x.data(), n, true, ya.data());
  project_rows(scalar_kernels(), pool, proj, DType::kBFloat16, x.data(), n, true, yb.data());
  std::vector<uint64_t> ka(n), kb(n);
  hash_keys(ya.data(), n, proj.cols, 6, 8, ka.data());
  hash_keys(yb.data(), n, proj.cols, 6, 8, kb.data());
  size_t same = 0;
  for (size_t i = 0; i < n; ++i) same += ka[i] == kb[i];
  EXPECT_GE(double(same) / n, 0.999);
}

// Centroids far apart, rows close to one of them: both kernels must find
// that one (the score is ||c||^2 - 2 <y, c>).
TEST_F(Kernels2, NearestFindsTheSameCentroid) {
  std::mt19937_64 rng(2);
  std::normal_distribution<float> dist;
  for (size_t dims : {1, 8, 48}) {
    for (size_t k : {1, 5, 24, 30, 100}) {
      const size_t stride = (k + 23) / 24 * 24, n = 203;
      std::vector<float> c(k * dims);
      for (float& v : c) v = 10.0f * dist(rng);
      if (dims == 1) {
        for (size_t s = 0; s < k; ++s)
          c[s] = 25.0f * float(s) - 300.0f;  // well separated on a line
      }
      std::vector<float> ct(dims * stride, 0.0f), norm(stride, INFINITY);
      for (size_t s = 0; s < k; ++s) {
        float nn = 0;
        for (size_t e = 0; e < dims; ++e) {
          ct[e * stride + s] = c[s * dims + e];
          nn += c[s * dims + e] * c[s * dims + e];
        }
        norm[s] = nn;
      }
      std::vector<float> y(n * dims);
      std::vector<uint32_t> label(n);
      for (size_t i = 0; i < n; ++i) {
        label[i] = uint32_t(rng() % k);
        for (size_t e = 0; e < dims; ++e)
          y[i * dims + e] = c[label[i] * dims + e] + 0.1f * dist(rng);
      }
      std::vector<uint32_t> bs(n, 999999), ba(n, 999999);
      std::vector<float> ss(n), sa(n);
      scalar_->nearest(y.data(), 3, n, dims, ct.data(), norm.data(), stride, bs.data(), ss.data());
      avx2_->nearest(y.data(), 3, n, dims, ct.data(), norm.data(), stride, ba.data(), sa.data());
      for (size_t i = 0; i < n; ++i) {
        const uint32_t want = i < 3 ? 999999 : label[i];
        ASSERT_EQ(bs[i], want) << "scalar dims " << dims << " k " << k << " row " << i;
        ASSERT_EQ(ba[i], want) << "avx2 dims " << dims << " k " << k << " row " << i;
        if (i < 3) continue;
        // The contract's score of the chosen centroid: fused on AVX2, a
        // product and a sum on the scalar table.
        float fused = 0.0f, plain = 0.0f;
        for (size_t e = 0; e < dims; ++e) {
          const float yv = y[i * dims + e], cv = c[label[i] * dims + e];
          fused = std::fma(yv, cv, fused);
          const float product = yv * cv;
          plain = plain + product;
        }
        ASSERT_EQ(bits(sa[i]), bits(std::fma(-2.0f, fused, norm[label[i]]))) << "avx2 row " << i;
        ASSERT_EQ(bits(ss[i]), bits(norm[label[i]] - 2.0f * plain)) << "scalar row " << i;
      }
    }
  }
}

TEST_F(Kernels2, NearestBreaksTiesTowardTheLowestSlot) {
  const size_t dims = 4, k = 60, stride = 72;
  std::mt19937_64 rng(3);
  std::normal_distribution<float> dist;
  std::vector<float> c(k * dims);
  for (float& v : c) v = 10.0f * dist(rng);
  // Slots 7, 30 and 55 are the same point, in different lanes and blocks.
  for (size_t e = 0; e < dims; ++e) c[30 * dims + e] = c[55 * dims + e] = c[7 * dims + e];
  std::vector<float> ct(dims * stride, 0.0f), norm(stride, INFINITY);
  for (size_t s = 0; s < k; ++s) {
    float nn = 0;
    for (size_t e = 0; e < dims; ++e) {
      ct[e * stride + s] = c[s * dims + e];
      nn += c[s * dims + e] * c[s * dims + e];
    }
    norm[s] = nn;
  }
  std::vector<float> y(9 * dims);
  for (size_t i = 0; i < 9; ++i)
    for (size_t e = 0; e < dims; ++e) y[i * dims + e] = c[7 * dims + e] + 0.01f * dist(rng);
  for (const Kernels* kern : {scalar_, avx2_}) {
    std::vector<uint32_t> best(9);
    kern->nearest(y.data(), 0, 9, dims, ct.data(), norm.data(), stride, best.data(), nullptr);
    for (uint32_t b : best) EXPECT_EQ(b, 7u) << kern->isa;
  }
}

TEST_F(Kernels2, AccumulateStoreResidualCompensateAgree) {
  std::mt19937_64 rng(4);
  std::normal_distribution<float> dist;
  // Every vector table against the scalar one (AVX-512 BF16: its bf16
  // kernels of 32 elements a step; random rows hold no subnormals, which it
  // flushes).
  std::vector<const Kernels*> tables{avx2_};
  if (avx512bf16_supported()) tables.push_back(&avx512bf16_kernels());
  for (const Kernels* k : tables)
    for (DType d : kDtypes) {
      const lshmoe_dtype_t pd = public_dtype(d);
      for (size_t n : {1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 64, 95, 1001, 4099}) {
        SCOPED_TRACE(std::string(k->isa) + " " + test::dtype_label(pd) + " n " + std::to_string(n));
        const std::vector<uint8_t> x = random_elems(d, n, rng), c = random_elems(d, n, rng);

        // accumulate: one fp32 add per element in both.
        std::vector<float> acc0(n);
        for (float& v : acc0) v = dist(rng);
        std::vector<float> as = acc0, aa = acc0;
        scalar_->accumulate(d, x.data(), n, as.data());
        k->accumulate(d, x.data(), n, aa.data());
        for (size_t i = 0; i < n; ++i) {
          ASSERT_EQ(bits(as[i]), bits(acc0[i] + load_elem(d, x.data(), i)));
          ASSERT_EQ(bits(aa[i]), bits(as[i]));
        }

        // store_scaled: one multiply and one rounding to the dtype.
        const size_t es = dtype_size(d);
        std::vector<uint8_t> ss(n * es), sa(n * es);
        scalar_->store_scaled(d, acc0.data(), 1.0f / 3.0f, n, ss.data());
        k->store_scaled(d, acc0.data(), 1.0f / 3.0f, n, sa.data());
        for (size_t i = 0; i < n; ++i) {
          std::vector<uint8_t> want(es);
          store_elem(d, want.data(), 0, acc0[i] * (1.0f / 3.0f));
          ASSERT_EQ(memcmp(&ss[i * es], want.data(), es), 0) << i;
        }
        ASSERT_EQ(ss, sa);

        // residual: r = round(x - c) identical; the energy sums agree closely.
        std::vector<uint8_t> rs(n * es), ra(n * es);
        double rrs = 0.5, xxs = 0.25, rra = 0.5, xxa = 0.25;  // they add to what is there
        scalar_->residual(d, x.data(), c.data(), n, rs.data(), &rrs, &xxs, false);
        k->residual(d, x.data(), c.data(), n, ra.data(), &rra, &xxa, false);
        ASSERT_EQ(rs, ra);
        double rr = 0.5, xx = 0.25;
        for (size_t i = 0; i < n; ++i) {
          const float xv = load_elem(d, x.data(), i);
          const float want = round_to(d, xv - load_elem(d, c.data(), i));
          ASSERT_EQ(load_elem(d, rs.data(), i), want) << i;
          rr += double(want) * want;
          xx += double(xv) * xv;
        }
        EXPECT_NEAR(rrs, rr, 1e-5 * rr);
        EXPECT_NEAR(rra, rr, 1e-5 * rr);
        EXPECT_NEAR(xxs, xx, 1e-5 * xx);
        EXPECT_NEAR(xxa, xx, 1e-5 * xx);

        // compensate: c + alpha r, fused on AVX2: equal for alpha = 1 (alpha r
        // is exact), within one ulp of the dtype otherwise.
        for (float alpha : {1.0f, 0.5f, 0.3f}) {
          std::vector<uint8_t> ys(n * es), ya(n * es);
          scalar_->compensate(d, c.data(), rs.data(), alpha, n, ys.data(), false);
          k->compensate(d, c.data(), rs.data(), alpha, n, ya.data(), false);
          for (size_t i = 0; i < n; ++i) {
            const double want =
                double(load_elem(d, c.data(), i)) + alpha * double(load_elem(d, rs.data(), i));
            const float s = load_elem(d, ys.data(), i), a = load_elem(d, ya.data(), i);
            // Two roundings (alpha r, then the sum) on a scale of |c| + |alpha r|.
            const double scale = std::fabs(load_elem(d, c.data(), i)) +
                                 std::fabs(alpha * load_elem(d, rs.data(), i));
            ASSERT_LE(std::fabs(s - want), ulp(pd, scale)) << "scalar alpha " << alpha;
            ASSERT_LE(std::fabs(a - want), ulp(pd, scale)) << k->isa << " alpha " << alpha;
            if (alpha == 1.0f) {
              ASSERT_EQ(s, a);
            }
          }
        }
      }
    }
}

// A slot's mean and residuals in one pass: the bits of accumulate (rows in
// order), store_scaled by 1 / count and residual, on every table, streamed
// or not, with residual rows aligned for non-temporal stores or not; a
// single row's mean is the row itself, bit for bit; without residuals, the
// mean alone.
TEST_F(Kernels2, MeanAndResidualsEqualTheirSteps) {
  std::mt19937_64 rng(21);
  std::vector<const Kernels*> tables = {scalar_, avx2_};
  if (avx512bf16_supported()) tables.push_back(&avx512bf16_kernels());
  for (const Kernels* kern : tables)
    for (DType d : kDtypes)
      for (size_t n : {5, 32, 64, 300, 1000, 4096 + 7})
        for (size_t count : {1, 2, 5, 17})
          for (bool stream : {false, true})
            for (size_t misalign : {0, 2}) {
              SCOPED_TRACE(std::string(kern->isa) + " " + dtype_name(d) + " n " +
                           std::to_string(n) + " count " + std::to_string(count) +
                           (stream ? " streamed" : "") + " misaligned by " +
                           std::to_string(misalign));
              const size_t es = dtype_size(d), row_bytes = n * es;
              // Rows scattered through a message, in no particular order.
              const std::vector<uint8_t> message = random_elems(d, (count + 3) * n, rng, 2.0f);
              std::vector<const char*> rows(count);
              for (size_t k = 0; k < count; ++k)
                rows[k] = reinterpret_cast<const char*>(message.data()) +
                          ((k * 7 + 3) % (count + 3)) * row_bytes;
              if (count == 1) {  // a row whose copy differs from 0 + x: a negative zero
                store_elem(d, const_cast<char*>(rows[0]), 0, -0.0f);
              }
              std::vector<uint8_t> residual_store(count * row_bytes + 64 + misalign);
              char* base = reinterpret_cast<char*>(
                  (reinterpret_cast<uintptr_t>(residual_store.data()) + 63) & ~uintptr_t(63));
              std::vector<char*> residuals(count);
              for (size_t k = 0; k < count; ++k) residuals[k] = base + misalign + k * row_bytes;
              std::vector<uint8_t> mean(row_bytes);
              // fp32 sums of a few thousand terms, in other orders: 1e-4.
              std::vector<double> energies(2 * count, 0.0);
              kern->mean_and_residuals(d, rows.data(), count, n, rows[0], mean.data(),
                                       residuals.data(), energies.data(), stream);
              stream_fence();
              // The steps, on the scalar table.
              std::vector<uint8_t> want_mean(row_bytes), want_residual(row_bytes);
              if (count == 1) {
                memcpy(want_mean.data(), rows[0], row_bytes);
              } else {
                std::vector<float> acc(n, 0.0f);
                for (size_t k = 0; k < count; ++k) scalar_->accumulate(d, rows[k], n, acc.data());
                scalar_->store_scaled(d, acc.data(), 1.0f / float(count), n, want_mean.data());
              }
              ASSERT_EQ(mean, want_mean);
              // Without residuals: the mean alone, the same bits.
              std::vector<uint8_t> mean_alone(row_bytes);
              kern->mean_and_residuals(d, rows.data(), count, n, nullptr, mean_alone.data(),
                                       nullptr, nullptr, false);
              ASSERT_EQ(mean_alone, want_mean);
              for (size_t k = 0; k < count; ++k) {
                double rr = 0.0, xx = 0.0;
                scalar_->residual(d, rows[k], want_mean.data(), n, want_residual.data(), &rr, &xx,
                                  false);
                ASSERT_EQ(memcmp(residuals[k], want_residual.data(), row_bytes), 0) << "row " << k;
                EXPECT_NEAR(energies[2 * k], rr, 1e-4 * rr + 1e-30) << "row " << k;
                EXPECT_NEAR(energies[2 * k + 1], xx, 1e-4 * xx) << "row " << k;
              }
            }
}

// A streamed output holds the same values as a stored one, on every ISA,
// whether the output is aligned for non-temporal stores or not, with NaNs
// and infinities in the inputs.
TEST_F(Kernels2, StreamedResidualAndCompensateEqualStoredOnes) {
  std::mt19937_64 rng(11);
  std::vector<const Kernels*> tables = {scalar_, avx2_};
  if (avx512bf16_supported()) tables.push_back(&avx512bf16_kernels());
  for (const Kernels* kern : tables) {
    for (DType d : kDtypes) {
      const size_t es = dtype_size(d);
      for (size_t n : {1, 16, 33, 1024, 4096 + 7}) {
        SCOPED_TRACE(std::string(kern->isa) + " " + test::dtype_label(public_dtype(d)) + " n " +
                     std::to_string(n));
        std::vector<uint8_t> x = random_elems(d, n, rng), c = random_elems(d, n, rng);
        store_elem(d, x.data(), n / 2, std::numeric_limits<float>::quiet_NaN());
        store_elem(d, c.data(), n - 1, std::numeric_limits<float>::infinity());
        for (size_t shift : {size_t(0), size_t(16), es}) {  // aligned to 64, to 16, to none
          std::vector<uint8_t> stored(n * es), streamed(n * es + 64 + es);
          uint8_t* out = streamed.data() + ((64 - (uintptr_t(streamed.data()) & 63)) & 63) + shift;
          double rr0 = 0, xx0 = 0, rr1 = 0, xx1 = 0;
          kern->residual(d, x.data(), c.data(), n, stored.data(), &rr0, &xx0, false);
          kern->residual(d, x.data(), c.data(), n, out, &rr1, &xx1, true);
          stream_fence();
          ASSERT_EQ(memcmp(stored.data(), out, n * es), 0) << "residual, shift " << shift;
          EXPECT_TRUE(std::isnan(rr1) && std::isnan(xx1));
          kern->compensate(d, c.data(), x.data(), 0.5f, n, stored.data(), false);
          kern->compensate(d, c.data(), x.data(), 0.5f, n, out, true);
          stream_fence();
          ASSERT_EQ(memcmp(stored.data(), out, n * es), 0) << "compensate, shift " << shift;
        }
      }
    }
  }
}

bool is_nan16(uint16_t h, int mant_bits) {
  const uint16_t exp_mask = uint16_t(((1u << (15 - mant_bits)) - 1) << mant_bits);
  return (h & exp_mask) == exp_mask && (h & ((1u << mant_bits) - 1)) != 0;
}

// Floats that stress a conversion: signed zeros, infinities, NaNs (quiet,
// signalling, with payloads), subnormals of every format, the overflow
// edges, exact ties, and random bit patterns.
std::vector<float> conversion_cases() {
  std::vector<uint32_t> u = {0x00000000, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000,
                             0xffc00000, 0x7fc00001, 0x7fffffff, 0xffffffff, 0x7fa00000,
                             0x7f800001, 0xff800001, 0x7fe00000, 0x7fc02000, 0x7fd55555,
                             0x00000001, 0x80000001, 0x007fffff, 0x00400000, 0x00800000,
                             0x7f7fffff, 0xff7fffff, 0x7f7f8000, 0x7f7f7fff};
  // fp16 edges: max 65504, the rounding boundary 65520, subnormal range.
  for (float f : {65504.0f, 65519.996f, 65520.0f, 65536.0f, 6.1035156e-05f, 6.0975552e-05f,
                  5.9604645e-08f, 2.9802322e-08f, 2.9802326e-08f, 8.9406967e-08f, 1.0f,
                  1.00048828125f, 1.00146484375f, 2049.0f, 2051.0f})
    u.push_back(bits(f));
  // Exact halfway points and their neighbours, for both 16-bit formats.
  for (uint32_t hi = 0; hi < 512; ++hi) {
    const uint32_t base = (hi * 0x01234567u) & 0x7fff0000u;
    for (uint32_t low : {0x8000u, 0x7fffu, 0x8001u, 0x18000u}) u.push_back(base | low);
    const uint32_t base16 = (0x38800000u + hi * 0x00012000u) & 0xffffe000u;  // fp16 normal range
    for (uint32_t low : {0x1000u, 0x0fffu, 0x1001u, 0x3000u}) u.push_back(base16 | low);
  }
  std::mt19937_64 rng(6);
  for (int i = 0; i < 100000; ++i) u.push_back(uint32_t(rng()));
  // Values in the fp16 subnormal range, where rounding goes through a trick.
  std::uniform_real_distribution<float> sub(0.0f, 6.2e-5f);
  for (int i = 0; i < 50000; ++i) u.push_back(bits(sub(rng)) | (i % 2 ? 0x80000000u : 0u));
  std::vector<float> out;
  for (uint32_t v : u) {
    out.push_back(from_bits(v));
    out.push_back(from_bits(v ^ 0x80000000u));
  }
  return out;
}

// Stores `v` (times one) through both kernel tables and compares every
// element with the scalar conversion; NaN inputs are compared only when
// `nan_bits`, else they must merely stay NaN.
void expect_stores_match(const Kernels& scalar, const Kernels& avx2, const std::vector<float>& v,
                         bool nan_bits) {
  const size_t n = v.size();
  // The kernels store acc * scale; a multiply by one quiets signalling NaNs,
  // so the reference converts the same products.
  volatile float one = 1.0f;
  for (DType d : {DType::kBFloat16, DType::kFloat16}) {
    std::vector<uint16_t> ss(n), sa(n);
    scalar.store_scaled(d, v.data(), 1.0f, n, ss.data());
    avx2.store_scaled(d, v.data(), 1.0f, n, sa.data());
    const int mant = d == DType::kBFloat16 ? 7 : 10;
    int bad_scalar = 0, bad_avx2 = 0;
    for (size_t i = 0; i < n; ++i) {
      const float f = v[i] * one;
      const uint16_t want = d == DType::kBFloat16 ? float_to_bf16(f) : float_to_fp16(f);
      if (std::isnan(f) && !nan_bits) {
        ASSERT_TRUE(is_nan16(ss[i], mant) && is_nan16(sa[i], mant)) << std::hex << bits(f);
        continue;
      }
      if (ss[i] != want && ++bad_scalar <= 5) {
        ADD_FAILURE() << "scalar " << dtype_name(d) << " " << std::hex << bits(v[i]) << " -> "
                      << ss[i] << ", want " << want;
      }
      if (sa[i] != want && ++bad_avx2 <= 5) {
        ADD_FAILURE() << "avx2 " << dtype_name(d) << " " << std::hex << bits(v[i]) << " -> "
                      << sa[i] << ", want " << want;
      }
    }
    EXPECT_EQ(bad_scalar, 0);
    EXPECT_EQ(bad_avx2, 0);
    // The 16-bit loads widen exactly.
    std::vector<float> acc(n, 0.0f), acc_a(n, 0.0f);
    scalar.accumulate(d, ss.data(), n, acc.data());
    avx2.accumulate(d, ss.data(), n, acc_a.data());
    for (size_t i = 0; i < n; ++i) {
      const float want = d == DType::kBFloat16 ? bf16_to_float(ss[i]) : fp16_to_float(ss[i]);
      if (std::isnan(want)) {
        ASSERT_TRUE(std::isnan(acc[i]) && std::isnan(acc_a[i]));
      } else {
        ASSERT_EQ(bits(acc[i]), bits(want + 0.0f));
        ASSERT_EQ(bits(acc_a[i]), bits(want + 0.0f));
      }
    }
  }
}

// The kernels' 16-bit stores are bit-identical to the scalar conversions.
TEST_F(Kernels2, StoreConversionsMatchScalarBitForBit) {
  expect_stores_match(*scalar_, *avx2_, conversion_cases(), false);
}

TEST_F(Kernels2, StoreConversionsMatchScalarOnNaNPayloads) {
  expect_stores_match(*scalar_, *avx2_, conversion_cases(), true);
}

// The AVX-512 BF16 table rounds to bf16 with VCVTNEPS2BF16, which takes fp32
// subnormals as zero; every other value matches the scalar conversion.
TEST(KernelsAvx512Bf16, StoreConversionsMatchScalarOutsideSubnormals) {
  if (!avx512bf16_supported()) GTEST_SKIP() << "no AVX-512 BF16 on this processor";
  std::vector<float> cases;
  for (float f : conversion_cases()) {
    if (std::fpclassify(f) != FP_SUBNORMAL) cases.push_back(f);
  }
  expect_stores_match(scalar_kernels(), avx512bf16_kernels(), cases, false);
  expect_stores_match(scalar_kernels(), avx512bf16_kernels(), cases, true);
  // A full vector of subnormals: zeros (documented; activations never get there).
  const std::vector<float> tiny(8, 1e-39f);
  std::vector<uint16_t> out(8, 0xffff);
  avx512bf16_kernels().store_scaled(DType::kBFloat16, tiny.data(), 1.0f, 8, out.data());
  for (uint16_t h : out) EXPECT_EQ(h, 0u);
  EXPECT_NE(float_to_bf16(tiny[0]), 0u);
}

// The compiler's _Float16 is the reference of the fp16 tests (clang has it on
// x86 from version 15, gcc from 12).
#if defined(__FLT16_MAX__)
#define LSHMOE_TEST_HAVE_FLOAT16 1
#endif

TEST(Fp16, EveryHalfRoundTrips) {
#ifndef LSHMOE_TEST_HAVE_FLOAT16
  GTEST_SKIP() << "this compiler has no _Float16, the reference conversion";
#else
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = fp16_to_float(uint16_t(h));
    _Float16 ref_h;
    const uint16_t h16 = uint16_t(h);
    memcpy(&ref_h, &h16, 2);
    if (is_nan16(uint16_t(h), 10)) {
      ASSERT_TRUE(std::isnan(f)) << std::hex << h;
      ASSERT_TRUE(is_nan16(float_to_fp16(f), 10)) << std::hex << h;
      ASSERT_EQ(float_to_fp16(f) & 0x8000, h & 0x8000) << std::hex << h;
      continue;
    }
    ASSERT_EQ(bits(f), bits(float(ref_h))) << std::hex << h;  // widening is exact
    ASSERT_EQ(float_to_fp16(f), h) << std::hex << h;
  }
#endif
}

// float -> fp16 against the compiler's own conversion (libgcc's soft-float
// routine here, an independent implementation), round to nearest even.
TEST(Fp16, NarrowingMatchesFloat16) {
#ifndef LSHMOE_TEST_HAVE_FLOAT16
  GTEST_SKIP() << "this compiler has no _Float16, the reference conversion";
#else
  const std::vector<float> v = conversion_cases();
  std::vector<float> all = v;
  // A sweep over the whole float range.
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 2029) all.push_back(from_bits(uint32_t(u)));
  int bad = 0;
  for (float f : all) {
    const uint16_t got = float_to_fp16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(is_nan16(got, 10)) << std::hex << bits(f);
      continue;
    }
    const _Float16 ref = _Float16(f);
    uint16_t want;
    memcpy(&want, &ref, 2);
    if (got != want && ++bad <= 5) {
      ADD_FAILURE() << std::hex << bits(f) << " -> " << got << ", _Float16 gives " << want;
    }
  }
  EXPECT_EQ(bad, 0);
#endif
}

TEST(Bf16, EveryBfloatRoundTrips) {
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_float(uint16_t(h));
    ASSERT_EQ(bits(f), h << 16);
    const uint16_t back = float_to_bf16(f);
    if (is_nan16(uint16_t(h), 7)) {
      ASSERT_TRUE(is_nan16(back, 7)) << std::hex << h;
      ASSERT_NE(back & 0x40, 0) << "NaNs come back quiet";
      continue;
    }
    ASSERT_EQ(back, h) << std::hex << h;
  }
}

// Round to nearest even by comparing distances in double, where both
// neighbours and the input are exact (the neighbour past the largest finite
// value stands for 2^128, the overflow threshold of IEEE rounding).
uint16_t bf16_reference(float f) {
  const uint32_t u = bits(f);
  const uint32_t down = u & 0xffff0000u;
  const uint32_t up = down + 0x10000u;
  const double x = std::fabs(double(f));
  const double lo = std::fabs(double(from_bits(down)));
  const double hi =
      (up & 0x7fffffffu) == 0x7f800000u ? std::ldexp(1.0, 128) : std::fabs(double(from_bits(up)));
  if (x - lo < hi - x) return uint16_t(down >> 16);
  if (hi - x < x - lo) return uint16_t(up >> 16);
  return (down >> 16) & 1 ? uint16_t(up >> 16) : uint16_t(down >> 16);
}

TEST(Bf16, NarrowingRoundsToNearestEven) {
  std::vector<float> all = conversion_cases();
  for (uint64_t u = 0; u < (uint64_t(1) << 32); u += 2029) all.push_back(from_bits(uint32_t(u)));
  int bad = 0;
  for (float f : all) {
    const uint16_t got = float_to_bf16(f);
    if (std::isnan(f)) {
      ASSERT_TRUE(is_nan16(got, 7)) << std::hex << bits(f);
      ASSERT_EQ(got & 0x8000, (bits(f) >> 16) & 0x8000);
      continue;
    }
    const uint16_t want = bf16_reference(f);
    if (got != want && ++bad <= 5) {
      ADD_FAILURE() << std::hex << bits(f) << " -> " << got << ", want " << want;
    }
  }
  EXPECT_EQ(bad, 0);
}

}  // namespace
}  // namespace lshmoe::cpu
