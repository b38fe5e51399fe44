// The documented generator of clustered synthetic tokens, standing in for
// MoE activations where real ones are absent (the embedded default workload
// and the tests):
//
//   mu      ~ N(0, offset^2 I)               one offset shared by all rows
//   c_k     =  mu + N(0, I),  k < clusters   cluster centres
//   k(i)    ~  Zipf: P(k) proportional to 1 / (k + 1)
//   x_i     =  c_k(i) + spread * N(0, I)
//
// Like real MoE inputs, the rows share a large common component (so centring
// matters) and fall into clusters of very unequal size.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace lshmoe::eval {

struct SyntheticSpec {
  size_t rows = 8192;
  size_t row_elems = 256;
  size_t clusters = 64;
  float spread = 0.35f;
  float offset = 1.0f;
  uint64_t seed = 1;
};

// [rows][row_elems] fp32, row-major.
std::vector<float> clustered_tokens(const SyntheticSpec& spec);

}  // namespace lshmoe::eval
