// The scalar math of the hash, shared by the CPU and CUDA back ends:
// the counter-based Gaussian generator of the projection matrices, the
// cross-polytope code and the bucket-key layout.
#pragma once

#include <cmath>
#include <cstdint>

#include "common/host_device.h"

namespace lshmoe {

// Philox4x32-10 (Salmon et al., SC'11): a counter-based generator, so entry
// (t, row, col) of the projections is computable anywhere, in any order.
struct Philox4 {
  uint32_t v[4];
};

LSHMOE_HD Philox4 philox4x32_10(Philox4 ctr, uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; ++round) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * ctr.v[0];
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * ctr.v[2];
    const uint32_t hi0 = uint32_t(p0 >> 32), lo0 = uint32_t(p0);
    const uint32_t hi1 = uint32_t(p1 >> 32), lo1 = uint32_t(p1);
    ctr = Philox4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return ctr;
}

// A uniform double in [-1, 1) from two 32-bit words (53 random bits).
LSHMOE_HD double uniform_pm1(uint32_t a, uint32_t b) {
  const double u = add_rn(mul_rn(double(a >> 5), 67108864.0), double(b >> 6));
  return add_rn(mul_rn(u, 2.220446049250313080847263336181640625e-16), -1.0);  // u * 2^-52 - 1
}

// Natural log of s in (0, 1) from exact operations only (frexp by bits, then
// the atanh series), so host and device round identically.
LSHMOE_HD double log_exact(double s) {
  int e = 0;
  if (s < 2.2250738585072014e-308) {     // subnormal: scale into the normal range (exact)
    s = mul_rn(s, 18014398509481984.0);  // 2^54
    e = -54;
  }
  uint64_t bits = bit_cast_hd<uint64_t>(s);
  e += int((bits >> 52) & 0x7ff) - 1022;
  bits = (bits & ~(uint64_t(0x7ff) << 52)) | (uint64_t(1022) << 52);
  double m = bit_cast_hd<double>(bits);  // s = m * 2^e, m in [0.5, 1)
  if (m < 0.70710678118654752440) {
    m = mul_rn(m, 2.0);
    e -= 1;
  }
  const double r = div_rn(add_rn(m, -1.0), add_rn(m, 1.0));  // |r| < 0.172
  const double r2 = mul_rn(r, r);
  double p = div_rn(1.0, 27.0);
  for (int k = 12; k >= 0; --k) p = add_rn(mul_rn(p, r2), div_rn(1.0, double(2 * k + 1)));
  return add_rn(mul_rn(double(e), 0.69314718055994530942), mul_rn(mul_rn(2.0, r), p));
}

// Entry (row, col) of projection table `table`: a standard normal sample by
// Marsaglia's polar method, rounded to float. Identical on host and device.
LSHMOE_HD float projection_entry(uint64_t seed, uint32_t table, uint32_t row, uint32_t col) {
  const uint32_t k0 = uint32_t(seed), k1 = uint32_t(seed >> 32);
  for (uint32_t attempt = 0; attempt < 64; ++attempt) {
    const Philox4 r = philox4x32_10(Philox4{{col, row, table, attempt}}, k0, k1);
    const double u = uniform_pm1(r.v[0], r.v[1]);
    const double v = uniform_pm1(r.v[2], r.v[3]);
    const double s = add_rn(mul_rn(u, u), mul_rn(v, v));
    if (s > 0.0 && s < 1.0) {
      const double scale = sqrt_rn(div_rn(mul_rn(-2.0, log_exact(s)), s));
      return float(mul_rn(u, scale));
    }
  }
  return 0.0f;  // unreachable in practice: each attempt is accepted with p = pi/4
}

// Which matrix projects rows before the cross-polytope hash.
//   kGaussian: dense i.i.d. N(0, 1) entries (projection_entry); T*d*H
//     multiply-adds per row.
//   kSparseSign: nnz entries of +1 or -1 per output, the rest 0 (very sparse
//     random projections, Li, Hastie and Church, KDD'06), stratified: the row
//     is cut into nnz blocks of ceil(H / nnz) elements and each block holds
//     one nonzero at a random place. T*d*nnz additions per row, exact in any
//     dtype, and every output has the same variance, so no coordinate of a
//     cross-polytope code is favoured.
enum class ProjectionKind : uint32_t { kGaussian = 0, kSparseSign = 1 };

