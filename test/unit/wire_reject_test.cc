// Decoders reject every malformed or unexpected message with the error code
// of the check that failed, a message naming it, and no side effect: the
// output buffer (and the guard bytes around it) and the context keep their
// contents.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "codec/wire_format.h"
#include "test_util.h"

namespace lshmoe::test {
namespace {

constexpr size_t kGuard = 64;
constexpr uint64_t kSeq = 41;

std::vector<uint8_t> canary(size_t n) {
  std::vector<uint8_t> b(n);
  for (size_t i = 0; i < n; ++i) b[i] = uint8_t(0xA5 ^ (i * 7));
  return b;
}

wire::Header header_of(const std::vector<uint8_t>& w) {
  wire::Header h;
  memcpy(&h, w.data(), sizeof(h));
  return h;
}

// Rewrites header fields and re-seals the header checksum, so that the
// decoder gets past the checksum to the check under test.
std::vector<uint8_t> with_header(std::vector<uint8_t> w,
                                 const std::function<void(wire::Header&)>& edit) {
  wire::Header h = header_of(w);
  edit(h);
  wire::seal_header(&h);
  memcpy(w.data(), &h, sizeof(h));
  return w;
}

class WireRejection : public ::testing::TestWithParam<lshmoe_dtype_t> {
 protected:
  static constexpr size_t kN = 200, kH = 24;

  void SetUp() override {
    dtype_ = GetParam();
    codec_ = make_codec();
    verify_codec_ = make_codec({{"LSHMOE_VERIFY", "1"}});
    ASSERT_NE(codec_, nullptr);
    ASSERT_NE(verify_codec_, nullptr);
    rows_ = encode_values(gaussian(kN * kH, 12), dtype_);
    ASSERT_NO_FATAL_FAILURE(encode(codec_.get(), &dispatch_, &combine_, origin_));
    ASSERT_NO_FATAL_FAILURE(
        encode(verify_codec_.get(), &verify_dispatch_, &verify_combine_, verify_origin_));
    ASSERT_GT(parse_wire(dispatch_).used_slots, 2u);

    // The expert context holds an earlier message of another shape; a
    // rejected decode must leave it able to combine that message.
    resident_rows_ = encode_values(gaussian(90 * kH, 13), dtype_);
    lshmoe_plan_t p{};
    ASSERT_EQ(lshmoe_codec_plan(codec_.get(), 90, kH, dtype_, &p), LSHMOE_SUCCESS);
    ASSERT_EQ(p.compressed, 1);
    OriginPtr o = make_origin();
    std::vector<uint8_t> w(p.dispatch_bytes);
    ASSERT_EQ(lshmoe_dispatch_encode(codec_.get(), resident_rows_.data(), 90, kH, dtype_, 1,
                                     w.data(), w.size(), o.get()),
              LSHMOE_SUCCESS);
    expert_ = make_expert();
    resident_expanded_.resize(resident_rows_.size());
    ASSERT_EQ(lshmoe_dispatch_decode(codec_.get(), w.data(), w.size(), 90, kH, dtype_, 1,
                                     resident_expanded_.data(), expert_.get()),
              LSHMOE_SUCCESS);
    resident_combine_ = combine_resident();
    ASSERT_FALSE(resident_combine_.empty());
  }

  void encode(lshmoe_codec_t* codec, std::vector<uint8_t>* dispatch, std::vector<uint8_t>* combine,
              OriginPtr& origin) {
    lshmoe_plan_t p{};
    ASSERT_EQ(lshmoe_codec_plan(codec, kN, kH, dtype_, &p), LSHMOE_SUCCESS);
    ASSERT_EQ(p.compressed, 1);
    origin = make_origin();
    dispatch->resize(p.dispatch_bytes);
    ASSERT_EQ(lshmoe_dispatch_encode(codec, rows_.data(), kN, kH, dtype_, kSeq, dispatch->data(),
                                     dispatch->size(), origin.get()),
              LSHMOE_SUCCESS);
    ExpertPtr e = make_expert();
    std::vector<uint8_t> x_hat(rows_.size());
    ASSERT_EQ(lshmoe_dispatch_decode(codec, dispatch->data(), dispatch->size(), kN, kH, dtype_,
                                     kSeq, x_hat.data(), e.get()),
              LSHMOE_SUCCESS);
    combine->resize(p.combine_bytes);
    ASSERT_EQ(
        lshmoe_combine_encode(codec, e.get(), x_hat.data(), kSeq, combine->data(), combine->size()),
        LSHMOE_SUCCESS);
  }

