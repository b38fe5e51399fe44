// What the shim reads of the configuration, once per process, and the
// per-message rule that makes a message a candidate for compression: only
// facts both of its ends know (row length, dtype, count, configuration).
#pragma once

#include <nccl.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>

#include "common/config.h"
#include "common/dtype.h"
#include "transport/nccl/nccl_ops.h"

namespace lshmoe::interpose {

using transport::nccl_type_size;

// The variables whose values every rank must share (they decide sizes,
// pairing and the wire); the others (logging, threads, timeouts) may differ.
inline constexpr size_t kMaxFingerprint = 32;
using Fingerprint = std::array<uint32_t, kMaxFingerprint>;

struct ShimSettings {
  Config config;
  bool compress = false;  // LSHMOE_ENABLE and LSHMOE_HIDDEN set
  uint32_t dtypes = 0;    // shim_dtype_mask
  CommSelection comms;
  bool remote_only = false;
  bool regroup = true;          // LSHMOE_COMBINE=regroup
  bool exact_backward = false;  // LSHMOE_BACKWARD=exact
  Fingerprint fingerprint{};
};

// From the environment; an invalid variable is an error that names it.
Status shim_settings_from_env(ShimSettings* out);
// The values of the shared variables, hashed one by one (table order).
Fingerprint settings_fingerprint(const Config& config);
// The name of the shared variable at `index` of a fingerprint.
const char* fingerprint_name(size_t index);

std::optional<DType> to_dtype(ncclDataType_t type);

// Rows of a message of `count` elements of `type` when it is a candidate
// (whole rows of LSHMOE_HIDDEN of a dtype the shim compresses), else 0.
size_t candidate_rows(const ShimSettings& s, size_t count, ncclDataType_t type);

}  // namespace lshmoe::interpose
