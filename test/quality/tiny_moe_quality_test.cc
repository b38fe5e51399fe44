// Quality on real MoE activations (the shared tiny-moe-v1 data set: inputs of
// the most loaded expert of two layers, split over 8 origin ranks), against
// the figures of an independent reference implementation and against the
// k-means baseline at the same budget. Skipped when the data set is absent.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "eval/quality.h"

namespace lshmoe::eval {
namespace {

const std::filesystem::path kDataDir = LSHMOE_TINY_MOE_DIR;

// The number after "key": inside the object of `layer` in reference.json.
double reference_figure(const std::string& layer, const std::string& key) {
  std::ifstream f(kDataDir / "reference.json");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  const size_t at = text.find("\"" + layer + "\"");
  const size_t pos = text.find("\"" + key + "\"", at);
  if (at == std::string::npos || pos == std::string::npos) return -1.0;
  return std::stod(text.substr(text.find(':', pos) + 1));
}

struct Layer {
  Array tokens;
  std::vector<size_t> splits;
  Expert expert;
};

Layer load(const std::string& name) {
  Layer l;
  const auto dir = kDataDir / name;
  EXPECT_EQ(read_npy(dir / "tokens.npy", &l.tokens), LSHMOE_SUCCESS) << lshmoe_last_error();
  // The reference works on fp32 rows.
  l.tokens = from_float(to_float(l.tokens), l.tokens.shape, DType::kFloat32);
  std::ifstream f(dir / "splits.txt");
  std::string item;
  while (std::getline(f, item, ',')) l.splits.push_back(std::stoul(item));
  EXPECT_EQ(Expert::from_weights(dir / "w1.npy", dir / "b1.npy", dir / "w2.npy", dir / "b2.npy",
                                 l.tokens.row_elems(), &l.expert),
            LSHMOE_SUCCESS)
      << lshmoe_last_error();
  return l;
}

QualityReport run(const Layer& l, const Expert& expert, Config config, bool kmeans) {
  QualityOptions options;
  options.config = config;
  options.splits = l.splits;
  options.kmeans = kmeans;
  QualityReport report;
  EXPECT_EQ(evaluate(l.tokens, expert, options, &report), LSHMOE_SUCCESS) << lshmoe_last_error();
  return report;
}

class TinyMoe : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(kDataDir / "reference.json")) {
      GTEST_SKIP() << "tiny-moe-v1 data set not found at " << kDataDir;
    }
  }
};

// Defaults (centred hashing, spare slots, one Lloyd step): near the
// reference's refine1 figures (our projection matrices differ, and across
// seeds our error varies by about 3 %), within 1.25x of k-means, at ~20 % of
// the bytes.
TEST_P(TinyMoe, DefaultsNearReferenceAndKMeans) {
  const std::string layer = GetParam();
  const Layer l = load(layer);
  const QualityReport r = run(l, l.expert, Config{}, /*kmeans=*/true);
  EXPECT_EQ(r.messages_compressed, 8u);
  EXPECT_LT(double(r.dispatch_bytes) / double(r.logical_bytes), 0.21);
  EXPECT_LT(double(r.combine_bytes) / double(r.logical_bytes), 0.21);
  const double ref_x = reference_figure(layer, "refine1_rel_err_x");
  const double ref_a1 = reference_figure(layer, "refine1_rel_err_a1");
  ASSERT_GT(ref_x, 0.0);
  EXPECT_LT(r.lsh.rel_err_dispatch, 1.10 * ref_x);
  EXPECT_LT(r.lsh.rel_err_out_a1, 1.15 * ref_a1);
  EXPECT_LT(r.lsh.rel_err_dispatch, 1.25 * r.kmeans.rel_err_dispatch);
  // k-means (10 Lloyd steps) is the baseline a centroid code is measured by:
  // LSH is not expected to beat it by much.
  EXPECT_GT(r.lsh.rel_err_dispatch, 0.9 * r.kmeans.rel_err_dispatch);
}

// Each improvement over the paper's scheme pays on real activations.
TEST_P(TinyMoe, CentringSpareSlotsAndRefinementEachHelp) {
  const Layer l = load(GetParam());
  Expert identity;
  ASSERT_EQ(Expert::from_spec("identity", l.tokens.row_elems(), &identity), LSHMOE_SUCCESS);
  Config paper;
  paper.center = false;
  paper.spare_slots = false;
  paper.refine = 0;
  Config centred = paper;
  centred.center = true;
  Config spare = centred;
  spare.spare_slots = true;
  Config refined = spare;
  refined.refine = 1;
  const double e_paper = run(l, identity, paper, false).lsh.rel_err_dispatch;
  const double e_centred = run(l, identity, centred, false).lsh.rel_err_dispatch;
  const double e_spare = run(l, identity, spare, false).lsh.rel_err_dispatch;
  const double e_refined = run(l, identity, refined, false).lsh.rel_err_dispatch;
  EXPECT_LT(e_centred, e_paper);
  EXPECT_LT(e_spare, e_centred);
  EXPECT_LT(e_refined, 0.8 * e_spare);
}

INSTANTIATE_TEST_SUITE_P(Layers, TinyMoe, ::testing::Values("layer0", "layer1"));

}  // namespace
}  // namespace lshmoe::eval
