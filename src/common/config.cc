#include "common/config.h"

#include <bit>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string_view>

#include "common/dtype.h"

namespace lshmoe {
namespace {

Status invalid(const ConfigVar& var, const char* text) {
  return fail(LSHMOE_ERR_INVALID_CONFIG, "%s=\"%s\" is invalid: expected %s", var.name, text,
              var.type);
}

bool parse_bool(const char* text, bool* out) {
  const std::string_view s(text);
  if (s == "1" || s == "true" || s == "yes" || s == "on") return *out = true, true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return *out = false, true;
  return false;
}

bool parse_int(const char* text, int64_t* out) {
  if (*text == '\0') return false;
  // Decimal, or hexadecimal with 0x (never octal: "010" is ten).
  const bool hex = text[0] == '0' && (text[1] == 'x' || text[1] == 'X');
  errno = 0;
  char* end = nullptr;
  const long long v = strtoll(text, &end, hex ? 16 : 10);
  if (errno != 0 || *end != '\0') return false;
  *out = v;
  return true;
}

bool parse_double(const char* text, double* out) {
  if (*text == '\0') return false;
  errno = 0;
  char* end = nullptr;
  const double v = strtod(text, &end);
  if (errno != 0 || *end != '\0' || !std::isfinite(v)) return false;
  *out = v;
  return true;
}

bool in_list(const char* text, const char* choices) {
  const std::string_view s(text), all(choices);
  size_t pos = 0;
  while (pos <= all.size()) {
    size_t bar = all.find('|', pos);
    if (bar == std::string_view::npos) bar = all.size();
    if (all.substr(pos, bar - pos) == s) return true;
    pos = bar + 1;
  }
  return false;
}

template <bool Config::*M>
Status set_bool(Config& c, const ConfigVar& v, const char* t) {
  bool b;
  if (!parse_bool(t, &b)) return invalid(v, t);
  c.*M = b;
  return LSHMOE_SUCCESS;
}
template <bool Config::*M>
std::string get_bool(const Config& c) {
  return c.*M ? "1" : "0";
}

template <int64_t Config::*M, int64_t Lo, int64_t Hi>
Status set_int(Config& c, const ConfigVar& v, const char* t) {
  int64_t x;
  if (!parse_int(t, &x) || x < Lo || x > Hi) return invalid(v, t);
  c.*M = x;
  return LSHMOE_SUCCESS;
}
template <int64_t Config::*M>
std::string get_int(const Config& c) {
  return std::to_string(c.*M);
}

Status set_proj_dim(Config& c, const ConfigVar& v, const char* t) {
  int64_t x;
  if (!parse_int(t, &x) || x < 1 || x > 32 || (x & (x - 1)) != 0) return invalid(v, t);
  c.proj_dim = x;
  return LSHMOE_SUCCESS;
}

// Bounds are (lo, hi] when LoOpen, else [lo, hi]; in tenths to fit a template.
template <double Config::*M, int LoTenths, int HiTenths, bool LoOpen>
Status set_double(Config& c, const ConfigVar& v, const char* t) {
  double x;
  const double lo = LoTenths / 10.0, hi = HiTenths / 10.0;
  if (!parse_double(t, &x) || x > hi || (LoOpen ? x <= lo : x < lo)) return invalid(v, t);
  c.*M = x;
  return LSHMOE_SUCCESS;
}
template <double Config::*M>
std::string get_double(const Config& c) {
  // Shortest text that reads back as the same double.
  char buf[32];
  const auto result = std::to_chars(buf, buf + sizeof(buf), c.*M);
  return std::string(buf, result.ptr);
}

template <std::string Config::*M>
Status set_string(Config& c, const ConfigVar&, const char* t) {
  c.*M = t;
  return LSHMOE_SUCCESS;
}
template <std::string Config::*M>
std::string get_string(const Config& c) {
  return c.*M;
}

Status set_debug(Config& c, const ConfigVar& v, const char* t) {
  if (!in_list(t, "WARN|INFO|TRACE")) return invalid(v, t);
  c.debug = t;
  return LSHMOE_SUCCESS;
}

Status set_cpu_isa(Config& c, const ConfigVar& v, const char* t) {
  if (!in_list(t, "auto|avx512bf16|avx2|scalar")) return invalid(v, t);
  c.cpu_isa = t;
  return LSHMOE_SUCCESS;
}

bool parse_dtype_list(const char* text, uint32_t* mask) {
  *mask = 0;
  const std::string_view all(text);
  size_t pos = 0;
  while (pos < all.size()) {
    size_t comma = all.find(',', pos);
    if (comma == std::string_view::npos) comma = all.size();
    const std::string_view item = all.substr(pos, comma - pos);
    if (item == "fp32") {
      *mask |= 1u << unsigned(DType::kFloat32);
    } else if (item == "fp16") {
      *mask |= 1u << unsigned(DType::kFloat16);
    } else if (item == "bf16") {
      *mask |= 1u << unsigned(DType::kBFloat16);
    } else {
      return false;
    }
    pos = comma + 1;
  }
  return true;
}

Status set_dtypes(Config& c, const ConfigVar& v, const char* t) {
  uint32_t mask;
  if (strcmp(t, "auto") != 0 && !parse_dtype_list(t, &mask)) return invalid(v, t);
  c.dtypes = t;
  return LSHMOE_SUCCESS;
}

// "all", "size:N[,N...]" or "index:I[,I...]" (non-negative integers).
bool parse_comm_selection(const char* text, CommSelection* out) {
  CommSelection sel;
  const std::string_view s(text);
  if (s == "all") return *out = sel, true;
  std::string_view list;
  if (s.substr(0, 5) == "size:") {
    sel.by = CommSelection::By::kSize;
    list = s.substr(5);
  } else if (s.substr(0, 6) == "index:") {
    sel.by = CommSelection::By::kIndex;
    list = s.substr(6);
  } else {
    return false;
  }
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string_view::npos) comma = list.size();
    const std::string item(list.substr(pos, comma - pos));
    int64_t v = 0;
    if (!parse_int(item.c_str(), &v) || v < 0) return false;
    sel.values.push_back(v);
    pos = comma + 1;
  }
  *out = std::move(sel);
  return true;
}

