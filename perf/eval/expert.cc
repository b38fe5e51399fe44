#include "eval/expert.h"

#include <cmath>
#include <cstring>
#include <random>

#include "eval/npy.h"

namespace lshmoe::eval {
namespace {

Status load_vector(const std::string& path, size_t expect_elems, const char* what,
                   std::vector<float>* out) {
  Array a;
  LSHMOE_RETURN_IF_ERROR(read_npy(path, &a));
  if (a.elems() != expect_elems) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "%s (%s): %zu elements, expected %zu", what,
                path.c_str(), a.elems(), expect_elems);
  }
  *out = to_float(a);
  return LSHMOE_SUCCESS;
}

// out[n][cols] = x[n][inner] * w[inner][cols] + bias[cols]
void affine(const float* x, size_t n, size_t inner, const float* w, const float* bias, size_t cols,
            float* out) {
  for (size_t i = 0; i < n; ++i) {
    float* o = out + i * cols;
    memcpy(o, bias, cols * sizeof(float));
    for (size_t k = 0; k < inner; ++k) {
      const float xv = x[i * inner + k];
      const float* wr = w + k * cols;
      for (size_t j = 0; j < cols; ++j) o[j] += xv * wr[j];
    }
  }
}

}  // namespace

Status Expert::from_spec(const std::string& spec, size_t row_elems, Expert* out) {
  Expert e;
  e.row_elems_ = row_elems;
  if (spec == "identity") {
    *out = std::move(e);
    return LSHMOE_SUCCESS;
  }
  if (spec.rfind("ffn:", 0) != 0) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "--expert %s: expected identity, ffn:SEED, or weights (--w1 --b1 --w2 --b2)",
                spec.c_str());
  }
  char* end = nullptr;
  const unsigned long long seed = strtoull(spec.c_str() + 4, &end, 10);
  if (end == spec.c_str() + 4 || *end != '\0') {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "--expert %s: SEED must be an integer", spec.c_str());
  }
  e.name_ = spec;
  e.hidden_ = 4 * row_elems;
  std::mt19937_64 rng(seed);
  // Variance-preserving init, so outputs are on the scale of the inputs.
  std::normal_distribution<float> n1(0.0f, 1.0f / std::sqrt(float(row_elems)));
  std::normal_distribution<float> n2(0.0f, 1.0f / std::sqrt(float(e.hidden_)));
  e.w1_.resize(row_elems * e.hidden_);
  e.w2_.resize(e.hidden_ * row_elems);
  for (float& v : e.w1_) v = n1(rng);
  for (float& v : e.w2_) v = n2(rng);
  e.b1_.assign(e.hidden_, 0.0f);
  e.b2_.assign(row_elems, 0.0f);
  *out = std::move(e);
  return LSHMOE_SUCCESS;
}

Status Expert::from_weights(const std::string& w1, const std::string& b1, const std::string& w2,
                            const std::string& b2, size_t row_elems, Expert* out) {
  Array a;
  LSHMOE_RETURN_IF_ERROR(read_npy(w1, &a));
  if (a.shape.size() != 2 || a.shape[0] != row_elems) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "--w1 %s: expected shape [%zu, F]", w1.c_str(),
                row_elems);
  }
  Expert e;
  e.name_ = "weights";
  e.row_elems_ = row_elems;
  e.hidden_ = a.shape[1];
  e.w1_ = to_float(a);
  LSHMOE_RETURN_IF_ERROR(load_vector(b1, e.hidden_, "--b1", &e.b1_));
  LSHMOE_RETURN_IF_ERROR(load_vector(w2, e.hidden_ * row_elems, "--w2", &e.w2_));
  LSHMOE_RETURN_IF_ERROR(load_vector(b2, row_elems, "--b2", &e.b2_));
  *out = std::move(e);
  return LSHMOE_SUCCESS;
}

void Expert::apply(const float* x, size_t n, float* y) const {
  if (identity()) {
    memcpy(y, x, n * row_elems_ * sizeof(float));
    return;
  }
  std::vector<float> h(n * hidden_);
  affine(x, n, row_elems_, w1_.data(), b1_.data(), hidden_, h.data());
  for (float& v : h) v = 0.5f * v * (1.0f + std::erf(v * 0.70710678118654752f));  // GELU (erf)
  affine(h.data(), n, hidden_, w2_.data(), b2_.data(), row_elems_, y);
}

}  // namespace lshmoe::eval
