// lshmoe_eval: quality of the codec on a token file, as one JSON object.
//
//   lshmoe_eval TOKENS.npy [--peers P | --splits a,b,.. | --splits-file F]
//               [--expert identity|ffn:SEED | --w1 F --b1 F --w2 F --b2 F]
//               [--ratio R] [--hashes T] [--proj-dim D] [--seed S] [--refine N]
//               [--spare 0|1] [--center 0|1] [--min-rows N] [--threads N]
//               [--cast fp32|fp16|bf16] [--kmeans 0|1] [--kmeans-iters N]
//               [--kmeans-init random|++] [--combine slots|regroup]
//               [--expert2 identity|ffn:SEED | --w1b F --b1b F --w2b F --b2b F]
//               [--top2-every N]
//
// With a second expert, each receiving rank hosts two: token t of a message
// goes to expert t % 2 and one in N (default 3) to both (top-2); there is no
// k-means baseline then.
// Settings start from the LSHMOE_* environment; flags override them.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

#include "eval/quality.h"

namespace {

using lshmoe::Status;
using namespace lshmoe::eval;

constexpr size_t kMaxPeers = 65536;

int usage(const char* why) {
  fprintf(stderr,
          "lshmoe_eval: %s\n"
          "usage: lshmoe_eval TOKENS.npy [--peers P | --splits a,b,.. | --splits-file F]\n"
          "  [--expert identity|ffn:SEED | --w1 F --b1 F --w2 F --b2 F] [--ratio R] [--hashes T]\n"
          "  [--proj-dim D] [--seed S] [--refine N] [--spare 0|1] [--center 0|1] [--min-rows N]\n"
          "  [--threads N] [--cast fp32|fp16|bf16] [--kmeans 0|1] [--kmeans-iters N]\n"
          "  [--kmeans-init random|++] [--combine slots|regroup]\n"
          "  [--expert2 identity|ffn:SEED | --w1b F --b1b F --w2b F --b2b F] [--top2-every N]\n",
          why);
  return 2;
}

int die(Status s) {
  fprintf(stderr, "lshmoe_eval: %s\n", lshmoe_last_error());
  return s == LSHMOE_ERR_INVALID_CONFIG || s == LSHMOE_ERR_INVALID_ARGUMENT ? 2 : 1;
}

bool parse_splits(const std::string& text, std::vector<size_t>* out) {
  std::stringstream ss(text);
  std::string item;
  out->clear();
  while (std::getline(ss, item, ',')) {
    char* end = nullptr;
    const unsigned long long v = strtoull(item.c_str(), &end, 10);
    while (end && (*end == ' ' || *end == '\n' || *end == '\r')) ++end;
    if (item.empty() || end == item.c_str() || *end != '\0') return false;
    out->push_back(v);
  }
  return !out->empty();
}

}  // namespace

