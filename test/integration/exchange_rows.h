// Rows, jobs and checks shared by the multi-process exchange tests: the
// clustered tokens every rank can regenerate for any pair of ranks, and the
// environment of one rank of a loopback job.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::test_support {

inline constexpr size_t kRowElems = 64;
inline constexpr int kOk = 0, kFailed = 1, kWrong = 2;

// Rows rank s sends rank d: zeros, a message too small to compress, and
// compressible ones, different in each direction.
inline size_t rows_between(int s, int d) {
  static const size_t kRows[] = {0, 10, 64, 100, 150};
  return kRows[size_t(s * 3 + d * 2 + 1) % 5];
}

inline uint32_t mix(uint32_t x) {
  x ^= x >> 16;
  x *= 0x7feb352d;
  x ^= x >> 15;
  x *= 0x846ca68b;
  return x ^ (x >> 16);
}

// Clustered tokens: one of 8 centres per row, plus small noise.
inline float token(int s, int d, size_t i, size_t j) {
  const uint32_t row = mix(uint32_t(s * 1000003 + d * 7919) + uint32_t(i));
  const float centre = std::sin(float(row % 8) * 1.7f + float(j) * 0.37f);
  const float noise = float(mix(row ^ uint32_t(j * 2654435761u)) % 2001) / 1000.0f - 1.0f;
  return centre + 0.03f * noise;
}

struct Buffer {
  DType dtype;
  std::vector<uint8_t> bytes;
  Buffer(DType t, size_t rows) : dtype(t), bytes(rows * kRowElems * dtype_size(t)) {}
  float get(size_t row, size_t j) const {
    return load_elem(dtype, bytes.data(), row * kRowElems + j);
  }
  void set(size_t row, size_t j, float v) {
    store_elem(dtype, bytes.data(), row * kRowElems + j, v);
  }
  size_t rows() const { return bytes.size() / (kRowElems * dtype_size(dtype)); }
};

// The rows this rank sends, grouped by destination.
inline Buffer send_rows_of(int me, int world, DType t, std::vector<size_t>* counts) {
  counts->assign(size_t(world), 0);
  size_t total = 0;
  for (int d = 0; d < world; ++d) total += (*counts)[size_t(d)] = rows_between(me, d);
  Buffer b(t, total);
  size_t r = 0;
  for (int d = 0; d < world; ++d) {
    for (size_t i = 0; i < (*counts)[size_t(d)]; ++i, ++r) {
      for (size_t j = 0; j < kRowElems; ++j) b.set(r, j, token(me, d, i, j));
    }
  }
  return b;
}

// A row-wise expert that is not the identity.
inline Buffer affine_expert(const Buffer& in) {
  Buffer out(in.dtype, in.rows());
  for (size_t r = 0; r < in.rows(); ++r) {
    for (size_t j = 0; j < kRowElems; ++j) out.set(r, j, 2.0f * in.get(r, j) + 1.0f);
  }
  return out;
}

inline void set_job_env(int rank, int world, int port, const char* tls) {
  setenv("MASTER_ADDR", "127.0.0.1", 1);
  setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
  setenv("RANK", std::to_string(rank).c_str(), 1);
  setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
  setenv("UCX_TLS", tls, 1);
  setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 1);
}

struct Options {
  bool enable = true;
  int timeout_ms = 10000;
  const char* compensate = "1";  // LSHMOE_COMPENSATE, alpha
};

inline lshmoe_comm_t* create_comm(const Options& o) {
  lshmoe_config_t* config = nullptr;
  lshmoe_config_create(&config);
  lshmoe_config_set(config, "LSHMOE_ENABLE", o.enable ? "1" : "0");
  lshmoe_config_set(config, "LSHMOE_TIMEOUT_MS", std::to_string(o.timeout_ms).c_str());
  lshmoe_config_set(config, "LSHMOE_VERIFY", "1");
  lshmoe_config_set(config, "LSHMOE_COMPENSATE", o.compensate);
  lshmoe_comm_t* comm = nullptr;
  const lshmoe_status_t s = lshmoe_comm_create(config, &comm);
  lshmoe_config_destroy(config);
  if (s != LSHMOE_SUCCESS) fprintf(stderr, "comm_create: %s\n", lshmoe_last_error());
  return comm;
}

#define CHECK_OK(call)                                                             \
  do {                                                                             \
    if ((call) != LSHMOE_SUCCESS) {                                                \
      fprintf(stderr, "rank %d: %s failed: %s\n", me, #call, lshmoe_last_error()); \
      return kFailed;                                                              \
    }                                                                              \
  } while (0)
#define CHECK(cond, ...)                \
  do {                                  \
    if (!(cond)) {                      \
      fprintf(stderr, "rank %d: ", me); \
      fprintf(stderr, __VA_ARGS__);     \
      fprintf(stderr, "\n");            \
      return kWrong;                    \
    }                                   \
  } while (0)

}  // namespace lshmoe::test_support
