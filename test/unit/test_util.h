// Helpers shared by the unit tests: owning handles for the C API, rows in
// every dtype, the wire's parts read independently of the codec, and error
// bounds in units of a dtype's ulp.
#pragma once

#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "common/dtype.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::test {

struct ConfigDeleter {
  void operator()(lshmoe_config_t* p) const { lshmoe_config_destroy(p); }
};
struct CodecDeleter {
  void operator()(lshmoe_codec_t* p) const { lshmoe_codec_destroy(p); }
};
struct OriginDeleter {
  void operator()(lshmoe_origin_ctx_t* p) const { lshmoe_origin_ctx_destroy(p); }
};
struct ExpertDeleter {
  void operator()(lshmoe_expert_ctx_t* p) const { lshmoe_expert_ctx_destroy(p); }
};
using ConfigPtr = std::unique_ptr<lshmoe_config_t, ConfigDeleter>;
using CodecPtr = std::unique_ptr<lshmoe_codec_t, CodecDeleter>;
using OriginPtr = std::unique_ptr<lshmoe_origin_ctx_t, OriginDeleter>;
using ExpertPtr = std::unique_ptr<lshmoe_expert_ctx_t, ExpertDeleter>;

using Settings = std::vector<std::pair<const char*, const char*>>;

inline ConfigPtr make_config(const Settings& settings = {}) {
  lshmoe_config_t* c = nullptr;
  EXPECT_EQ(lshmoe_config_create(&c), LSHMOE_SUCCESS) << lshmoe_last_error();
  ConfigPtr config(c);
  for (const auto& [name, value] : settings) {
    EXPECT_EQ(lshmoe_config_set(c, name, value), LSHMOE_SUCCESS)
        << name << "=" << value << ": " << lshmoe_last_error();
  }
  return config;
}

// Null (and a recorded test failure) when the codec cannot be created:
// callers ASSERT on the result.
inline CodecPtr make_codec(const Settings& settings = {}) {
  ConfigPtr config = make_config(settings);
  lshmoe_codec_t* codec = nullptr;
  const lshmoe_status_t s = lshmoe_codec_create(config.get(), &codec);
  EXPECT_EQ(s, LSHMOE_SUCCESS) << lshmoe_last_error();
  return CodecPtr(s == LSHMOE_SUCCESS ? codec : nullptr);
}

inline OriginPtr make_origin() {
  lshmoe_origin_ctx_t* p = nullptr;
  EXPECT_EQ(lshmoe_origin_ctx_create(&p), LSHMOE_SUCCESS);
  return OriginPtr(p);
}

inline ExpertPtr make_expert() {
  lshmoe_expert_ctx_t* p = nullptr;
  EXPECT_EQ(lshmoe_expert_ctx_create(&p), LSHMOE_SUCCESS);
  return ExpertPtr(p);
}

inline DType internal(lshmoe_dtype_t d) {
  return DType(uint8_t(d));
}

inline size_t esize(lshmoe_dtype_t d) {
  return lshmoe_dtype_size(d);
}

inline const char* dtype_label(lshmoe_dtype_t d) {
  return d == LSHMOE_FLOAT32 ? "fp32" : d == LSHMOE_FLOAT16 ? "fp16" : "bf16";
}

inline constexpr lshmoe_dtype_t kAllDtypes[] = {LSHMOE_FLOAT32, LSHMOE_BFLOAT16, LSHMOE_FLOAT16};

// Rows stored in `dtype` (rounded to nearest even).
inline std::vector<uint8_t> encode_values(const std::vector<float>& v, lshmoe_dtype_t dtype) {
  std::vector<uint8_t> out(v.size() * esize(dtype));
  for (size_t i = 0; i < v.size(); ++i) store_elem(internal(dtype), out.data(), i, v[i]);
  return out;
}

inline std::vector<float> decode_values(const void* data, size_t n, lshmoe_dtype_t dtype) {
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = load_elem(internal(dtype), data, i);
  return out;
}

inline std::vector<float> gaussian(size_t n, uint64_t seed, float scale = 1.0f) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

// Spacing of `dtype` values at magnitude |v| (the subnormal spacing below
// the smallest normal).
inline double ulp(lshmoe_dtype_t dtype, double v) {
  const int mant = dtype == LSHMOE_FLOAT32 ? 23 : dtype == LSHMOE_FLOAT16 ? 10 : 7;
  const int min_exp = dtype == LSHMOE_FLOAT32 ? -126 : dtype == LSHMOE_FLOAT16 ? -14 : -126;
  if (v == 0.0) return std::ldexp(1.0, min_exp - mant);
  int e = 0;
  std::frexp(std::fabs(v), &e);  // |v| in [2^(e-1), 2^e)
  return std::ldexp(1.0, std::max(e - 1, min_exp) - mant);
}

