// lshmoe_alltoall_perf's output: nccl-tests' table (size, count, type, then
// per half time, algbw, busbw and #wrong) with a raw and an lshmoe half and
// lshmoe's three columns, the footer, and one JSON document (keys named
// after nccl-tests' JSON where they mean the same).
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "alltoall/options.h"
#include "alltoall/sweep.h"

namespace lshmoe::perf {

struct HalfResult {
  double time_us = 0.0;  // per operation, over ranks as -a says
  double alg_bw = 0.0;   // GB/s
  double bus_bw = 0.0;   // GB/s
  int64_t wrong = -1;    // raw: wrong elements; lshmoe: rows beyond the bound; -1: unchecked
};

struct RowResult {
  SizePoint size;
  HalfResult raw, lshmoe;
  double ratio = 0.0;    // wire / logical bytes of the messages to other ranks
  double rel_err = 0.0;  // ||y_lshmoe - y|| / ||y||
  double speedup = 0.0;  // raw time / lshmoe time
};

struct RankInfo {
  int rank = 0;
  int pid = 0;
  std::string hostname;
  std::string device;
};

struct RunInfo {
  PerfOptions options;
  int ranks = 0;
  std::string version;  // lshmoe's
  double ratio_setting = 0.0;
  std::vector<std::string> args;
  std::vector<std::string> env;  // LSHMOE_* and the launch variables
  std::vector<RankInfo> devices;
  std::string start_time, end_time;
};

struct Summary {
  double raw_bus_bw = 0.0, lshmoe_bus_bw = 0.0;  // means over the rows
  double speedup = 0.0, ratio = 0.0, rel_err = 0.0;
  int64_t raw_wrong = 0, lshmoe_wrong = 0;
  bool checked = false;
  bool ok() const { return !checked || (raw_wrong == 0 && lshmoe_wrong == 0); }
};

// The bytes of one row of the table, per operation timed (--op both moves
// two all-to-alls per operation).
double operation_bytes(const SizePoint& size, TimedOp op);

// A row's figures from every rank's time (seconds per operation).
HalfResult half_result(const SizePoint& size, const PerfOptions& o, int ranks,
                       const std::vector<double>& seconds_per_rank, int64_t wrong);

Summary summarize(const std::vector<RowResult>& rows, bool checked);

void print_header(FILE* out, const RunInfo& run);
void print_row(FILE* out, const RowResult& row, const PerfOptions& o);
void print_footer(FILE* out, const Summary& summary);

std::string json_report(const RunInfo& run, const std::vector<RowResult>& rows,
                        const Summary& summary);

// nccl-tests' compact number format: as many decimals as `width` allows.
std::string compact_number(double value, int width);

}  // namespace lshmoe::perf
