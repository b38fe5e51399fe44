// Runs dispatch -> expert -> combine through the codec over per-peer
// messages and measures what compression costs in accuracy, next to the
// a k-means baseline at the same K.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "common/config.h"
#include "eval/expert.h"
#include "eval/kmeans.h"
#include "eval/npy.h"

namespace lshmoe::eval {

struct QualityOptions {
  Config config;               // LSHMOE_COMPENSATE is ignored: both alphas are measured
  std::vector<size_t> splits;  // rows per message; they sum to the token count
  bool kmeans = true;
  int kmeans_iterations = 10;
  KMeansInit kmeans_init = KMeansInit::kRandomRows;
  uint64_t kmeans_seed = 1;
  // Two experts per receiving rank: token t of a message goes to expert
  // t % 2, and one in `top2_every` to the other as well (a top-2 token
  // whose two experts share a rank); each message is laid out as
  // [expert 0's rows | expert 1's rows]. NULL: one expert.
  const Expert* second_expert = nullptr;
  size_t top2_every = 3;
  bool regroup = false;  // the combine: regrouped outputs, or slot means
};

struct ErrorFigures {
  double rel_err_dispatch = 0;  // ||x_hat - x|| / ||x||
  double rel_err_out_a1 = 0;    // ||y_hat - E(x)|| / ||E(x)||, alpha = 1
  double rel_err_out_a0 = 0;    // same, alpha = 0
};

struct QualityReport {
  size_t rows = 0, row_elems = 0, messages = 0, messages_compressed = 0, slots = 0;
  DType dtype = DType::kFloat32;
  std::string expert;
  std::string combine = "slots";
  bool two_experts = false;
  double ratio = 0;
  size_t logical_bytes = 0, dispatch_bytes = 0, combine_bytes = 0;
  double encode_seconds = 0;
  ErrorFigures lsh;
  bool has_kmeans = false;
  ErrorFigures kmeans;
};

Status evaluate(const Array& tokens, const Expert& expert, const QualityOptions& options,
                QualityReport* report);

std::string to_json(const QualityReport& report);

}  // namespace lshmoe::eval