Status set_comms(Config& c, const ConfigVar& v, const char* t) {
  CommSelection sel;
  if (!parse_comm_selection(t, &sel)) return invalid(v, t);
  c.comms = t;
  return LSHMOE_SUCCESS;
}

template <std::string Config::*M, const char* Choices>
Status set_choice(Config& c, const ConfigVar& v, const char* t) {
  if (!in_list(t, Choices)) return invalid(v, t);
  c.*M = t;
  return LSHMOE_SUCCESS;
}
constexpr char kPeerChoices[] = "all|remote";
constexpr char kProjectionChoices[] = "sparse|gaussian";
constexpr char kBackwardChoices[] = "raw|exact";
constexpr char kCombineChoices[] = "regroup|slots";

constexpr int64_t kMaxInt = int64_t(1) << 40;

// clang-format off
const ConfigVar kVars[] = {
  {"LSHMOE_ENABLE", "0 or 1",
   "Compress eligible messages (0: everything travels raw).",
   set_bool<&Config::enable>, get_bool<&Config::enable>},
  {"LSHMOE_RATIO", "a number in (0, 1]",
   "Budget: a message of n rows gets K = ceil(ratio * n) slots on the wire.",
   set_double<&Config::ratio, 0, 10, true>, get_double<&Config::ratio>},
  {"LSHMOE_HASHES", "an integer in [1, 16]",
   "Number of cross-polytope hash tables T.",
   set_int<&Config::hashes, 1, 16>, get_int<&Config::hashes>},
  {"LSHMOE_PROJ_DIM", "a power of two in [1, 32]",
   "Projection dimension d of each table; a code has log2(2d) bits.",
   set_proj_dim, get_int<&Config::proj_dim>},
  {"LSHMOE_SEED", "an integer in [0, 2^40]",
   "Seed of the projection matrices (must match on all ranks).",
   set_int<&Config::seed, 0, kMaxInt>, get_int<&Config::seed>},
  {"LSHMOE_PROJECTION", "one of sparse, gaussian",
   "Hash projection: sparse (LSHMOE_PROJ_NNZ entries of +1 or -1 per output, one in each of as "
   "many blocks of the row: additions only) or gaussian (dense N(0, 1) entries, the paper's).",
   set_choice<&Config::projection, kProjectionChoices>, get_string<&Config::projection>},
  {"LSHMOE_PROJ_NNZ", "an integer in [1, 2^20]",
   "Nonzeros of each sparse projection output (rows shorter than this use all their elements).",
   set_int<&Config::proj_nnz, 1, 1 << 20>, get_int<&Config::proj_nnz>},
  {"LSHMOE_CENTER", "0 or 1",
   "Hash centred rows x - mean (0: the paper's plain hashing).",
   set_bool<&Config::center>, get_bool<&Config::center>},
  {"LSHMOE_SPARE_SLOTS", "0 or 1",
   "Fill unused slots with exact copies of the worst-residual rows.",
   set_bool<&Config::spare_slots>, get_bool<&Config::spare_slots>},
  {"LSHMOE_REFINE", "an integer in [0, 16]",
   "Lloyd iterations seeded by the LSH groups (nearest centroid in projected space).",
   set_int<&Config::refine, 0, 16>, get_int<&Config::refine>},
  {"LSHMOE_REFINE_PROBES", "an integer in [0, 31]",
   "Lloyd search (CPU): a row is compared with its own slot and the slots whose mean falls in "
   "one of its P likeliest first-table buckets (about P / (2 * LSHMOE_PROJ_DIM) of them); 0, or "
   "P >= LSHMOE_PROJ_DIM: every slot.",
   set_int<&Config::refine_probes, 0, 31>, get_int<&Config::refine_probes>},
  {"LSHMOE_MIN_ROWS", "an integer in [1, 2^40]",
   "Messages with fewer rows travel raw.",
   set_int<&Config::min_rows, 1, kMaxInt>, get_int<&Config::min_rows>},
  {"LSHMOE_HIDDEN", "an integer in [0, 2^40]",
   "Row length (elements) of the messages to compress; 0: any row length.",
   set_int<&Config::hidden, 0, kMaxInt>, get_int<&Config::hidden>},
  {"LSHMOE_DTYPES", "auto, or a comma-separated list of bf16, fp16, fp32",
   "Element types that may be compressed; auto: all three through the C API, bf16 and fp16 "
   "through the shim (whose fp32 all-to-alls carry routing weights).",
   set_dtypes, get_string<&Config::dtypes>},
  {"LSHMOE_COMPENSATE", "a number in [0, 1]",
   "Residual compensation alpha on combine: y = E(c) + alpha * (x - c).",
   set_double<&Config::compensate, 0, 10, false>, get_double<&Config::compensate>},
  {"LSHMOE_NET_IF", "a comma-separated list of interface names",
   "Net plugin: interfaces it offers, names or prefixes (empty: UCX_NET_DEVICES, else all up "
   "but loopback and docker).",
   set_string<&Config::net_if>, get_string<&Config::net_if>},
  {"LSHMOE_NET_COMPRESS", "0 or 1",
   "Net plugin: lossy compression of messages of whole rows (needs LSHMOE_HIDDEN and one "
   "LSHMOE_DTYPES).",
   set_bool<&Config::net_compress>, get_bool<&Config::net_compress>},
  {"LSHMOE_VERIFY", "0 or 1",
   "Payload checksums and sequence checks on every message.",
   set_bool<&Config::verify>, get_bool<&Config::verify>},
  {"LSHMOE_DEBUG", "one of WARN, INFO, TRACE",
   "Log level; lines go to stderr prefixed 'lshmoe'.",
   set_debug, get_string<&Config::debug>},
  {"LSHMOE_STATS", "0 or 1",
   "Print a codec's or communicator's counters when it is destroyed.",
   set_bool<&Config::stats>, get_bool<&Config::stats>},
  {"LSHMOE_STATS_FILE", "a file path",
   "Append the counters to this file instead of stderr.",
   set_string<&Config::stats_file>, get_string<&Config::stats_file>},
  {"LSHMOE_TIMEOUT_MS", "an integer in [1, 86400000]",
   "How long a communicator waits for its peers (bootstrap, dispatch, combine) before failing.",
   set_int<&Config::timeout_ms, 1, 86400000>, get_int<&Config::timeout_ms>},
  {"LSHMOE_CPU_THREADS", "an integer in [0, 256]",
   "Worker threads of a CPU codec; 0: min(4, hardware threads).",
   set_int<&Config::cpu_threads, 0, 256>, get_int<&Config::cpu_threads>},
  {"LSHMOE_CPU_ISA", "one of auto, avx512bf16, avx2, scalar",
   "CPU kernels: auto takes AVX-512 BF16 (bf16 projection), else AVX2+FMA+F16C, else scalar.",
   set_cpu_isa, get_string<&Config::cpu_isa>},
  {"LSHMOE_COMMS", "all, size:N[,N...] or index:I[,I...]",
   "Shim: communicators to compress: all, those of these sizes, or those created at these "
   "indices (0: the process's first ncclCommInit* or ncclCommSplit).",
   set_comms, get_string<&Config::comms>},
  {"LSHMOE_PEERS", "one of all, remote",
   "Shim: peers to compress to: all, or only those on another host (NVLink peers gain little).",
   set_choice<&Config::peers, kPeerChoices>, get_string<&Config::peers>},
  {"LSHMOE_BACKWARD", "one of raw, exact",
   "Shim: calls from a thread other than a communicator's forward thread (PyTorch's backward): "
   "raw passes them untouched; exact sends the exact gradient of each compressed pair (K rows "
   "each way, host buffers), matched to the kept forward pairs last in first out, and "
   "compresses replayed forwards (activation recomputation) as such.",
   set_choice<&Config::backward, kBackwardChoices>, get_string<&Config::backward>},
  {"LSHMOE_MAX_OPEN", "an integer in [1, 65536]",
   "Shim: open dispatches kept per ordered pair of ranks; past it the oldest is dropped.",
   set_int<&Config::max_open, 1, 65536>, get_int<&Config::max_open>},
  {"LSHMOE_COMBINE", "one of regroup, slots",
   "Shim: how combines travel: regroup (expert outputs grouped afresh: right whatever experts a "
   "rank hosts) or slots (one output per dispatch slot: wrong when a slot's rows went to "
   "different experts of a rank).",
   set_choice<&Config::combine, kCombineChoices>, get_string<&Config::combine>},
};
// clang-format on

}  // namespace

