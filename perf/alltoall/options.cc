#include "alltoall/options.h"

#include <cerrno>
#include <cstdlib>
#include <limits>

namespace lshmoe::perf {
namespace {

bool parse_long(const std::string& text, long lo, long hi, long* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const long v = strtol(text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

bool parse_double(const std::string& text, double* out) {
  if (text.empty()) return false;
  char* end = nullptr;
  errno = 0;
  const double v = strtod(text.c_str(), &end);
  if (errno != 0 || *end != '\0' || !(v > 0.0) || v == std::numeric_limits<double>::infinity()) {
    return false;
  }
  *out = v;
  return true;
}

bool parse_dtype(const std::string& text, lshmoe_dtype_t* out) {
  if (text == "bfloat16" || text == "bf16") {
    *out = LSHMOE_BFLOAT16;
  } else if (text == "half" || text == "float16" || text == "fp16") {
    *out = LSHMOE_FLOAT16;
  } else if (text == "float" || text == "float32" || text == "fp32") {
    *out = LSHMOE_FLOAT32;
  } else {
    return false;
  }
  return true;
}

// One flag: its short and long names, what its value must be, and how to
// store it (false: the value is not of that kind).
struct Flag {
  const char* short_name;  // may be nullptr
  const char* long_name;
  const char* takes;
  bool (*store)(const std::string& value, PerfOptions* o);
};

template <typename T, T PerfOptions::*Member, long Lo, long Hi>
bool store_int(const std::string& v, PerfOptions* o) {
  long x = 0;
  if (!parse_long(v, Lo, Hi, &x)) return false;
  o->*Member = T(x);
  return true;
}

template <size_t PerfOptions::*Member>
bool store_size(const std::string& v, PerfOptions* o) {
  return parse_size(v, &(o->*Member));
}

constexpr long kMaxIters = 1000000;

const Flag kFlags[] = {
    {"-b", "--minbytes", "a size (bytes, or with K, M or G)", store_size<&PerfOptions::min_bytes>},
    {"-e", "--maxbytes", "a size (bytes, or with K, M or G)", store_size<&PerfOptions::max_bytes>},
    {"-i", "--stepbytes", "a size (bytes, or with K, M or G) above 0",
     [](const std::string& v, PerfOptions* o) {
       return parse_size(v, &o->step_bytes) && o->step_bytes > 0;
     }},
    {"-f", "--stepfactor", "an integer in [1, 1024]",
     store_int<size_t, &PerfOptions::step_factor, 1, 1024>},
    {"-n", "--iters", "an integer in [1, 1000000]",
     store_int<int, &PerfOptions::iters, 1, kMaxIters>},
    {"-w", "--warmup_iters", "an integer in [0, 1000000]",
     store_int<int, &PerfOptions::warmup_iters, 0, kMaxIters>},
    {"-m", "--agg_iters", "an integer in [1, 1000000]",
     store_int<int, &PerfOptions::agg_iters, 1, kMaxIters>},
    {"-c", "--check", "0 or 1", store_int<int, &PerfOptions::check, 0, 1>},
    {"-d", "--datatype", "bfloat16, half or float",
     [](const std::string& v, PerfOptions* o) { return parse_dtype(v, &o->dtype); }},
    {"-a", "--average", "0 (rank 0), 1 (mean), 2 (min) or 3 (max)",
     [](const std::string& v, PerfOptions* o) {
       long x = 0;
       if (!parse_long(v, 0, 3, &x)) return false;
       o->average = Average(x);
       return true;
     }},
    {"-J", "--output_file", "a file name",
     [](const std::string& v, PerfOptions* o) {
       o->output_file = v;
       return !v.empty();
     }},
    {"-G", "--cudagraph", "an integer in [0, 1000000] (graph replays per iteration)",
     store_int<int, &PerfOptions::cudagraph, 0, kMaxIters>},
    {nullptr, "--hidden", "an integer in [1, 1048576] (elements per row)",
     store_int<size_t, &PerfOptions::hidden, 1, 1 << 20>},
    {nullptr, "--experts", "an integer in [1, 65536] (experts per rank)",
     store_int<int, &PerfOptions::experts, 1, 1 << 16>},
    {nullptr, "--ratio", "a number in (0, 1]",
     [](const std::string& v, PerfOptions* o) {
       double r = 0;
       if (!parse_double(v, &r) || r > 1.0) return false;
       o->ratio = v;
       return true;
     }},
    {nullptr, "--data", "clustered, random or a .npy file of rows",
     [](const std::string& v, PerfOptions* o) {
       if (v == "clustered") {
         o->data = DataKind::kClustered;
       } else if (v == "random") {
         o->data = DataKind::kRandom;
       } else if (v.size() > 4 && v.compare(v.size() - 4, 4, ".npy") == 0) {
         o->data = DataKind::kFile;
         o->data_file = v;
       } else {
         return false;
       }
       return true;
     }},
    {nullptr, "--mode", "rows or centroids",
     [](const std::string& v, PerfOptions* o) {
       if (v != "rows" && v != "centroids") return false;
       o->mode = v == "rows" ? LSHMOE_DISPATCH_ROWS : LSHMOE_DISPATCH_CENTROIDS;
       return true;
     }},
    {nullptr, "--backend", "ucx or nccl",
     [](const std::string& v, PerfOptions* o) {
       if (v != "ucx" && v != "nccl") return false;
       o->backend = v == "ucx" ? Backend::kUcx : Backend::kNccl;
       return true;
     }},
    {nullptr, "--op", "dispatch, combine or both",
     [](const std::string& v, PerfOptions* o) {
       if (v == "both") {
         o->op = TimedOp::kBoth;
       } else if (v == "dispatch") {
         o->op = TimedOp::kDispatch;
       } else if (v == "combine") {
         o->op = TimedOp::kCombine;
       } else {
         return false;
       }
       return true;
     }},
    {nullptr, "--max-rel-err", "a number above 0",
     [](const std::string& v, PerfOptions* o) { return parse_double(v, &o->max_rel_err); }},
};

const Flag* find_flag(const std::string& name) {
  for (const Flag& f : kFlags) {
    if ((f.short_name != nullptr && name == f.short_name) || name == f.long_name) return &f;
  }
  return nullptr;
}

}  // namespace

bool parse_size(const std::string& text, size_t* bytes) {
  if (text.empty() || text[0] < '0' || text[0] > '9') return false;
  size_t multiplier = 1;
  std::string digits = text;
  switch (text.back()) {
    case 'K':
    case 'k':
      multiplier = size_t(1) << 10;
      break;
    case 'M':
    case 'm':
      multiplier = size_t(1) << 20;
      break;
    case 'G':
    case 'g':
      multiplier = size_t(1) << 30;
      break;
    default:
      break;
  }
  if (multiplier != 1) digits.pop_back();
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = strtoull(digits.c_str(), &end, 10);
  if (digits.empty() || errno != 0 || *end != '\0') return false;
  if (v > std::numeric_limits<size_t>::max() / multiplier) return false;
  *bytes = size_t(v) * multiplier;
  return true;
}

ParseResult parse_options(int argc, const char* const* argv, PerfOptions* out, std::string* error) {
  PerfOptions o;
  for (int i = 1; i < argc; ++i) {
    std::string name = argv[i];
    if (name == "-h" || name == "--help") return ParseResult::kHelp;
    std::string value;
    bool inline_value = false;
    if (const size_t eq = name.find('='); name.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = name.substr(eq + 1);  // --flag=value
      name = name.substr(0, eq);
      inline_value = true;
    }
    const Flag* flag = find_flag(name);
    if (flag == nullptr) {
      *error = "unknown flag " + name + " (-h lists them)";
      return ParseResult::kError;
    }
    if (!inline_value) {
      if (i + 1 >= argc) {
        *error = name + " needs a value: " + flag->takes;
        return ParseResult::kError;
      }
      value = argv[++i];
    }
    if (!flag->store(value, &o)) {
      *error = name + " \"" + value + "\" is invalid: expected " + flag->takes;
      return ParseResult::kError;
    }
  }
  if (o.min_bytes > o.max_bytes) {
    *error = "--minbytes (" + std::to_string(o.min_bytes) + ") is above --maxbytes (" +
             std::to_string(o.max_bytes) + ")";
    return ParseResult::kError;
  }
  if (o.experts > 1 && o.backend != Backend::kUcx) {
    *error = "--experts above 1 needs --backend ucx";
    return ParseResult::kError;
  }
  if (o.cudagraph > 0 && o.backend != Backend::kNccl) {
    *error = "-G/--cudagraph needs --backend nccl (host all-to-alls cannot be captured)";
    return ParseResult::kError;
  }
  if (o.cudagraph > 0 && o.op != TimedOp::kBoth) {
    *error = "-G/--cudagraph captures whole dispatch + combine pairs: use it with --op both";
    return ParseResult::kError;
  }
  if (o.mode == LSHMOE_DISPATCH_CENTROIDS && o.op == TimedOp::kDispatch) {
    // Centroid mode's dispatch gives slot means, not rows: its error is the
    // combine's (the identity expert), so it is measured as --op both.
    *error = "--op dispatch has no error of its own in --mode centroids: use --op both or combine";
    return ParseResult::kError;
  }
  *out = o;
  return ParseResult::kRun;
}

double default_max_rel_err(TimedOp op) {
  // The combine with the identity expert gives the rows back but for the
  // rounding of the residual. A dispatch alone gives each row its slot's
  // mean: clustered rows stay below 1.0 of their norm (measured, 1 to 64
  // MiB), while a row delivered to the wrong place is about sqrt(2) away.
  return op == TimedOp::kDispatch ? 1.2 : 0.05;
}

const char* usage_text() {
  return R"(usage: lshmoe_alltoall_perf [flags]   (every rank runs it)
  -b, --minbytes SIZE      smallest size, bytes each rank sends per all-to-all (32M)
  -e, --maxbytes SIZE      largest size (32M)
  -i, --stepbytes SIZE     step between sizes when -f is 1 (1M)
  -f, --stepfactor N       multiply the size by N at each step (1: use -i)
  -n, --iters N            timed iterations per size (20)
  -w, --warmup_iters N     untimed iterations per size (1)
  -m, --agg_iters N        operations per timed iteration (1)
  -c, --check 0|1          check results: raw bit-exact, lshmoe within --max-rel-err (1)
  -d, --datatype T         bfloat16, half or float (bfloat16)
  -a, --average 0|1|2|3    time over ranks: rank 0, mean, min, max (1)
  -J, --output_file F      write every row and the averages to F as JSON
  -G, --cudagraph N        capture an iteration in a CUDA graph, replay N times (nccl)
      --hidden H           elements per row (4096); sizes round down to whole rows
      --experts E          experts per rank (1): each peer's rows split evenly into E
                           parts, each compressed on its own (ucx backend)
      --ratio R            LSHMOE_RATIO of the compressed half (else the environment's)
      --data D             clustered (default), random (i.i.d. Gaussian), or FILE.npy
      --mode M             rows (default) or centroids
      --backend B          ucx (host buffers, default) or nccl (device buffers)
      --op O               what is timed: both (dispatch + combine), dispatch, combine
      --max-rel-err E      per-row bound of the compressed half's check
                           (0.05; 1.2 with --op dispatch)
  -h, --help               this text
Ranks meet as torchrun's do (MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE) or
under mpirun (OMPI_COMM_WORLD_RANK/SIZE; MASTER_ADDR defaults to 127.0.0.1, one
host: set it, e.g. mpirun -x MASTER_ADDR=host0, for several; MASTER_PORT
defaults to one derived from the job's id). Every LSHMOE_* variable applies to
the compressed half; the raw half runs with LSHMOE_ENABLE=0.
)";
}

const char* dtype_label(lshmoe_dtype_t dtype) {
  switch (dtype) {
    case LSHMOE_BFLOAT16:
      return "bfloat16";
    case LSHMOE_FLOAT16:
      return "half";
    case LSHMOE_FLOAT32:
      return "float";
    default:
      return "?";
  }
}

const char* op_label(TimedOp op) {
  switch (op) {
    case TimedOp::kBoth:
      return "both";
    case TimedOp::kDispatch:
      return "dispatch";
    case TimedOp::kCombine:
      return "combine";
  }
  return "?";
}

const char* data_label(DataKind data) {
  switch (data) {
    case DataKind::kClustered:
      return "clustered";
    case DataKind::kRandom:
      return "random";
    case DataKind::kFile:
      return "file";
  }
  return "?";
}

}  // namespace lshmoe::perf
