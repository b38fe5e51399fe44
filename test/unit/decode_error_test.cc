// The device decoders' error word, host side: what a decoder stores comes
// back whole (status and message, never mixed with another), once.
#include "codec/cuda/decode_error.h"

#include <gtest/gtest.h>

#include "lshmoe/lshmoe.h"

namespace lshmoe::cuda {
namespace {

TEST(DecodeErrorWord, AnEmptyWordReportsNothing) {
  uint64_t word = 0;
  const DecodeError e = take_decode_error(&word);
  EXPECT_EQ(e.status, 0);
  EXPECT_EQ(word, 0u);
}

TEST(DecodeErrorWord, AStoredRejectionIsTakenWholeAndOnce) {
  for (const auto& [status, message] :
       {std::pair{int(LSHMOE_ERR_WIRE_BAD_MAGIC), 0},
        std::pair{int(LSHMOE_ERR_WIRE_BAD_SEQUENCE), 63},
        std::pair{int(LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE), 0x7fffffff}, std::pair{-3, 5}}) {
    uint64_t word = pack_decode_error(status, message);
    ASSERT_NE(word, 0u) << "a rejection must not look like none";
    const DecodeError e = take_decode_error(&word);
    EXPECT_EQ(e.status, status);
    EXPECT_EQ(e.message, message);
    EXPECT_EQ(word, 0u) << "taken: the next rejection may be stored";
    EXPECT_EQ(take_decode_error(&word).status, 0) << "reported twice";
  }
}

TEST(DecodeErrorWord, StatusAndMessageDoNotOverlap) {
  const uint64_t a = pack_decode_error(LSHMOE_ERR_WIRE_BAD_MAGIC, 1);
  const uint64_t b = pack_decode_error(LSHMOE_ERR_WIRE_BAD_MAGIC, 2);
  const uint64_t c = pack_decode_error(LSHMOE_ERR_WIRE_BAD_VERSION, 1);
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(unpack_decode_error(b).status, LSHMOE_ERR_WIRE_BAD_MAGIC);
  EXPECT_EQ(unpack_decode_error(c).message, 1);
}

}  // namespace
}  // namespace lshmoe::cuda