inline size_t align16(size_t x) {
  return (x + 15) / 16 * 16;
}

// The parts of a compressed message, read from the bytes by the layout of
// docs/design.md "Wire format" rather than by the codec's own helpers.
struct WireView {
  uint32_t magic = 0;
  uint16_t version = 0;
  uint8_t kind = 0, dtype = 0, index_width = 0, flags = 0;
  uint32_t n_rows = 0, row_elems = 0, slots = 0, used_slots = 0;
  uint64_t seq = 0;
  std::vector<uint32_t> assignment;  // dispatch only
  size_t slots_offset = 0;
};

inline WireView parse_wire(const std::vector<uint8_t>& w) {
  WireView v;
  if (w.size() < 64) {
    ADD_FAILURE() << "wire of " << w.size() << " bytes has no header";
    return v;
  }
  memcpy(&v.magic, &w[0], 4);
  memcpy(&v.version, &w[4], 2);
  v.kind = w[6];
  v.dtype = w[7];
  v.index_width = w[8];
  v.flags = w[9];
  memcpy(&v.n_rows, &w[12], 4);
  memcpy(&v.row_elems, &w[16], 4);
  memcpy(&v.slots, &w[20], 4);
  memcpy(&v.used_slots, &w[24], 4);
  memcpy(&v.seq, &w[32], 8);
  v.slots_offset = 64;
  if (v.kind == LSHMOE_DISPATCH) {
    v.assignment.resize(v.n_rows);
    for (uint32_t i = 0; i < v.n_rows; ++i) {
      uint32_t a = 0;
      memcpy(&a, &w[64 + size_t(i) * v.index_width], v.index_width);
      v.assignment[i] = a;
    }
    v.slots_offset += align16(size_t(v.n_rows) * v.index_width);
  }
  return v;
}

// One dispatch -> expert -> combine pair through the C API.
struct PairRun {
  lshmoe_plan_t plan{};
  std::vector<uint8_t> dispatch_wire;
  std::vector<uint8_t> expanded;  // what the expert side received
  std::vector<uint8_t> combine_wire;
  std::vector<uint8_t> output;  // what the origin rebuilt
  OriginPtr origin;
  ExpertPtr expert;
};

// Runs a pair with the identity expert unless `expert_rows` is given.
inline PairRun run_pair(lshmoe_codec_t* codec, const std::vector<uint8_t>& rows, size_t n, size_t h,
                        lshmoe_dtype_t dtype, const std::vector<uint8_t>* expert_rows = nullptr) {
  PairRun r;
  r.origin = make_origin();
  r.expert = make_expert();
  EXPECT_EQ(lshmoe_codec_plan(codec, n, h, dtype, &r.plan), LSHMOE_SUCCESS);
  r.dispatch_wire.resize(r.plan.dispatch_bytes);
  EXPECT_EQ(lshmoe_dispatch_encode(codec, rows.data(), n, h, dtype, 1, r.dispatch_wire.data(),
                                   r.dispatch_wire.size(), r.origin.get()),
            LSHMOE_SUCCESS)
      << lshmoe_last_error();
  r.expanded.resize(rows.size());
  EXPECT_EQ(lshmoe_dispatch_decode(codec, r.dispatch_wire.data(), r.dispatch_wire.size(), n, h,
                                   dtype, 1, r.expanded.data(), r.expert.get()),
            LSHMOE_SUCCESS)
      << lshmoe_last_error();
  r.combine_wire.resize(r.plan.combine_bytes);
  const std::vector<uint8_t>& y = expert_rows ? *expert_rows : r.expanded;
  EXPECT_EQ(lshmoe_combine_encode(codec, r.expert.get(), y.data(), 2, r.combine_wire.data(),
                                  r.combine_wire.size()),
            LSHMOE_SUCCESS)
      << lshmoe_last_error();
  r.output.resize(rows.size());
  EXPECT_EQ(lshmoe_combine_decode(codec, r.origin.get(), r.combine_wire.data(),
                                  r.combine_wire.size(), 2, r.output.data()),
            LSHMOE_SUCCESS)
      << lshmoe_last_error();
  return r;
}

// ||a - b|| / ||b|| over all elements.
inline double relative_error(const std::vector<float>& a, const std::vector<float>& b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    den += double(b[i]) * b[i];
  }
  return std::sqrt(num / den);
}

// Sets (or unsets, for nullopt) an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, std::optional<std::string> value) : name_(name) {
    if (const char* old = getenv(name)) old_ = old;
    if (value) {
      setenv(name, value->c_str(), 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

}  // namespace lshmoe::test
