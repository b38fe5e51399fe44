// libFuzzer target for the decoders (input format: fuzz_input.h): dispatch,
// combine, the regrouped combine (the shim's, on the codec itself) and the
// two decoders of the backward. Beyond memory errors (ASan) and undefined
// behaviour (UBSan), it checks the API's promise that a rejected message writes nothing, and that a
// successful dispatch decode leaves a context the expert side can combine.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "codec/wire_format.h"
#include "fuzz_input.h"
#include "lshmoe/lshmoe.h"

namespace {

using lshmoe::fuzz::Shape;

constexpr uint8_t kCanary = 0xC3;

void require(bool ok, const char* what) {
  if (!ok) {
    fprintf(stderr, "decode_fuzz: %s (%s)\n", what, lshmoe_last_error());
    abort();
  }
}

bool untouched(const std::vector<uint8_t>& out) {
  for (uint8_t b : out)
    if (b != kCanary) return false;
  return true;
}

void fuzz_dispatch(lshmoe_codec_t* codec, const Shape& s, const uint8_t* wire, size_t size) {
  lshmoe_expert_ctx_t* ctx = nullptr;
  require(lshmoe_expert_ctx_create(&ctx) == LSHMOE_SUCCESS, "expert_ctx_create");
  std::vector<uint8_t> out(s.n_rows * s.row_elems * lshmoe_dtype_size(s.dtype), kCanary);
  const uint64_t seq = s.check_seq ? lshmoe::fuzz::kSeq : LSHMOE_SEQ_ANY;
  const lshmoe_status_t st = lshmoe_dispatch_decode(codec, wire, size, s.n_rows, s.row_elems,
                                                    s.dtype, seq, out.data(), ctx);
  if (st != LSHMOE_SUCCESS) {
    require(untouched(out), "a rejected dispatch wrote its output");
    require(lshmoe_last_error()[0] != '\0', "a rejection without a message");
  } else {
    // The expert side combines what it received (identity expert).
    lshmoe_plan_t plan;
    require(lshmoe_codec_plan(codec, s.n_rows, s.row_elems, s.dtype, &plan) == LSHMOE_SUCCESS,
            "plan");
    std::vector<uint8_t> wire2(plan.combine_bytes);
    require(lshmoe_combine_encode(codec, ctx, out.data(), 1, wire2.data(), wire2.size()) ==
                LSHMOE_SUCCESS,
            "combine_encode after a successful dispatch decode");
  }
  lshmoe_expert_ctx_destroy(ctx);
}

void fuzz_combine(lshmoe_codec_t* codec, const Shape& s, const uint8_t* wire, size_t size) {
  const std::vector<uint8_t> rows =
      lshmoe::fuzz::deterministic_rows(s.n_rows, s.row_elems, s.dtype);
  lshmoe_plan_t plan;
  require(lshmoe_codec_plan(codec, s.n_rows, s.row_elems, s.dtype, &plan) == LSHMOE_SUCCESS,
          "plan");
  lshmoe_origin_ctx_t* ctx = nullptr;
  require(lshmoe_origin_ctx_create(&ctx) == LSHMOE_SUCCESS, "origin_ctx_create");
  std::vector<uint8_t> dispatch(plan.dispatch_bytes);
  require(
      lshmoe_dispatch_encode(codec, rows.data(), s.n_rows, s.row_elems, s.dtype, lshmoe::fuzz::kSeq,
                             dispatch.data(), dispatch.size(), ctx) == LSHMOE_SUCCESS,
      "dispatch_encode");
  std::vector<uint8_t> out(rows.size(), kCanary);
  const uint64_t seq = s.check_seq ? lshmoe::fuzz::kSeq : LSHMOE_SEQ_ANY;
  const lshmoe_status_t st = lshmoe_combine_decode(codec, ctx, wire, size, seq, out.data());
  if (st != LSHMOE_SUCCESS) {
    require(untouched(out), "a rejected combine wrote its output");
    require(lshmoe_last_error()[0] != '\0', "a rejection without a message");
  }
  lshmoe_origin_ctx_destroy(ctx);
}

lshmoe::cpu::CpuCodec& cpu_codec(bool verify) {
  static std::unique_ptr<lshmoe::cpu::CpuCodec> codecs[2];
  std::unique_ptr<lshmoe::cpu::CpuCodec>& codec = codecs[verify ? 1 : 0];
  if (!codec) {
    lshmoe::Config config;
    config.min_rows = 1;
    config.cpu_threads = 1;
    config.verify = verify;
    require(lshmoe::cpu::CpuCodec::create(config, &codec) == LSHMOE_SUCCESS, "CpuCodec::create");
  }
  return *codec;
}

// Both ends' contexts of a pair of deterministic rows of the shape, as the
// forward leaves them (the combine done).
struct Pair {
  lshmoe::cpu::OriginContext origin;
  lshmoe::cpu::ExpertContext expert;
  std::vector<uint8_t> rows;
};

void make_pair(lshmoe::cpu::CpuCodec& codec, const Shape& s, Pair* p) {
  const lshmoe::DType dtype = lshmoe::DType(s.dtype);
  p->rows = lshmoe::fuzz::deterministic_rows(s.n_rows, s.row_elems, s.dtype);
  lshmoe_plan_t plan;
  require(codec.plan(s.n_rows, s.row_elems, dtype, &plan) == LSHMOE_SUCCESS, "plan");
  std::vector<uint8_t> dispatch(plan.dispatch_bytes), expanded(p->rows.size());
  require(codec.dispatch_encode(p->rows.data(), s.n_rows, s.row_elems, dtype, lshmoe::fuzz::kSeq,
                                dispatch.data(), dispatch.size(), &p->origin) == LSHMOE_SUCCESS,
          "dispatch_encode");
  require(codec.dispatch_decode(dispatch.data(), dispatch.size(), s.n_rows, s.row_elems, dtype,
                                lshmoe::fuzz::kSeq, expanded.data(), &p->expert) == LSHMOE_SUCCESS,
          "dispatch_decode");
}

// The regrouped combine reads a dispatch-kind message against the origin's
// context: the same promise, that a rejected message writes nothing.
void fuzz_combine_regrouped(const Shape& s, const uint8_t* wire, size_t size) {
  lshmoe::cpu::CpuCodec& codec = cpu_codec(s.verify);
  Pair p;
  make_pair(codec, s, &p);
  std::vector<uint8_t> out(p.rows.size(), kCanary);
  const uint64_t seq = s.check_seq ? lshmoe::fuzz::kSeq : LSHMOE_SEQ_ANY;
  if (codec.combine_decode_regrouped(p.origin, wire, size, seq, out.data()) != LSHMOE_SUCCESS) {
    require(untouched(out), "a rejected regrouped combine wrote its output");
  }
}

// The decoders of the backward: the combine's gradient on the expert side
// (rows and slots), the dispatch's on the origin side (after the combine's
// backward of the rows as their own gradient).
void fuzz_backward(const Shape& s, const uint8_t* wire, size_t size) {
  lshmoe::cpu::CpuCodec& codec = cpu_codec(s.verify);
  Pair p;
  make_pair(codec, s, &p);
  const uint64_t seq = s.check_seq ? lshmoe::fuzz::kSeq : LSHMOE_SEQ_ANY;
  for (bool slots : {false, true}) {
    std::vector<uint8_t> out(p.rows.size(), kCanary);
    if (codec.combine_backward_decode(p.expert, wire, size, seq, out.data(), slots) !=
        LSHMOE_SUCCESS) {
      require(untouched(out), "a rejected combine backward wrote its output");
    }
  }
  const lshmoe::cpu::PairShape& shape = p.origin.shape;
  std::vector<uint8_t> grad_wire(shape.wire_bytes(LSHMOE_COMBINE_GRAD));
  require(codec.combine_backward_encode(&p.origin, p.rows.data(), lshmoe::fuzz::kSeq,
                                        grad_wire.data(), grad_wire.size()) == LSHMOE_SUCCESS,
          "combine_backward_encode");
  std::vector<uint8_t> out(p.rows.size(), kCanary);
  if (codec.dispatch_backward_decode(p.origin, wire, size, seq, out.data()) != LSHMOE_SUCCESS) {
    require(untouched(out), "a rejected dispatch backward wrote its output");
  }
}

// The decoders of a pair the shim kept for its exact backward: the
// combine's gradient and a replayed dispatch at the expert, a replayed
// combine at the origin, each under a combine grouping of the pair's size.
void fuzz_kept_pair(const Shape& s, const uint8_t* wire, size_t size) {
  lshmoe::cpu::CpuCodec& codec = cpu_codec(s.verify);
  Pair p;
  make_pair(codec, s, &p);
  if (!p.origin.shape.compressed) return;  // a raw pair is never kept
  lshmoe::cpu::Grouping groups{p.origin.assignment, p.origin.shape.used_slots};
  const uint64_t seq = s.check_seq ? lshmoe::fuzz::kSeq : LSHMOE_SEQ_ANY;
  std::vector<uint8_t> out(p.rows.size(), kCanary);
  const bool replay = lshmoe::cpu::CpuCodec::is_replay(wire, size);
  const lshmoe_status_t first =
      replay ? codec.replay_dispatch_decode(p.expert, wire, size, seq, out.data())
             : codec.kept_combine_backward_decode(p.expert, groups, wire, size, seq, out.data());
  if (first != LSHMOE_SUCCESS) require(untouched(out), "a rejected kept first step wrote its rows");
  std::vector<uint8_t> back(p.rows.size(), kCanary);
  if (codec.replay_combine_decode(p.origin, groups, wire, size, seq, back.data()) !=
      LSHMOE_SUCCESS) {
    require(untouched(back), "a rejected replayed combine wrote its rows");
  }
}

// Makes the checksums match the (mutated) bytes, as an encoder would.
void reseal(uint8_t* wire, size_t size) {
  namespace w = lshmoe::wire;
  if (size < w::kHeaderBytes) return;
  w::Header h;
  memcpy(&h, wire, sizeof(h));
  if (h.flags & w::kFlagPayloadChecksum) {
    h.payload_checksum = w::crc32c(0, wire + w::kHeaderBytes, size - w::kHeaderBytes);
  }
  w::seal_header(&h);
  memcpy(wire, &h, sizeof(h));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static lshmoe_codec_t* codecs[2] = {lshmoe::fuzz::make_codec(false),
                                      lshmoe::fuzz::make_codec(true)};
  require(codecs[0] != nullptr && codecs[1] != nullptr, "codec_create");
  if (size < lshmoe::fuzz::kPrefixBytes) return 0;
  const Shape s = lshmoe::fuzz::parse_prefix(data);
  // An exactly sized copy: ASan then sees any read past the message. With
  // LSHMOE_FUZZ_MISALIGN set it starts at an odd address: the API takes
  // `const void*` and documents no alignment.
  static const size_t shift = getenv("LSHMOE_FUZZ_MISALIGN") != nullptr ? 1 : 0;
  const size_t n = size - lshmoe::fuzz::kPrefixBytes;
  std::vector<uint8_t> buffer(n + shift);
  if (n > 0) memcpy(buffer.data() + shift, data + lshmoe::fuzz::kPrefixBytes, n);
  uint8_t* wire = buffer.data() + shift;
  if (s.reseal) reseal(wire, n);
  lshmoe_codec_t* codec = codecs[s.verify ? 1 : 0];
  if (s.combine) {
    fuzz_combine(codec, s, wire, n);
    fuzz_combine_regrouped(s, wire, n);
    fuzz_backward(s, wire, n);
    fuzz_kept_pair(s, wire, n);
  } else {
    fuzz_dispatch(codec, s, wire, n);
  }
  return 0;
}
