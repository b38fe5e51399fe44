// Every user of a UCX worker in this library, and the layout of its tags.
// Tags are 64 bits, matched exactly: the channel in the top byte, then a
// 24-bit field and a 32-bit field whose meaning the channel gives. Two users
// sharing a worker can never match each other's messages, so a new user
// takes a new channel here and nowhere else.
#pragma once

#include <cstdint>

namespace lshmoe::transport {

enum class UcxChannel : uint8_t {
  kExchange = 1,   // src/exchange/engine: (sender rank, operation number)
  kNet = 2,        // the NCCL net plugin's point-to-point: (comm id, NCCL tag)
  kNetMarked = 3,  // the same, for a message the sender marked (see ucx_net.h)
  kHostNccl = 4,   // test/support/host_nccl: (communicator id, sender rank)
};

// Bits of the two fields below the channel.
inline constexpr int kUcxTagHighBits = 24;
inline constexpr uint32_t kUcxTagHighMask = (uint32_t(1) << kUcxTagHighBits) - 1;

constexpr uint64_t ucx_tag(UcxChannel channel, uint32_t high, uint32_t low) {
  return (uint64_t(channel) << 56) | (uint64_t(high & kUcxTagHighMask) << 32) | low;
}

constexpr UcxChannel ucx_tag_channel(uint64_t tag) {
  return UcxChannel(uint8_t(tag >> 56));
}

}  // namespace lshmoe::transport