int main(int argc, char** argv) {
  // Flags that are configuration variables.
  const std::map<std::string, const char*> var_flags = {
      {"--ratio", "LSHMOE_RATIO"},        {"--hashes", "LSHMOE_HASHES"},
      {"--proj-dim", "LSHMOE_PROJ_DIM"},  {"--seed", "LSHMOE_SEED"},
      {"--refine", "LSHMOE_REFINE"},      {"--spare", "LSHMOE_SPARE_SLOTS"},
      {"--center", "LSHMOE_CENTER"},      {"--min-rows", "LSHMOE_MIN_ROWS"},
      {"--threads", "LSHMOE_CPU_THREADS"}};
  QualityOptions options;
  if (Status s = lshmoe::config_from_env(options.config); s != LSHMOE_SUCCESS) return die(s);
  std::string tokens_path, splits_text, expert_spec = "identity", cast;
  std::string w[4], w2[4], expert2_spec;
  size_t peers = 8;
  for (int i = 1; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "-h" || flag == "--help") return usage("help"), 0;
    if (flag.rfind("--", 0) != 0) {
      if (!tokens_path.empty()) return usage("more than one token file");
      tokens_path = flag;
      continue;
    }
    if (i + 1 >= argc) return usage((flag + " needs a value").c_str());
    const std::string value = argv[++i];
    if (auto it = var_flags.find(flag); it != var_flags.end()) {
      if (Status s = lshmoe::config_set(options.config, it->second, value.c_str());
          s != LSHMOE_SUCCESS) {
        return die(s);
      }
    } else if (flag == "--peers") {
      peers = strtoull(value.c_str(), nullptr, 10);
      if (peers == 0 || peers > kMaxPeers) return usage("--peers must be in [1, 65536]");
    } else if (flag == "--splits") {
      splits_text = value;
    } else if (flag == "--splits-file") {
      std::ifstream f(value);
      if (!f) return usage(("cannot read " + value).c_str());
      std::getline(f, splits_text);
    } else if (flag == "--expert") {
      expert_spec = value;
    } else if (flag == "--w1" || flag == "--b1" || flag == "--w2" || flag == "--b2") {
      w[(flag[2] == 'b') + 2 * (flag[3] == '2')] = value;
    } else if (flag == "--w1b" || flag == "--b1b" || flag == "--w2b" || flag == "--b2b") {
      w2[(flag[2] == 'b') + 2 * (flag[3] == '2')] = value;
    } else if (flag == "--expert2") {
      expert2_spec = value;
    } else if (flag == "--top2-every") {
      const long every = atol(value.c_str());
      if (every < 0 || every > 1000000) return usage("--top2-every must be in [0, 1000000]");
      options.top2_every = size_t(every);
    } else if (flag == "--combine") {
      if (value != "slots" && value != "regroup")
        return usage("--combine must be slots or regroup");
      options.regroup = value == "regroup";
    } else if (flag == "--cast") {
      cast = value;
    } else if (flag == "--kmeans") {
      options.kmeans = value != "0";
    } else if (flag == "--kmeans-init") {
      if (value != "random" && value != "++") return usage("--kmeans-init must be random or ++");
      options.kmeans_init = value == "++" ? KMeansInit::kPlusPlus : KMeansInit::kRandomRows;
    } else if (flag == "--kmeans-iters") {
      options.kmeans_iterations = atoi(value.c_str());
      if (options.kmeans_iterations < 0 || options.kmeans_iterations > 1000) {
        return usage("--kmeans-iters must be in [0, 1000]");
      }
    } else {
      return usage(("unknown flag " + flag).c_str());
    }
  }
  if (tokens_path.empty()) return usage("no token file");
  if (Status s = lshmoe::config_validate(options.config); s != LSHMOE_SUCCESS) return die(s);

  Array tokens;
  if (Status s = read_npy(tokens_path, &tokens); s != LSHMOE_SUCCESS) return die(s);
  if (tokens.shape.size() != 2) return usage("the token file must hold a [N, H] matrix");
  if (!cast.empty()) {
    lshmoe::DType to;
    if (cast == "fp32") {
      to = lshmoe::DType::kFloat32;
    } else if (cast == "fp16") {
      to = lshmoe::DType::kFloat16;
    } else if (cast == "bf16") {
      to = lshmoe::DType::kBFloat16;
    } else {
      return usage("--cast must be fp32, fp16 or bf16");
    }
    tokens = from_float(to_float(tokens), tokens.shape, to);
  }
  if (!splits_text.empty()) {
    if (!parse_splits(splits_text, &options.splits) || options.splits.size() > kMaxPeers) {
      return usage("bad --splits list (comma-separated row counts, at most 65536)");
    }
  } else {
    for (size_t p = 0; p < peers; ++p)
      options.splits.push_back(tokens.rows() * (p + 1) / peers - tokens.rows() * p / peers);
  }
  Expert expert;
  Status s = !w[0].empty()
                 ? Expert::from_weights(w[0], w[1], w[2], w[3], tokens.row_elems(), &expert)
                 : Expert::from_spec(expert_spec, tokens.row_elems(), &expert);
  if (s != LSHMOE_SUCCESS) return die(s);
  Expert second;
  if (!w2[0].empty() || !expert2_spec.empty()) {
    s = !w2[0].empty()
            ? Expert::from_weights(w2[0], w2[1], w2[2], w2[3], tokens.row_elems(), &second)
            : Expert::from_spec(expert2_spec, tokens.row_elems(), &second);
    if (s != LSHMOE_SUCCESS) return die(s);
    options.second_expert = &second;
    options.kmeans = false;  // the baseline knows one expert
  }
  QualityReport report;
  if (s = evaluate(tokens, expert, options, &report); s != LSHMOE_SUCCESS) return die(s);
  printf("%s\n", to_json(report).c_str());
  return 0;
}
