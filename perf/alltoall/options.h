// lshmoe_alltoall_perf's command line: nccl-tests' flags (names, long forms
// and defaults where they apply) and lshmoe's own. Parsing is pure: every
// rank parses the same argv and reaches the same verdict before it
// connects, so a bad flag is an error on every rank and never a hang.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "lshmoe/lshmoe.h"

namespace lshmoe::perf {

enum class Average { kRank0 = 0, kMean = 1, kMin = 2, kMax = 3 };
enum class TimedOp { kBoth, kDispatch, kCombine };
enum class DataKind { kClustered, kRandom, kFile };
enum class Backend { kUcx, kNccl };

struct PerfOptions {
  size_t min_bytes = 32 * 1024 * 1024;  // nccl-tests' defaults: -b 32M -e 32M
  size_t max_bytes = 32 * 1024 * 1024;
  size_t step_bytes = 1024 * 1024;  // -i: the step when step_factor is 1
  size_t step_factor = 1;           // -f: above 1, sizes grow by this factor
  int iters = 20;                   // -n
  int warmup_iters = 1;             // -w
  int agg_iters = 1;                // -m
  int check = 1;                    // -c
  lshmoe_dtype_t dtype = LSHMOE_BFLOAT16;
  Average average = Average::kMean;  // -a
  std::string output_file;           // -J
  int cudagraph = 0;                 // -G: replays per timed iteration (nccl backend)
  size_t hidden = 4096;
  int experts = 1;    // --experts: parts per peer (lshmoe_dispatch_experts), ucx backend
  std::string ratio;  // --ratio: LSHMOE_RATIO for the compressed half; empty: the environment's
  DataKind data = DataKind::kClustered;
  std::string data_file;
  lshmoe_dispatch_mode_t mode = LSHMOE_DISPATCH_ROWS;
  Backend backend = Backend::kUcx;
  TimedOp op = TimedOp::kBoth;
  double max_rel_err = -1.0;  // < 0: the default for the timed op (default_max_rel_err)
};

enum class ParseResult { kRun, kHelp, kError };

// Fills *out from argv; on kError, *error names the flag and what it takes.
ParseResult parse_options(int argc, const char* const* argv, PerfOptions* out, std::string* error);

// nccl-tests' size syntax: an integer with an optional K, M or G (powers of
// 1024). False for anything else, or a value that overflows.
bool parse_size(const std::string& text, size_t* bytes);

// The bound of the compressed half's per-row check when --max-rel-err is not
// given: met with margin by clustered rows.
double default_max_rel_err(TimedOp op);

const char* usage_text();
const char* dtype_label(lshmoe_dtype_t dtype);  // nccl-tests' names: bfloat16, half, float
const char* op_label(TimedOp op);
const char* data_label(DataKind data);

}  // namespace lshmoe::perf
