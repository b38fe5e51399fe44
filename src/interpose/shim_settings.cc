#include "interpose/shim_settings.h"

#include <cstring>

namespace lshmoe::interpose {
namespace {

// Variables a rank may set on its own.
bool is_local(const char* name) {
  for (const char* local :
       {"LSHMOE_DEBUG", "LSHMOE_STATS", "LSHMOE_STATS_FILE", "LSHMOE_TIMEOUT_MS",
        "LSHMOE_CPU_THREADS", "LSHMOE_CPU_ISA", "LSHMOE_NET_IF", "LSHMOE_NET_COMPRESS"}) {
    if (strcmp(name, local) == 0) return true;
  }
  return false;
}

uint32_t fnv1a(const std::string& s) {
  uint32_t h = 2166136261u;
  for (unsigned char c : s) h = (h ^ c) * 16777619u;
  return h;
}

}  // namespace

Fingerprint settings_fingerprint(const Config& config) {
  Fingerprint f{};
  size_t i = 0;
  for (const ConfigVar& v : config_vars()) {
    if (is_local(v.name)) continue;
    if (i < kMaxFingerprint) f[i++] = fnv1a(v.get(config));
  }
  return f;
}

const char* fingerprint_name(size_t index) {
  size_t i = 0;
  for (const ConfigVar& v : config_vars()) {
    if (is_local(v.name)) continue;
    if (i++ == index) return v.name;
  }
  return "(unknown)";
}

Status shim_settings_from_env(ShimSettings* out) {
  ShimSettings s;
  LSHMOE_RETURN_IF_ERROR(config_from_env(s.config));
  s.compress = s.config.enable && s.config.hidden > 0;
  s.dtypes = shim_dtype_mask(s.config);
  s.comms = comm_selection(s.config);
  s.remote_only = s.config.peers == "remote";
  s.regroup = s.config.combine == "regroup";
  s.exact_backward = s.config.backward == "exact";
  s.fingerprint = settings_fingerprint(s.config);
  *out = std::move(s);
  return LSHMOE_SUCCESS;
}

std::optional<DType> to_dtype(ncclDataType_t type) {
  switch (type) {
    case ncclFloat32:
      return DType::kFloat32;
    case ncclFloat16:
      return DType::kFloat16;
    case ncclBfloat16:
      return DType::kBFloat16;
    default:
      return std::nullopt;
  }
}

size_t candidate_rows(const ShimSettings& s, size_t count, ncclDataType_t type) {
  if (!s.compress) return 0;
  const std::optional<DType> t = to_dtype(type);
  if (!t || ((s.dtypes >> unsigned(*t)) & 1u) == 0) return 0;
  const size_t h = size_t(s.config.hidden);
  if (count == 0 || count % h != 0) return 0;
  return count / h;
}

}  // namespace lshmoe::interpose
