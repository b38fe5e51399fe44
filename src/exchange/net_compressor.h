// LSHMOE_NET_COMPRESS: lossy compression of the large row-aligned messages a
// net carries (the dispatch half of the codec; nothing comes back to
// compensate). The net knows bytes, not rows: the rows are LSHMOE_HIDDEN
// elements of the one dtype LSHMOE_DTYPES names. A message is compressed
// when its size is a whole number of such rows and the codec's plan says
// so; the receiver learns the row count from the wire header.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "common/config.h"

namespace lshmoe::exchange {

class NetCompressor {
 public:
  // Fails naming the variables unless LSHMOE_HIDDEN > 0 and LSHMOE_DTYPES
  // names exactly one dtype.
  static Status create(const Config& config, std::unique_ptr<NetCompressor>* out);

  // Whether a message of `bytes` travels compressed.
  bool wants(size_t bytes) const;
  // Encodes the rows of a message `wants` accepted into `wire` (resized).
  Status encode(const void* data, size_t bytes, std::vector<uint8_t>* wire);
  // Decodes a received message into `out` (at most `capacity` bytes);
  // *bytes is the sender's logical size.
  Status decode(const void* wire, size_t wire_bytes, void* out, size_t capacity, size_t* bytes);

 private:
  NetCompressor() = default;
  std::unique_ptr<cpu::CpuCodec> codec_;
  size_t row_elems_ = 0;
  DType dtype_ = DType::kBFloat16;
  size_t row_bytes_ = 0;
  cpu::OriginContext origin_;  // scratch: a net has no combine
  cpu::ExpertContext expert_;
};

}  // namespace lshmoe::exchange