  std::vector<uint8_t> combine_resident() {
    lshmoe_plan_t p{};
    EXPECT_EQ(lshmoe_codec_plan(codec_.get(), 90, kH, dtype_, &p), LSHMOE_SUCCESS);
    std::vector<uint8_t> w(p.combine_bytes);
    if (lshmoe_combine_encode(codec_.get(), expert_.get(), resident_expanded_.data(), 5, w.data(),
                              w.size()) != LSHMOE_SUCCESS) {
      ADD_FAILURE() << "the expert context no longer combines its message: " << lshmoe_last_error();
      return {};
    }
    return w;
  }

  // Expects dispatch decode of `w` (as `size` bytes) to fail with `want`,
  // a message containing `words`, and no side effect.
  void expect_dispatch_rejected(lshmoe_codec_t* codec, const std::vector<uint8_t>& w, size_t size,
                                lshmoe_status_t want, const char* words, size_t n = kN,
                                lshmoe_dtype_t dtype = lshmoe_dtype_t(0),
                                uint64_t expected_seq = kSeq) {
    if (dtype == 0) dtype = dtype_;
    const size_t out_bytes = n * kH * esize(dtype);
    std::vector<uint8_t> out = canary(out_bytes + 2 * kGuard);
    const std::vector<uint8_t> before = out;
    const lshmoe_status_t s = lshmoe_dispatch_decode(
        codec, w.data(), size, n, kH, dtype, expected_seq, out.data() + kGuard, expert_.get());
    EXPECT_EQ(s, want) << lshmoe_strerror(s) << ": " << lshmoe_last_error();
    const std::string msg = lshmoe_last_error();
    EXPECT_NE(msg.find(words), std::string::npos) << "message: " << msg;
    EXPECT_NE(msg.find("dispatch decode"), std::string::npos) << "message: " << msg;
    EXPECT_EQ(out, before) << "the output buffer or its guards were written";
    EXPECT_EQ(combine_resident(), resident_combine_) << "the expert context changed";
    seen_.insert(s);
  }

  void expect_combine_rejected(lshmoe_codec_t* codec, const lshmoe_origin_ctx_t* origin,
                               const std::vector<uint8_t>& w, size_t size, lshmoe_status_t want,
                               const char* words, uint64_t expected_seq = kSeq) {
    std::vector<uint8_t> out = canary(rows_.size() + 2 * kGuard);
    const std::vector<uint8_t> before = out;
    const lshmoe_status_t s =
        lshmoe_combine_decode(codec, origin, w.data(), size, expected_seq, out.data() + kGuard);
    EXPECT_EQ(s, want) << lshmoe_strerror(s) << ": " << lshmoe_last_error();
    const std::string msg = lshmoe_last_error();
    EXPECT_NE(msg.find(words), std::string::npos) << "message: " << msg;
    EXPECT_EQ(out, before) << "the output buffer or its guards were written";
  }

