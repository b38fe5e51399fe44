// The decode fuzzer's input format, shared with the seed-corpus writer:
//
//   byte 0   n_rows - 1     (n_rows in 1..64)
//   byte 1   row_elems - 1  (row_elems in 1..64)
//   byte 2   dtype: 1 + byte % 3 (fp32, fp16, bf16)
//   byte 3   bit 0: 0 dispatch decode, 1 combine decode
//            bit 1: LSHMOE_VERIFY=1 codec
//            bit 2: expect sequence number kSeq (else LSHMOE_SEQ_ANY)
//            bit 3: re-seal the checksums (payload checksum when the header
//                   flags one, then the header's) after mutation, so that
//                   mutated header fields reach the checks behind them
//   rest     the message given to the decoder
//
// Codecs compress from one row on (LSHMOE_MIN_ROWS=1) so that small
// messages are in wire format. A combine decode needs the origin's context:
// it comes from encoding deterministic_rows() of the expected shape, which
// the seed writer also used to make its combine messages.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "common/dtype.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::fuzz {

inline constexpr size_t kPrefixBytes = 4;
inline constexpr uint64_t kSeq = 7;
inline constexpr size_t kMaxRows = 64, kMaxElems = 64;

struct Shape {
  size_t n_rows;
  size_t row_elems;
  lshmoe_dtype_t dtype;
  bool combine;
  bool verify;
  bool check_seq;
  bool reseal;
};

inline Shape parse_prefix(const uint8_t* p) {
  Shape s;
  s.n_rows = size_t(p[0] % kMaxRows) + 1;
  s.row_elems = size_t(p[1] % kMaxElems) + 1;
  s.dtype = lshmoe_dtype_t(1 + p[2] % 3);
  s.combine = p[3] & 1;
  s.verify = p[3] & 2;
  s.check_seq = p[3] & 4;
  s.reseal = p[3] & 8;
  return s;
}

inline void write_prefix(const Shape& s, uint8_t* p) {
  p[0] = uint8_t(s.n_rows - 1);
  p[1] = uint8_t(s.row_elems - 1);
  p[2] = uint8_t(int(s.dtype) - 1);
  p[3] = uint8_t((s.combine ? 1 : 0) | (s.verify ? 2 : 0) | (s.check_seq ? 4 : 0) |
                 (s.reseal ? 8 : 0));
}

// Rows in a few clusters, so that encoded messages use several slots.
inline std::vector<uint8_t> deterministic_rows(size_t n, size_t h, lshmoe_dtype_t dtype) {
  std::vector<uint8_t> rows(n * h * lshmoe_dtype_size(dtype));
  for (size_t i = 0; i < n; ++i) {
    for (size_t k = 0; k < h; ++k) {
      const float v = float(std::sin(double((i % 5) * 31 + k))) + 0.01f * float((i * 13 + k) % 7);
      store_elem(DType(dtype), rows.data(), i * h + k, v);
    }
  }
  return rows;
}

// Null on failure.
inline lshmoe_codec_t* make_codec(bool verify) {
  lshmoe_config_t* config = nullptr;
  if (lshmoe_config_create(&config) != LSHMOE_SUCCESS) return nullptr;
  lshmoe_codec_t* codec = nullptr;
  if (lshmoe_config_set(config, "LSHMOE_MIN_ROWS", "1") != LSHMOE_SUCCESS ||
      lshmoe_config_set(config, "LSHMOE_CPU_THREADS", "1") != LSHMOE_SUCCESS ||
      lshmoe_config_set(config, "LSHMOE_VERIFY", verify ? "1" : "0") != LSHMOE_SUCCESS ||
      lshmoe_codec_create(config, &codec) != LSHMOE_SUCCESS) {
    codec = nullptr;
  }
  lshmoe_config_destroy(config);
  return codec;
}

}  // namespace lshmoe::fuzz
