// Reference experts for quality evaluation: the identity, a seeded GELU FFN
// (H -> 4H -> H), or trained FFN weights y = gelu(x w1 + b1) w2 + b2.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/status.h"

namespace lshmoe::eval {

class Expert {
 public:
  // "identity", "ffn:SEED", or "weights" (then use from_weights).
  static Status from_spec(const std::string& spec, size_t row_elems, Expert* out);
  static Status from_weights(const std::string& w1, const std::string& b1, const std::string& w2,
                             const std::string& b2, size_t row_elems, Expert* out);

  bool identity() const { return hidden_ == 0; }
  const std::string& name() const { return name_; }

  // y = E(x) for n rows of row_elems fp32 values.
  void apply(const float* x, size_t n, float* y) const;

 private:
  std::string name_ = "identity";
  size_t row_elems_ = 0;
  size_t hidden_ = 0;           // F; 0 for the identity
  std::vector<float> w1_, b1_;  // [H][F], [F]
  std::vector<float> w2_, b2_;  // [F][H], [H]
};

}  // namespace lshmoe::eval