  // The origin context still decodes its own combine after a rejection.
  void expect_origin_intact(lshmoe_codec_t* codec, const lshmoe_origin_ctx_t* origin,
                            const std::vector<uint8_t>& combine) {
    std::vector<uint8_t> a(rows_.size()), b(rows_.size());
    ASSERT_EQ(lshmoe_combine_decode(codec, origin, combine.data(), combine.size(), kSeq, a.data()),
              LSHMOE_SUCCESS);
    ASSERT_EQ(lshmoe_combine_decode(codec, origin, combine.data(), combine.size(), kSeq, b.data()),
              LSHMOE_SUCCESS);
    EXPECT_EQ(a, b);
    // Compensation brings the identity expert's output back near the rows.
    const std::vector<float> x = decode_values(rows_.data(), kN * kH, dtype_);
    EXPECT_LT(relative_error(decode_values(a.data(), kN * kH, dtype_), x), 0.02);
  }

  lshmoe_dtype_t dtype_{};
  CodecPtr codec_, verify_codec_;
  std::vector<uint8_t> rows_, dispatch_, combine_, verify_dispatch_, verify_combine_;
  OriginPtr origin_, verify_origin_;
  ExpertPtr expert_;
  std::vector<uint8_t> resident_rows_, resident_expanded_, resident_combine_;
  std::set<lshmoe_status_t> seen_;
};

TEST_P(WireRejection, DispatchDecodeChecksEverything) {
  lshmoe_codec_t* c = codec_.get();
  const size_t size = dispatch_.size();
  const wire::Header h0 = header_of(dispatch_);

  // Truncated: no full header, or fewer bytes than the sizes need.
  expect_dispatch_rejected(c, dispatch_, 0, LSHMOE_ERR_WIRE_TRUNCATED, "truncated");
  expect_dispatch_rejected(c, dispatch_, 63, LSHMOE_ERR_WIRE_TRUNCATED, "truncated");
  expect_dispatch_rejected(c, dispatch_, size - 1, LSHMOE_ERR_WIRE_TRUNCATED, "truncated");
  {
    std::vector<uint8_t> longer = dispatch_;
    longer.push_back(0);
    expect_dispatch_rejected(c, longer, size + 1, LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ");
  }

  {
    std::vector<uint8_t> w = dispatch_;
    w[0] ^= 1;
    expect_dispatch_rejected(c, w, size, LSHMOE_ERR_WIRE_BAD_MAGIC, "magic");
  }
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.version = 2; }), size,
                           LSHMOE_ERR_WIRE_BAD_VERSION, "version");
  {
    // Any header byte changed without re-sealing.
    for (size_t byte : {size_t(10), size_t(28), size_t(33), size_t(50), size_t(61)}) {
      std::vector<uint8_t> w = dispatch_;
      w[byte] ^= 0x10;
      expect_dispatch_rejected(c, w, size, LSHMOE_ERR_WIRE_BAD_CHECKSUM, "checksum");
    }
  }