std::span<const ConfigVar> config_vars() {
  return kVars;
}

const ConfigVar* config_find(const char* name) {
  for (const ConfigVar& v : kVars) {
    if (strcmp(v.name, name) == 0) return &v;
  }
  return nullptr;
}

Status config_set(Config& config, const char* name, const char* text) {
  if (name == nullptr || text == nullptr) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "config_set: name and value must not be NULL");
  }
  const ConfigVar* var = config_find(name);
  if (var == nullptr) {
    return fail(LSHMOE_ERR_INVALID_CONFIG, "%s is not an lshmoe variable (see lshmoe_info)", name);
  }
  Config candidate = config;
  LSHMOE_RETURN_IF_ERROR(var->set(candidate, *var, text));
  config = std::move(candidate);
  return LSHMOE_SUCCESS;
}

Status config_from_env(Config& config) {
  Config candidate;
  for (const ConfigVar& v : kVars) {
    const char* text = getenv(v.name);
    if (text != nullptr) LSHMOE_RETURN_IF_ERROR(v.set(candidate, v, text));
  }
  LSHMOE_RETURN_IF_ERROR(config_validate(candidate));
  config = std::move(candidate);
  return LSHMOE_SUCCESS;
}

// A cross-polytope code of dimension d has log2(2d) bits (d a power of two).
int key_bits(const Config& config) {
  return int(config.hashes) * int(std::bit_width(uint64_t(config.proj_dim)));
}