struct ProjectionSpec {
  uint64_t seed = 0;
  ProjectionKind kind = ProjectionKind::kGaussian;
  uint32_t nnz = 0;  // kSparseSign: nonzeros per output (at most row_elems are used)
  uint32_t row_elems = 0;
};

// Elements per block of a sparse output (the last block may be shorter).
LSHMOE_HD uint32_t sparse_block_elems(const ProjectionSpec& s) {
  const uint32_t nnz = s.nnz < s.row_elems ? s.nnz : s.row_elems;
  return nnz == 0 ? s.row_elems : (s.row_elems + nnz - 1) / nnz;
}

// Number of blocks, and so of nonzeros, of every sparse output.
LSHMOE_HD uint32_t sparse_blocks(const ProjectionSpec& s) {
  const uint32_t b = sparse_block_elems(s);
  return b == 0 ? 0 : (s.row_elems + b - 1) / b;
}

// Column of the nonzero of `block` in output (table, row) of a sparse
// projection; *negative tells its sign.
LSHMOE_HD uint32_t sparse_nonzero(const ProjectionSpec& s, uint32_t table, uint32_t row,
                                  uint32_t block, bool* negative) {
  const uint32_t b = sparse_block_elems(s);
  const uint32_t begin = block * b;
  const uint32_t len = s.row_elems - begin < b ? s.row_elems - begin : b;
  // Counter words 2 and 3 (64 + table, a constant above 63) keep these draws
  // apart from the Gaussian's, whose word 3 is a rejection attempt below 64.
  const Philox4 r = philox4x32_10(Philox4{{block, row, 64u + table, 0x5b0e5u}}, uint32_t(s.seed),
                                  uint32_t(s.seed >> 32));
  *negative = (r.v[1] >> 31) != 0;
  return begin + uint32_t(uint64_t(r.v[0]) * len >> 32);  // uniform in [0, len)
}

// Entry (row, col) of table `table` of the projection `s` describes.
LSHMOE_HD float projection_value(const ProjectionSpec& s, uint32_t table, uint32_t row,
                                 uint32_t col) {
  if (s.kind == ProjectionKind::kGaussian) return projection_entry(s.seed, table, row, col);
  bool negative = false;
  const uint32_t block = col / sparse_block_elems(s);
  if (sparse_nonzero(s, table, row, block, &negative) != col) return 0.0f;
  return negative ? -1.0f : 1.0f;
}

// Bits of one cross-polytope code for projection dimension d: log2(2d).
LSHMOE_HD int code_bits(int proj_dim) {
  int b = 0;
  while ((1 << b) < 2 * proj_dim) ++b;
  return b;
}

// Cross-polytope code of a projected vector: 2j + (v_j < 0) for the j of the
// largest |v_j|, the lowest j on ties.
LSHMOE_HD uint32_t cross_polytope_code(const float* v, int d) {
  int best = 0;
  float best_abs = fabsf(v[0]);
  // Selects, not branches: signs and the winning coordinate are coin tosses
  // per row, and mispredicted branches made this loop most of the hashing's
  // time.
  for (int j = 1; j < d; ++j) {
    const float a = fabsf(v[j]);
    const bool larger = a > best_abs;
    best_abs = larger ? a : best_abs;
    best = larger ? j : best;
  }
  return uint32_t(2 * best) + (v[best] < 0.0f ? 1u : 0u);
}

// Places the code of table t in the key, table 0 most significant.
LSHMOE_HD uint64_t key_with_code(uint64_t key, uint32_t code, int table, int tables, int bits) {
  return key | (uint64_t(code) << ((tables - 1 - table) * bits));
}

// Index (0 = most significant) of the first bit where two key_bits-bit keys
// differ, or key_bits when they are equal.
LSHMOE_HD int first_differing_bit(uint64_t a, uint64_t b, int key_bits) {
  const uint64_t x = a ^ b;
  if (x == 0) return key_bits;
#if defined(__CUDA_ARCH__)
  return __clzll(static_cast<long long>(x)) - (64 - key_bits);
#else
  return __builtin_clzll(x) - (64 - key_bits);
#endif
}

}  // namespace lshmoe