  // Kind: a combine message where a dispatch is expected, or no kind at all.
  expect_dispatch_rejected(c, combine_, combine_.size(), LSHMOE_ERR_WIRE_BAD_KIND, "kind");
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.kind = 7; }), size,
                           LSHMOE_ERR_WIRE_BAD_KIND, "kind");

  // Dtype: unknown, another one in the header, or another one expected.
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.dtype = 9; }), size,
                           LSHMOE_ERR_WIRE_BAD_DTYPE, "dtype");
  const uint8_t other = dtype_ == LSHMOE_FLOAT16 ? LSHMOE_BFLOAT16 : LSHMOE_FLOAT16;
  expect_dispatch_rejected(c, with_header(dispatch_, [&](wire::Header& h) { h.dtype = other; }),
                           size, LSHMOE_ERR_WIRE_BAD_DTYPE, "dtype");
  if (dtype_ != LSHMOE_FLOAT32) {
    // Same byte sizes, another expected dtype.
    expect_dispatch_rejected(c, dispatch_, size, LSHMOE_ERR_WIRE_BAD_DTYPE, "dtype", kN,
                             lshmoe_dtype_t(other));
  }

  // Sizes in the header differ from what the receiver expects.
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.n_rows += 1; }), size,
                           LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ");
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.row_elems -= 1; }),
                           size, LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ");
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.slots += 1; }), size,
                           LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ");
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.index_width = 4; }),
                           size, LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ");
  // The receiver expects more rows than were sent (its plan has other sizes).
  {
    lshmoe_plan_t p{};
    ASSERT_EQ(lshmoe_codec_plan(c, kN + 10, kH, dtype_, &p), LSHMOE_SUCCESS);
    std::vector<uint8_t> w = dispatch_;
    w.resize(p.dispatch_bytes, 0);
    expect_dispatch_rejected(c, w, w.size(), LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ",
                             kN + 10);
  }

  // used_slots beyond K, or zero for a non-empty message.
  expect_dispatch_rejected(
      c, with_header(dispatch_, [](wire::Header& h) { h.used_slots = h.slots + 1; }), size,
      LSHMOE_ERR_WIRE_BAD_SLOTS, "slot");
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.used_slots = 0; }),
                           size, LSHMOE_ERR_WIRE_BAD_SLOTS, "slot");

  // An assignment index at or past used_slots (the payload has no checksum
  // here, so the index check is what catches it).
  for (size_t row : {size_t(0), kN / 2, kN - 1}) {
    std::vector<uint8_t> w = dispatch_;
    const uint16_t bad = uint16_t(h0.used_slots);
    memcpy(&w[64 + 2 * row], &bad, 2);
    expect_dispatch_rejected(c, w, size, LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE, "out of range");
  }
  {
    // Every index valid for the sent used_slots, but the header claims fewer.
    const uint32_t max_used = parse_wire(dispatch_).used_slots;
    expect_dispatch_rejected(
        c, with_header(dispatch_, [&](wire::Header& h) { h.used_slots = max_used - 1; }), size,
        LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE, "out of range");
  }

  {
    // Every index in range, but a slot below used_slots that no row uses: an
    // encoder never sends one (its mean would be 0/0).
    const uint32_t max_used = parse_wire(dispatch_).used_slots;
    if (max_used < h0.slots) {
      expect_dispatch_rejected(
          c, with_header(dispatch_, [&](wire::Header& h) { h.used_slots = max_used + 1; }), size,
          LSHMOE_ERR_WIRE_BAD_SLOTS, "has no row");
    }
  }

  // Flags and reserved fields this decoder does not know: a newer format.
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.flags |= 0x80; }),
                           size, LSHMOE_ERR_WIRE_BAD_VERSION, "version");
  expect_dispatch_rejected(c, with_header(dispatch_, [](wire::Header& h) { h.reserved2[3] = 1; }),
                           size, LSHMOE_ERR_WIRE_BAD_VERSION, "version");

  expect_dispatch_rejected(c, dispatch_, size, LSHMOE_ERR_WIRE_BAD_SEQUENCE, "sequence", kN, dtype_,
                           kSeq + 1);

  // Payload checksums (LSHMOE_VERIFY=1): a flipped slot byte or index byte,
  // and a sender that wrote no checksum.
  lshmoe_codec_t* v = verify_codec_.get();
  {
    std::vector<uint8_t> w = verify_dispatch_;
    w[w.size() - 17] ^= 0x01;
    expect_dispatch_rejected(v, w, w.size(), LSHMOE_ERR_WIRE_BAD_CHECKSUM, "payload checksum");
    w = verify_dispatch_;
    w[64] ^= 0x80;
    expect_dispatch_rejected(v, w, w.size(), LSHMOE_ERR_WIRE_BAD_CHECKSUM, "payload checksum");
  }
  expect_dispatch_rejected(v, dispatch_, size, LSHMOE_ERR_WIRE_BAD_CHECKSUM, "checksum");

  // Each check has its own code.
  EXPECT_EQ(seen_,
            (std::set<lshmoe_status_t>{
                LSHMOE_ERR_WIRE_TRUNCATED, LSHMOE_ERR_WIRE_BAD_MAGIC, LSHMOE_ERR_WIRE_BAD_VERSION,
                LSHMOE_ERR_WIRE_BAD_KIND, LSHMOE_ERR_WIRE_BAD_DTYPE, LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                LSHMOE_ERR_WIRE_BAD_SLOTS, LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE,
                LSHMOE_ERR_WIRE_BAD_CHECKSUM, LSHMOE_ERR_WIRE_BAD_SEQUENCE}));

  // The untouched messages still decode (the checks reject only what is wrong).
  std::vector<uint8_t> out(rows_.size());
  ExpertPtr e = make_expert();
  EXPECT_EQ(
      lshmoe_dispatch_decode(c, dispatch_.data(), size, kN, kH, dtype_, kSeq, out.data(), e.get()),
      LSHMOE_SUCCESS);
  EXPECT_EQ(lshmoe_dispatch_decode(c, dispatch_.data(), size, kN, kH, dtype_, LSHMOE_SEQ_ANY,
                                   out.data(), e.get()),
            LSHMOE_SUCCESS);
  EXPECT_EQ(lshmoe_dispatch_decode(v, verify_dispatch_.data(), verify_dispatch_.size(), kN, kH,
                                   dtype_, kSeq, out.data(), e.get()),
            LSHMOE_SUCCESS);
  EXPECT_STREQ(lshmoe_last_error(), "");
}

