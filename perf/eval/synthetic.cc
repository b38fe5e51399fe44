#include "eval/synthetic.h"

#include <random>

namespace lshmoe::eval {

std::vector<float> clustered_tokens(const SyntheticSpec& spec) {
  std::mt19937_64 rng(spec.seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const size_t h = spec.row_elems;
  std::vector<float> mu(h), centres(spec.clusters * h);
  for (float& v : mu) v = spec.offset * normal(rng);
  for (size_t k = 0; k < spec.clusters; ++k)
    for (size_t j = 0; j < h; ++j) centres[k * h + j] = mu[j] + normal(rng);
  std::vector<double> weights(spec.clusters);
  for (size_t k = 0; k < spec.clusters; ++k) weights[k] = 1.0 / double(k + 1);
  std::discrete_distribution<size_t> pick(weights.begin(), weights.end());
  std::vector<float> x(spec.rows * h);
  for (size_t i = 0; i < spec.rows; ++i) {
    const size_t k = pick(rng);
    for (size_t j = 0; j < h; ++j) x[i * h + j] = centres[k * h + j] + spec.spread * normal(rng);
  }
  return x;
}

}  // namespace lshmoe::eval
