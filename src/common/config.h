// Every LSHMOE_* variable, declared once in one table (name, type, default,
// range, doc). Parsing, validation, README's table and lshmoe_info all come
// from that table.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/status.h"

namespace lshmoe {

// Member initializers are the defaults (docs print them with ConfigVar::get).
struct Config {
  bool enable = true;
  double ratio = 0.2;
  int64_t hashes = 6;
  int64_t proj_dim = 8;
  int64_t seed = 0x15a3e;
  std::string projection = "sparse";
  int64_t proj_nnz = 64;
  bool center = true;
  bool spare_slots = true;
  int64_t refine = 1;
  int64_t refine_probes = 3;
  int64_t min_rows = 32;
  int64_t hidden = 0;
  std::string dtypes = "auto";
  double compensate = 1.0;
  std::string net_if;
  bool net_compress = false;
  bool verify = false;
  std::string debug = "WARN";
  bool stats = false;
  std::string stats_file;
  int64_t timeout_ms = 300000;
  int64_t cpu_threads = 0;
  std::string cpu_isa = "auto";
  std::string comms = "all";
  std::string peers = "all";
  std::string backward = "raw";
  int64_t max_open = 8;
  std::string combine = "regroup";
};

struct ConfigVar {
  const char* name;
  const char* type;  // the allowed values, as printed in errors and docs
  const char* doc;
  Status (*set)(Config& config, const ConfigVar& var, const char* text);
  std::string (*get)(const Config& config);
};

std::span<const ConfigVar> config_vars();

const ConfigVar* config_find(const char* name);

// Parses and range-checks `text` for variable `name`; on error `config` is unchanged.
Status config_set(Config& config, const char* name, const char* text);

// Defaults overridden by every LSHMOE_* variable set in the environment, then
// cross-checked; the first invalid value fails naming the variable.
Status config_from_env(Config& config);

// Checks the rules that involve several variables.
Status config_validate(const Config& config);

// Bits of the bucket key: hashes * log2(2 * proj_dim).
int key_bits(const Config& config);

// Bit i set when DType(i) is listed in LSHMOE_DTYPES; "auto" lists all three.
uint32_t dtype_mask(const Config& config);
// The same for the shim, where "auto" leaves fp32 out: unmodified jobs send
// activations in bf16 or fp16, and their fp32 all-to-alls carry routing
// weights that must stay exact.
uint32_t shim_dtype_mask(const Config& config);

// LSHMOE_COMMS: which communicators the shim compresses.
struct CommSelection {
  enum class By { kAll, kSize, kIndex } by = By::kAll;
  std::vector<int64_t> values;  // sizes or creation indices
  bool selects(int64_t size, int64_t index) const;
};
CommSelection comm_selection(const Config& config);

}  // namespace lshmoe