TEST_P(WireRejection, CombineDecodeChecksEverything) {
  lshmoe_codec_t* c = codec_.get();
  const lshmoe_origin_ctx_t* o = origin_.get();
  const size_t size = combine_.size();

  expect_combine_rejected(c, o, combine_, 10, LSHMOE_ERR_WIRE_TRUNCATED, "truncated");
  expect_combine_rejected(c, o, combine_, size - 1, LSHMOE_ERR_WIRE_TRUNCATED, "truncated");
  {
    std::vector<uint8_t> w = combine_;
    w[3] ^= 0xff;
    expect_combine_rejected(c, o, w, size, LSHMOE_ERR_WIRE_BAD_MAGIC, "magic");
    w = combine_;
    w[40] ^= 1;  // the payload checksum field, covered by the header checksum
    expect_combine_rejected(c, o, w, size, LSHMOE_ERR_WIRE_BAD_CHECKSUM, "checksum");
  }
  expect_combine_rejected(c, o, with_header(combine_, [](wire::Header& h) { h.version = 0; }), size,
                          LSHMOE_ERR_WIRE_BAD_VERSION, "version");
  expect_combine_rejected(c, o, dispatch_, dispatch_.size(), LSHMOE_ERR_WIRE_BAD_KIND, "kind");
  expect_combine_rejected(c, o, with_header(combine_, [](wire::Header& h) { h.dtype = 0; }), size,
                          LSHMOE_ERR_WIRE_BAD_DTYPE, "dtype");
  expect_combine_rejected(c, o, with_header(combine_, [](wire::Header& h) { h.n_rows -= 1; }), size,
                          LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ");
  expect_combine_rejected(c, o, with_header(combine_, [](wire::Header& h) { h.slots -= 1; }), size,
                          LSHMOE_ERR_WIRE_SIZE_MISMATCH, "sizes differ");
  // used_slots: beyond K, or not the dispatch's count.
  expect_combine_rejected(
      c, o, with_header(combine_, [](wire::Header& h) { h.used_slots = h.slots + 1; }), size,
      LSHMOE_ERR_WIRE_BAD_SLOTS, "slot");
  expect_combine_rejected(c, o, with_header(combine_, [](wire::Header& h) { h.used_slots -= 1; }),
                          size, LSHMOE_ERR_WIRE_BAD_SLOTS, "slot");
  expect_combine_rejected(c, o, combine_, size, LSHMOE_ERR_WIRE_BAD_SEQUENCE, "sequence", kSeq - 1);
  {
    std::vector<uint8_t> w = verify_combine_;
    w[100] ^= 4;
    expect_combine_rejected(verify_codec_.get(), verify_origin_.get(), w, w.size(),
                            LSHMOE_ERR_WIRE_BAD_CHECKSUM, "payload checksum");
  }
  // A context that holds no dispatch.
  OriginPtr empty = make_origin();
  expect_combine_rejected(c, empty.get(), combine_, size, LSHMOE_ERR_CONTEXT_MISMATCH, "context");
  expect_origin_intact(c, o, combine_);
  expect_origin_intact(verify_codec_.get(), verify_origin_.get(), verify_combine_);
}

TEST_P(WireRejection, NullArgumentsAndSmallBuffers) {
  std::vector<uint8_t> out(rows_.size());
  EXPECT_EQ(lshmoe_dispatch_decode(nullptr, dispatch_.data(), dispatch_.size(), kN, kH, dtype_,
                                   kSeq, out.data(), expert_.get()),
            LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(lshmoe_dispatch_decode(codec_.get(), dispatch_.data(), dispatch_.size(), kN, kH, dtype_,
                                   kSeq, out.data(), nullptr),
            LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(lshmoe_dispatch_decode(codec_.get(), nullptr, dispatch_.size(), kN, kH, dtype_, kSeq,
                                   out.data(), expert_.get()),
            LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(lshmoe_dispatch_decode(codec_.get(), dispatch_.data(), dispatch_.size(), kN, kH,
                                   lshmoe_dtype_t(0), kSeq, out.data(), expert_.get()),
            LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(lshmoe_last_error()).find("dtype"), std::string::npos);
  EXPECT_EQ(lshmoe_combine_decode(codec_.get(), origin_.get(), combine_.data(), combine_.size(),
                                  kSeq, nullptr),
            LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(combine_resident(), resident_combine_);

  // Encoders refuse a wire buffer below the plan's size.
  OriginPtr o = make_origin();
  std::vector<uint8_t> w(dispatch_.size() - 1);
  EXPECT_EQ(lshmoe_dispatch_encode(codec_.get(), rows_.data(), kN, kH, dtype_, 0, w.data(),
                                   w.size(), o.get()),
            LSHMOE_ERR_BUFFER_TOO_SMALL);
  EXPECT_NE(std::string(lshmoe_last_error()).find("needed"), std::string::npos);
  w.resize(resident_combine_.size() - 1);
  EXPECT_EQ(lshmoe_combine_encode(codec_.get(), expert_.get(), resident_expanded_.data(), 0,
                                  w.data(), w.size()),
            LSHMOE_ERR_BUFFER_TOO_SMALL);
  ExpertPtr empty = make_expert();
  w.resize(combine_.size());
  EXPECT_EQ(lshmoe_combine_encode(codec_.get(), empty.get(), rows_.data(), 0, w.data(), w.size()),
            LSHMOE_ERR_CONTEXT_MISMATCH);
}

// The API takes `const void*` wires: a message at an odd address decodes
// like an aligned one.
TEST_P(WireRejection, DecodesAMisalignedWire) {
  std::vector<uint8_t> shifted(dispatch_.size() + 1);
  memcpy(shifted.data() + 1, dispatch_.data(), dispatch_.size());
  std::vector<uint8_t> a(rows_.size()), b(rows_.size());
  ExpertPtr e = make_expert();
  ASSERT_EQ(lshmoe_dispatch_decode(codec_.get(), dispatch_.data(), dispatch_.size(), kN, kH, dtype_,
                                   kSeq, a.data(), e.get()),
            LSHMOE_SUCCESS);
  ASSERT_EQ(lshmoe_dispatch_decode(codec_.get(), shifted.data() + 1, dispatch_.size(), kN, kH,
                                   dtype_, kSeq, b.data(), e.get()),
            LSHMOE_SUCCESS);
  EXPECT_EQ(a, b);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, WireRejection, ::testing::ValuesIn(kAllDtypes),
                         [](const auto& p) { return std::string(dtype_label(p.param)); });

}  // namespace
}  // namespace lshmoe::test
