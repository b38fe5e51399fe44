// The public C API: argument checks and handle plumbing over src/codec.
#include <cstring>
#include <exception>
#include <memory>
#include <new>

#include "api/api_internal.h"
#include "codec/cpu/cpu_codec.h"
#include "codec/wire_format.h"
#include "common/config.h"
#include "common/log.h"
#include "common/status.h"
#include "lshmoe/lshmoe.h"

struct lshmoe_codec {
  std::unique_ptr<lshmoe::cpu::CpuCodec> impl;
};
struct lshmoe_origin_ctx {
  lshmoe::cpu::OriginContext impl;
};
struct lshmoe_expert_ctx {
  lshmoe::cpu::ExpertContext impl;
};

namespace {

using lshmoe::DType;
using lshmoe::fail;
using lshmoe::api::bad_dtype;
using lshmoe::api::guarded;
using lshmoe::api::to_dtype;

}  // namespace

extern "C" {

#define LSHMOE_STR_(x) #x
#define LSHMOE_STR(x) LSHMOE_STR_(x)
const char* lshmoe_version(void) {
  return LSHMOE_STR(LSHMOE_VERSION_MAJOR) "." LSHMOE_STR(LSHMOE_VERSION_MINOR) "." LSHMOE_STR(
      LSHMOE_VERSION_PATCH);
}

const char* lshmoe_strerror(lshmoe_status_t status) {
  return lshmoe::status_string(status);
}

const char* lshmoe_last_error(void) {
  return lshmoe::last_error();
}

size_t lshmoe_dtype_size(lshmoe_dtype_t dtype) {
  DType t;
  return to_dtype(dtype, &t) ? lshmoe::dtype_size(t) : 0;
}

lshmoe_status_t lshmoe_config_create(lshmoe_config_t** config) {
  return guarded("lshmoe_config_create", [&] {
    if (config == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "config must not be NULL");
    *config = new lshmoe_config{};
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_config_from_env(lshmoe_config_t** config) {
  return guarded("lshmoe_config_from_env", [&] {
    if (config == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "config must not be NULL");
    auto c = std::make_unique<lshmoe_config>();
    LSHMOE_RETURN_IF_ERROR(lshmoe::config_from_env(c->config));
    *config = c.release();
    return LSHMOE_SUCCESS;
  });
}

lshmoe_status_t lshmoe_config_set(lshmoe_config_t* config, const char* name, const char* value) {
  return guarded("lshmoe_config_set", [&] {
    if (config == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "config must not be NULL");
    return lshmoe::config_set(config->config, name, value);
  });
}

lshmoe_status_t lshmoe_config_get(const lshmoe_config_t* config, const char* name, char* buf,
                                  size_t buf_size) {
  return guarded("lshmoe_config_get", [&] {
    if (config == nullptr || name == nullptr || buf == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "config_get: config, name and buf are required");
    }
    const lshmoe::ConfigVar* var = lshmoe::config_find(name);
    if (var == nullptr)
      return fail(LSHMOE_ERR_INVALID_CONFIG, "%s is not an lshmoe variable", name);
    const std::string value = var->get(config->config);
    if (value.size() + 1 > buf_size) {
      return fail(LSHMOE_ERR_BUFFER_TOO_SMALL, "config_get: %s needs %zu bytes", name,
                  value.size() + 1);
    }
    memcpy(buf, value.c_str(), value.size() + 1);
    return LSHMOE_SUCCESS;
  });
}

void lshmoe_config_destroy(lshmoe_config_t* config) {
  delete config;
}

lshmoe_status_t lshmoe_codec_create(const lshmoe_config_t* config, lshmoe_codec_t** codec) {
  return guarded("lshmoe_codec_create", [&] {
    if (codec == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "codec must not be NULL");
    auto c = std::make_unique<lshmoe_codec>();
    LSHMOE_RETURN_IF_ERROR(
        lshmoe::cpu::CpuCodec::create(config ? config->config : lshmoe::Config{}, &c->impl));
    *codec = c.release();
    return LSHMOE_SUCCESS;
  });
}

void lshmoe_codec_destroy(lshmoe_codec_t* codec) {
  delete codec;
}

size_t lshmoe_wire_bytes(lshmoe_kind_t kind, size_t n_rows, size_t row_elems, lshmoe_dtype_t dtype,
                         size_t slots) {
  DType t;
  if (!to_dtype(dtype, &t) || (kind < LSHMOE_DISPATCH || kind > LSHMOE_DISPATCH_GRAD)) return 0;
  return lshmoe::wire::checked_wire_bytes(kind, n_rows, row_elems, t, slots);
}

lshmoe_status_t lshmoe_codec_plan(const lshmoe_codec_t* codec, size_t n_rows, size_t row_elems,
                                  lshmoe_dtype_t dtype, lshmoe_plan_t* plan) {
  return guarded("lshmoe_codec_plan", [&] {
    DType t;
    if (codec == nullptr || plan == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "codec_plan: codec and plan are required");
    }
    if (!to_dtype(dtype, &t)) return bad_dtype("codec_plan", dtype);
    return codec->impl->plan(n_rows, row_elems, t, plan);
  });
}

lshmoe_status_t lshmoe_origin_ctx_create(lshmoe_origin_ctx_t** ctx) {
  return guarded("lshmoe_origin_ctx_create", [&] {
    if (ctx == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "ctx must not be NULL");
    *ctx = new lshmoe_origin_ctx{};
    return LSHMOE_SUCCESS;
  });
}
void lshmoe_origin_ctx_destroy(lshmoe_origin_ctx_t* ctx) {
  delete ctx;
}

lshmoe_status_t lshmoe_expert_ctx_create(lshmoe_expert_ctx_t** ctx) {
  return guarded("lshmoe_expert_ctx_create", [&] {
    if (ctx == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "ctx must not be NULL");
    *ctx = new lshmoe_expert_ctx{};
    return LSHMOE_SUCCESS;
  });
}
void lshmoe_expert_ctx_destroy(lshmoe_expert_ctx_t* ctx) {
  delete ctx;
}

lshmoe_status_t lshmoe_dispatch_encode(lshmoe_codec_t* codec, const void* rows, size_t n_rows,
                                       size_t row_elems, lshmoe_dtype_t dtype, uint64_t seq,
                                       void* wire, size_t wire_capacity, lshmoe_origin_ctx_t* ctx) {
  return guarded("lshmoe_dispatch_encode", [&] {
    DType t;
    if (codec == nullptr || ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch encode: codec and ctx are required");
    }
    if (!to_dtype(dtype, &t)) return bad_dtype("dispatch encode", dtype);
    return codec->impl->dispatch_encode(rows, n_rows, row_elems, t, seq, wire, wire_capacity,
                                        &ctx->impl);
  });
}

lshmoe_status_t lshmoe_dispatch_decode(lshmoe_codec_t* codec, const void* wire, size_t wire_size,
                                       size_t n_rows, size_t row_elems, lshmoe_dtype_t dtype,
                                       uint64_t expected_seq, void* rows_out,
                                       lshmoe_expert_ctx_t* ctx) {
  return guarded("lshmoe_dispatch_decode", [&] {
    DType t;
    if (codec == nullptr || ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch decode: codec and ctx are required");
    }
    if (!to_dtype(dtype, &t)) return bad_dtype("dispatch decode", dtype);
    return codec->impl->dispatch_decode(wire, wire_size, n_rows, row_elems, t, expected_seq,
                                        rows_out, &ctx->impl);
  });
}

lshmoe_status_t lshmoe_combine_encode(lshmoe_codec_t* codec, const lshmoe_expert_ctx_t* ctx,
                                      const void* rows, uint64_t seq, void* wire,
                                      size_t wire_capacity) {
  return guarded("lshmoe_combine_encode", [&] {
    if (codec == nullptr || ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine encode: codec and ctx are required");
    }
    return codec->impl->combine_encode(ctx->impl, rows, seq, wire, wire_capacity);
  });
}

lshmoe_status_t lshmoe_combine_decode(lshmoe_codec_t* codec, const lshmoe_origin_ctx_t* ctx,
                                      const void* wire, size_t wire_size, uint64_t expected_seq,
                                      void* rows_out) {
  return guarded("lshmoe_combine_decode", [&] {
    if (codec == nullptr || ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine decode: codec and ctx are required");
    }
    return codec->impl->combine_decode(ctx->impl, wire, wire_size, expected_seq, rows_out);
  });
}

lshmoe_status_t lshmoe_codec_stats(const lshmoe_codec_t* codec, lshmoe_stats_t* stats) {
  return guarded("lshmoe_codec_stats", [&] {
    if (codec == nullptr || stats == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "codec_stats: codec and stats are required");
    }
    *stats = codec->impl->stats();
    return LSHMOE_SUCCESS;
  });
}

void lshmoe_codec_reset_stats(lshmoe_codec_t* codec) {
  if (codec != nullptr) codec->impl->reset_stats();
}

}  // extern "C"
