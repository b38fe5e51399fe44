// Writes the decode fuzzer's seed corpus: valid dispatch and combine
// messages, in the fuzzer's input format (fuzz_input.h), for several shapes
// and dtypes, raw and compressed. Usage: make_seed_corpus SEED_DIR [DIR...];
// the further directories are created empty (the fuzzer's working corpus).
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "codec/wire_format.h"
#include "fuzz_input.h"
#include "lshmoe/lshmoe.h"

namespace {

using lshmoe::fuzz::Shape;

bool write_input(const std::filesystem::path& dir, const Shape& s,
                 const std::vector<uint8_t>& message, int* count) {
  std::vector<uint8_t> input(lshmoe::fuzz::kPrefixBytes);
  lshmoe::fuzz::write_prefix(s, input.data());
  input.insert(input.end(), message.begin(), message.end());
  const std::filesystem::path file = dir / ("seed_" + std::to_string((*count)++));
  std::ofstream f(file, std::ios::binary);
  f.write(reinterpret_cast<const char*>(input.data()), std::streamsize(input.size()));
  return bool(f);
}

// One pair of the shape: the dispatch message, and the combine message an
// identity expert sends back (and the dispatch again, as a regrouped one).
bool write_pair(const std::filesystem::path& dir, lshmoe_codec_t* codec, Shape s, int* count) {
  const std::vector<uint8_t> rows =
      lshmoe::fuzz::deterministic_rows(s.n_rows, s.row_elems, s.dtype);
  lshmoe_plan_t plan;
  if (lshmoe_codec_plan(codec, s.n_rows, s.row_elems, s.dtype, &plan) != LSHMOE_SUCCESS) {
    return false;
  }
  lshmoe_origin_ctx_t* origin = nullptr;
  lshmoe_expert_ctx_t* expert = nullptr;
  lshmoe_origin_ctx_create(&origin);
  lshmoe_expert_ctx_create(&expert);
  std::vector<uint8_t> dispatch(plan.dispatch_bytes), expanded(rows.size()),
      combine(plan.combine_bytes), out(rows.size());
  bool ok =
      lshmoe_dispatch_encode(codec, rows.data(), s.n_rows, s.row_elems, s.dtype, lshmoe::fuzz::kSeq,
                             dispatch.data(), dispatch.size(), origin) == LSHMOE_SUCCESS &&
      lshmoe_dispatch_decode(codec, dispatch.data(), dispatch.size(), s.n_rows, s.row_elems,
                             s.dtype, lshmoe::fuzz::kSeq, expanded.data(),
                             expert) == LSHMOE_SUCCESS &&
      lshmoe_combine_encode(codec, expert, expanded.data(), lshmoe::fuzz::kSeq, combine.data(),
                            combine.size()) == LSHMOE_SUCCESS &&
      lshmoe_combine_decode(codec, origin, combine.data(), combine.size(), lshmoe::fuzz::kSeq,
                            out.data()) == LSHMOE_SUCCESS;
  lshmoe_origin_ctx_destroy(origin);
  lshmoe_expert_ctx_destroy(expert);
  if (!ok) {
    fprintf(stderr, "make_seed_corpus: %s\n", lshmoe_last_error());
    return false;
  }
  s.combine = false;
  ok = write_input(dir, s, dispatch, count);
  s.combine = true;
  // On the combine path the dispatch message is also a valid regrouped
  // combine (a dispatch-kind message of the same rows), and the combine's,
  // relabelled, has the layout of both gradient messages of the backward
  // and of a kept pair's replayed steps (a dispatch kind, flagged).
  ok = ok && write_input(dir, s, combine, count) && write_input(dir, s, dispatch, count);
  for (lshmoe_kind_t kind : {LSHMOE_COMBINE_GRAD, LSHMOE_DISPATCH_GRAD, LSHMOE_DISPATCH}) {
    if (combine.size() < sizeof(lshmoe::wire::Header)) break;  // raw: no header
    lshmoe::wire::Header h;
    memcpy(&h, combine.data(), sizeof(h));
    h.kind = uint8_t(kind);
    if (kind == LSHMOE_DISPATCH) h.flags |= lshmoe::wire::kFlagKeptGrouping;
    lshmoe::wire::seal_header(&h);
    std::vector<uint8_t> relabelled = combine;
    memcpy(relabelled.data(), &h, sizeof(h));
    ok = ok && write_input(dir, s, relabelled, count);
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s SEED_DIR [DIR...]\n", argv[0]);
    return 2;
  }
  for (int i = 1; i < argc; ++i) std::filesystem::create_directories(argv[i]);
  const std::filesystem::path dir = argv[1];
  lshmoe_codec_t* codecs[2] = {lshmoe::fuzz::make_codec(false), lshmoe::fuzz::make_codec(true)};
  if (codecs[0] == nullptr || codecs[1] == nullptr) return 1;
  // Compressed shapes (many rows, long rows) and raw ones (the wire would
  // not be smaller).
  const std::pair<size_t, size_t> shapes[] = {{64, 64}, {40, 16}, {17, 33}, {64, 8},
                                              {5, 64},  {1, 1},   {3, 2}};
  const lshmoe_dtype_t dtypes[] = {LSHMOE_FLOAT32, LSHMOE_FLOAT16, LSHMOE_BFLOAT16};
  int count = 0, compressed = 0;
  for (const auto& [n, h] : shapes) {
    for (lshmoe_dtype_t dtype : dtypes) {
      for (int variant = 0; variant < 2; ++variant) {
        const Shape s{n, h, dtype, false, variant == 1, variant == 1, variant == 1};
        lshmoe_plan_t plan;
        lshmoe_codec_plan(codecs[variant], n, h, dtype, &plan);
        compressed += plan.compressed;
        if (!write_pair(dir, codecs[variant], s, &count)) return 1;
      }
    }
  }
  lshmoe_codec_destroy(codecs[0]);
  lshmoe_codec_destroy(codecs[1]);
  printf("make_seed_corpus: %d inputs (%d compressed pairs) in %s\n", count, compressed,
         dir.c_str());
  return compressed > 0 ? 0 : 1;
}