Status config_validate(const Config& config) {
  if (key_bits(config) > 64) {
    return fail(LSHMOE_ERR_INVALID_CONFIG,
                "LSHMOE_HASHES=%lld with LSHMOE_PROJ_DIM=%lld needs a %d-bit key: expected "
                "LSHMOE_HASHES * log2(2 * LSHMOE_PROJ_DIM) <= 64",
                static_cast<long long>(config.hashes), static_cast<long long>(config.proj_dim),
                key_bits(config));
  }
  return LSHMOE_SUCCESS;
}

uint32_t dtype_mask(const Config& config) {
  uint32_t mask = 0;
  if (config.dtypes == "auto") return 0x7u << unsigned(DType::kFloat32);
  parse_dtype_list(config.dtypes.c_str(), &mask);
  return mask;
}

uint32_t shim_dtype_mask(const Config& config) {
  if (config.dtypes != "auto") return dtype_mask(config);
  return (1u << unsigned(DType::kFloat16)) | (1u << unsigned(DType::kBFloat16));
}

bool CommSelection::selects(int64_t size, int64_t index) const {
  if (by == By::kAll) return true;
  const int64_t key = by == By::kSize ? size : index;
  for (int64_t v : values) {
    if (v == key) return true;
  }
  return false;
}

CommSelection comm_selection(const Config& config) {
  CommSelection sel;
  parse_comm_selection(config.comms.c_str(), &sel);  // validated when set
  return sel;
}

}  // namespace lshmoe
