// Quality on the documented synthetic generator (perf/eval/synthetic.h), the
// default workload of the README's main command.
#include <gtest/gtest.h>

#include <cmath>

#include "eval/quality.h"
#include "eval/synthetic.h"

namespace lshmoe::eval {
namespace {

// Rows are x = mu + c_k + spread * noise with mu ~ N(0, offset^2 I) and
// c_k ~ N(0, I), so E||x||^2 = H (offset^2 + 1 + spread^2). A slot whose
// rows all come from one cluster has a mean within O(1/sqrt(m)) of that
// cluster's centre, leaving an error of at most spread * sqrt(H) per row:
// the code's dispatch error is below spread / sqrt(offset^2 + 1 + spread^2)
// unless slots mix clusters, which with K = 0.2 n >> clusters they need not.
double pure_cluster_bound(const SyntheticSpec& s) {
  return s.spread / std::sqrt(double(s.offset) * s.offset + 1.0 + double(s.spread) * s.spread);
}

class SyntheticQuality : public ::testing::TestWithParam<DType> {};

TEST_P(SyntheticQuality, BelowTheClusterBoundAndNearKMeans) {
  SyntheticSpec spec;  // 8192 rows of 256, 64 clusters, as the default workload
  const Array tokens = from_float(clustered_tokens(spec), {spec.rows, spec.row_elems}, GetParam());
  Expert identity;
  ASSERT_EQ(Expert::from_spec("identity", spec.row_elems, &identity), LSHMOE_SUCCESS);
  QualityOptions options;
  options.splits.assign(8, spec.rows / 8);
  QualityReport r;
  ASSERT_EQ(evaluate(tokens, identity, options, &r), LSHMOE_SUCCESS) << lshmoe_last_error();
  EXPECT_EQ(r.messages_compressed, 8u);
  EXPECT_LT(double(r.dispatch_bytes) / double(r.logical_bytes), 0.21);
  EXPECT_LT(r.lsh.rel_err_dispatch, pure_cluster_bound(spec));
  EXPECT_LT(r.lsh.rel_err_dispatch, 1.25 * r.kmeans.rel_err_dispatch);
  // The identity expert with compensation gives the input back (rounding only).
  EXPECT_LT(r.lsh.rel_err_out_a1, 0.01);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, SyntheticQuality,
                         ::testing::Values(DType::kFloat32, DType::kBFloat16, DType::kFloat16),
                         [](const auto& p) { return std::string(dtype_name(p.param)); });

}  // namespace
}  // namespace lshmoe::eval
