#include "alltoall/report.h"

#include <cinttypes>
#include <cmath>
#include <sstream>

namespace lshmoe::perf {
namespace {

std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

std::string json_number(double v) {
  if (!std::isfinite(v)) return "null";
  char buf[32];
  snprintf(buf, sizeof(buf), "%.6g", v);
  return buf;
}

std::string json_half(const HalfResult& h) {
  std::ostringstream o;
  o << "{\"time\": " << json_number(h.time_us) << ", \"alg_bw\": " << json_number(h.alg_bw)
    << ", \"bus_bw\": " << json_number(h.bus_bw)
    << ", \"nwrong\": " << (h.wrong < 0 ? std::string("null") : std::to_string(h.wrong)) << "}";
  return o.str();
}

std::string json_strings(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + json_string(v[i]);
  return out + "]";
}

const char* average_label(Average a) {
  switch (a) {
    case Average::kRank0:
      return "rank0";
    case Average::kMean:
      return "mean";
    case Average::kMin:
      return "min";
    case Average::kMax:
      return "max";
  }
  return "?";
}

std::string wrong_text(int64_t wrong) {
  return wrong < 0 ? std::string("N/A") : std::to_string(wrong);
}

}  // namespace

std::string compact_number(double value, int width) {
  char buf[64];
  int power = 0;
  for (double v = 1.0; value >= v && power < 40; v *= 10.0) ++power;
  if (power < width - 2) {
    snprintf(buf, sizeof(buf), "%*.2f", width, value);
  } else if (power < width - 1) {
    snprintf(buf, sizeof(buf), "%*.1f", width, value);
  } else if (power < width + 1) {
    snprintf(buf, sizeof(buf), "%*.0f", width, value);
  } else {
    snprintf(buf, sizeof(buf), "%*.1e", width, value);
  }
  return buf;
}

double operation_bytes(const SizePoint& size, TimedOp op) {
  return double(size.bytes) * (op == TimedOp::kBoth ? 2.0 : 1.0);
}

HalfResult half_result(const SizePoint& size, const PerfOptions& o, int ranks,
                       const std::vector<double>& seconds_per_rank, int64_t wrong) {
  HalfResult h;
  const double seconds = time_over_ranks(seconds_per_rank, o.average);
  h.time_us = seconds * 1e6;
  h.alg_bw = alg_bandwidth_gbs(operation_bytes(size, o.op), seconds);
  h.bus_bw = bus_bandwidth_gbs(h.alg_bw, ranks);
  h.wrong = wrong;
  return h;
}

Summary summarize(const std::vector<RowResult>& rows, bool checked) {
  Summary s;
  s.checked = checked;
  if (rows.empty()) return s;
  for (const RowResult& r : rows) {
    s.raw_bus_bw += r.raw.bus_bw;
    s.lshmoe_bus_bw += r.lshmoe.bus_bw;
    s.speedup += r.speedup;
    s.ratio += r.ratio;
    s.rel_err += r.rel_err;
    if (checked) {
      s.raw_wrong += r.raw.wrong;
      s.lshmoe_wrong += r.lshmoe.wrong;
    }
  }
  const double n = double(rows.size());
  s.raw_bus_bw /= n;
  s.lshmoe_bus_bw /= n;
  s.speedup /= n;
  s.ratio /= n;
  s.rel_err /= n;
  return s;
}

void print_header(FILE* out, const RunInfo& run) {
  const PerfOptions& o = run.options;
  fprintf(out, "# lshmoe_alltoall_perf (lshmoe %s)\n", run.version.c_str());
  fprintf(out,
          "# nRanks %d minBytes %zu maxBytes %zu step: %zu(%s) warmup iters: %d iters: %d agg "
          "iters: %d validation: %d graph: %d\n",
          run.ranks, o.min_bytes, o.max_bytes, o.step_factor > 1 ? o.step_factor : o.step_bytes,
          o.step_factor > 1 ? "factor" : "bytes", o.warmup_iters, o.iters, o.agg_iters, o.check,
          o.cudagraph);
  fprintf(out,
          "# hidden %zu, experts %d, data %s, mode %s, op %s, backend %s, ratio %g, "
          "max rel err %g, average %s\n",
          o.hidden, o.experts, o.data == DataKind::kFile ? o.data_file.c_str() : data_label(o.data),
          o.mode == LSHMOE_DISPATCH_ROWS ? "rows" : "centroids", op_label(o.op),
          o.backend == Backend::kUcx ? "ucx" : "nccl", run.ratio_setting, o.max_rel_err,
          average_label(o.average));
  fprintf(out, "#\n# Using devices\n");
  for (const RankInfo& d : run.devices) {
    fprintf(out, "#  Rank %2d Pid %6d on %10s %s\n", d.rank, d.pid, d.hostname.c_str(),
            d.device.c_str());
  }
  fprintf(out, "#\n");
  fprintf(out, "# %10s  %12s  %8s  %31s  %31s\n", "", "", "", "raw", "lshmoe");
  fprintf(out, "# %10s  %12s  %8s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s  %6s  %7s  %7s\n", "size",
          "count", "type", "time", "algbw", "busbw", "#wrong", "time", "algbw", "busbw", "#wrong",
          "ratio", "rel_err", "speedup");
  fprintf(out, "# %10s  %12s  %8s  %7s  %6s  %6s  %6s  %7s  %6s  %6s  %6s  %6s  %7s  %7s\n", "(B)",
          "(elements)", "", "(us)", "(GB/s)", "(GB/s)", "", "(us)", "(GB/s)", "(GB/s)", "", "", "",
          "");
  fflush(out);
}

void print_row(FILE* out, const RowResult& r, const PerfOptions& o) {
  fprintf(out, "  %10zu  %12zu  %8s", r.size.bytes, r.size.count, dtype_label(o.dtype));
  for (const HalfResult* h : {&r.raw, &r.lshmoe}) {
    fprintf(out, "  %7s  %6s  %6s  %6s", compact_number(h->time_us, 7).c_str(),
            compact_number(h->alg_bw, 6).c_str(), compact_number(h->bus_bw, 6).c_str(),
            wrong_text(h->wrong).c_str());
  }
  fprintf(out, "  %6.3f  %7.4f  %7.2f\n", r.ratio, r.rel_err, r.speedup);
  fflush(out);
}

void print_footer(FILE* out, const Summary& s) {
  fprintf(out, "# %-20s : %" PRId64 " %s\n", "Out of bounds values", s.raw_wrong + s.lshmoe_wrong,
          s.ok() ? "OK" : "FAILED");
  fprintf(out, "# %-20s : %g (raw)\n", "Avg bus bandwidth", s.raw_bus_bw);
  fprintf(out, "# %-20s : %g (lshmoe)\n", "Avg bus bandwidth", s.lshmoe_bus_bw);
  fprintf(out, "# %-20s : %.3g\n", "Avg speedup", s.speedup);
  fprintf(out, "# %-20s : %.4g\n", "Avg wire ratio", s.ratio);
  fprintf(out, "# %-20s : %.4g\n", "Avg rel err", s.rel_err);
  fprintf(out, "#\n");
}

std::string json_report(const RunInfo& run, const std::vector<RowResult>& rows, const Summary& s) {
  const PerfOptions& o = run.options;
  std::ostringstream j;
  j << "{\n  \"version\": 1,\n  \"tool\": \"lshmoe_alltoall_perf\",\n  \"lshmoe_version\": "
    << json_string(run.version) << ",\n  \"start_time\": " << json_string(run.start_time)
    << ",\n  \"args\": " << json_strings(run.args) << ",\n  \"env\": " << json_strings(run.env)
    << ",\n";
  j << "  \"config\": {\"nranks\": " << run.ranks << ", \"minimum_bytes\": " << o.min_bytes
    << ", \"maximum_bytes\": " << o.max_bytes << ", "
    << (o.step_factor > 1 ? "\"step_factor\": " + std::to_string(o.step_factor)
                          : "\"step_bytes\": " + std::to_string(o.step_bytes))
    << ", \"warmup_iters\": " << o.warmup_iters << ", \"iterations\": " << o.iters
    << ", \"aggregated_iterations\": " << o.agg_iters << ", \"validation\": " << o.check
    << ", \"graph\": " << o.cudagraph << ", \"average\": " << json_string(average_label(o.average))
    << ", \"datatype\": " << json_string(dtype_label(o.dtype)) << ", \"hidden\": " << o.hidden
    << ", \"experts\": " << o.experts << ", \"data\": "
    << json_string(o.data == DataKind::kFile ? o.data_file : std::string(data_label(o.data)))
    << ", \"mode\": " << json_string(o.mode == LSHMOE_DISPATCH_ROWS ? "rows" : "centroids")
    << ", \"op\": " << json_string(op_label(o.op))
    << ", \"backend\": " << json_string(o.backend == Backend::kUcx ? "ucx" : "nccl")
    << ", \"ratio\": " << json_number(run.ratio_setting)
    << ", \"max_rel_err\": " << json_number(o.max_rel_err) << "},\n";
  j << "  \"devices\": [";
  for (size_t i = 0; i < run.devices.size(); ++i) {
    const RankInfo& d = run.devices[i];
    j << (i ? ",\n    " : "\n    ") << "{\"rank\": " << d.rank << ", \"pid\": " << d.pid
      << ", \"hostname\": " << json_string(d.hostname)
      << ", \"device_info\": " << json_string(d.device) << "}";
  }
  j << "\n  ],\n  \"results\": [";
  for (size_t i = 0; i < rows.size(); ++i) {
    const RowResult& r = rows[i];
    j << (i ? ",\n    " : "\n    ") << "{\"size\": " << r.size.bytes
      << ", \"count\": " << r.size.count << ", \"type\": " << json_string(dtype_label(o.dtype))
      << ", \"rows_per_peer\": " << r.size.rows_per_peer << ", \"raw\": " << json_half(r.raw)
      << ", \"lshmoe\": " << json_half(r.lshmoe) << ", \"ratio\": " << json_number(r.ratio)
      << ", \"rel_err\": " << json_number(r.rel_err) << ", \"speedup\": " << json_number(r.speedup)
      << "}";
  }
  j << "\n  ],\n";
  j << "  \"out_of_bounds\": {\"count\": " << (s.raw_wrong + s.lshmoe_wrong)
    << ", \"okay\": " << (s.ok() ? "true" : "false") << "},\n";
  j << "  \"average_bus_bandwidth\": {\"raw\": " << json_number(s.raw_bus_bw)
    << ", \"lshmoe\": " << json_number(s.lshmoe_bus_bw) << "},\n";
  j << "  \"average_speedup\": " << json_number(s.speedup)
    << ",\n  \"average_ratio\": " << json_number(s.ratio)
    << ",\n  \"average_rel_err\": " << json_number(s.rel_err)
    << ",\n  \"end_time\": " << json_string(run.end_time) << "\n}\n";
  return j.str();
}

}  // namespace lshmoe::perf
