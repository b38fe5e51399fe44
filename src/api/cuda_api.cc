// The public C API of the CUDA codec: argument checks over src/codec/cuda.
// Built into liblshmoe.so in every build; without CUDA it says so.
#include <memory>

#include "api/api_internal.h"

#if defined(LSHMOE_WITH_CUDA)
#include "codec/cuda/cuda_codec.h"

struct lshmoe_cuda_codec {
  std::unique_ptr<lshmoe::cuda::CudaCodec> impl;
};
struct lshmoe_cuda_ctx {
  lshmoe::cuda::BatchContext impl;
};
#endif

namespace {

using lshmoe::DType;
using lshmoe::fail;
using lshmoe::api::bad_dtype;
using lshmoe::api::guarded;
using lshmoe::api::to_dtype;

#if !defined(LSHMOE_WITH_CUDA)
lshmoe_status_t no_cuda() {
  return fail(LSHMOE_ERR_UNSUPPORTED, "this liblshmoe was built without CUDA");
}
#endif

}  // namespace

extern "C" {

#if defined(LSHMOE_WITH_CUDA)

lshmoe_status_t lshmoe_cuda_codec_create(const lshmoe_config_t* config,
                                         lshmoe_cuda_codec_t** codec) {
  return guarded("lshmoe_cuda_codec_create", [&] {
    if (codec == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "codec must not be NULL");
    auto c = std::make_unique<lshmoe_cuda_codec>();
    LSHMOE_RETURN_IF_ERROR(
        lshmoe::cuda::CudaCodec::create(config ? config->config : lshmoe::Config{}, &c->impl));
    *codec = c.release();
    return LSHMOE_SUCCESS;
  });
}

void lshmoe_cuda_codec_destroy(lshmoe_cuda_codec_t* codec) {
  delete codec;
}

lshmoe_status_t lshmoe_cuda_ctx_create(lshmoe_cuda_ctx_t** ctx) {
  return guarded("lshmoe_cuda_ctx_create", [&] {
    if (ctx == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "ctx must not be NULL");
    *ctx = new lshmoe_cuda_ctx;
    return LSHMOE_SUCCESS;
  });
}

void lshmoe_cuda_ctx_destroy(lshmoe_cuda_ctx_t* ctx) {
  delete ctx;
}

lshmoe_status_t lshmoe_dispatch_encode_async(lshmoe_cuda_codec_t* codec, const void* rows,
                                             const size_t* n_rows, size_t messages,
                                             size_t row_elems, lshmoe_dtype_t dtype, uint64_t seq,
                                             void* wire, const size_t* wire_offsets,
                                             lshmoe_cuda_ctx_t* origin_ctx, void* stream) {
  return guarded("lshmoe_dispatch_encode_async", [&] {
    DType t;
    if (!to_dtype(dtype, &t)) return bad_dtype("lshmoe_dispatch_encode_async", dtype);
    if (codec == nullptr || origin_ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch encode async: codec and ctx required");
    }
    return codec->impl->dispatch_encode(rows, n_rows, messages, row_elems, t, seq, wire,
                                        wire_offsets, &origin_ctx->impl, stream);
  });
}

lshmoe_status_t lshmoe_dispatch_decode_async(lshmoe_cuda_codec_t* codec, const void* wire,
                                             const size_t* wire_offsets, const size_t* n_rows,
                                             size_t messages, size_t row_elems,
                                             lshmoe_dtype_t dtype, uint64_t expected_seq,
                                             void* rows_out, lshmoe_cuda_ctx_t* expert_ctx,
                                             void* stream) {
  return guarded("lshmoe_dispatch_decode_async", [&] {
    DType t;
    if (!to_dtype(dtype, &t)) return bad_dtype("lshmoe_dispatch_decode_async", dtype);
    if (codec == nullptr || expert_ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "dispatch decode async: codec and ctx required");
    }
    return codec->impl->dispatch_decode(wire, wire_offsets, n_rows, messages, row_elems, t,
                                        expected_seq, rows_out, &expert_ctx->impl, stream);
  });
}

lshmoe_status_t lshmoe_combine_encode_async(lshmoe_cuda_codec_t* codec,
                                            const lshmoe_cuda_ctx_t* expert_ctx, const void* rows,
                                            uint64_t seq, void* wire, const size_t* wire_offsets,
                                            void* stream) {
  return guarded("lshmoe_combine_encode_async", [&] {
    if (codec == nullptr || expert_ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine encode async: codec and ctx required");
    }
    return codec->impl->combine_encode(expert_ctx->impl, rows, seq, wire, wire_offsets, stream);
  });
}

lshmoe_status_t lshmoe_combine_decode_async(lshmoe_cuda_codec_t* codec,
                                            const lshmoe_cuda_ctx_t* origin_ctx, const void* wire,
                                            const size_t* wire_offsets, uint64_t expected_seq,
                                            void* rows_out, void* stream) {
  return guarded("lshmoe_combine_decode_async", [&] {
    if (codec == nullptr || origin_ctx == nullptr) {
      return fail(LSHMOE_ERR_INVALID_ARGUMENT, "combine decode async: codec and ctx required");
    }
    return codec->impl->combine_decode(origin_ctx->impl, wire, wire_offsets, expected_seq, rows_out,
                                       stream);
  });
}

lshmoe_status_t lshmoe_cuda_codec_check(lshmoe_cuda_codec_t* codec, void* stream) {
  return guarded("lshmoe_cuda_codec_check", [&] {
    if (codec == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "codec must not be NULL");
    return codec->impl->check_errors(stream);
  });
}

#else  // built without CUDA

lshmoe_status_t lshmoe_cuda_codec_create(const lshmoe_config_t*, lshmoe_cuda_codec_t** codec) {
  if (codec != nullptr) *codec = nullptr;
  return no_cuda();
}
void lshmoe_cuda_codec_destroy(lshmoe_cuda_codec_t*) {}
lshmoe_status_t lshmoe_cuda_ctx_create(lshmoe_cuda_ctx_t** ctx) {
  if (ctx != nullptr) *ctx = nullptr;
  return no_cuda();
}
void lshmoe_cuda_ctx_destroy(lshmoe_cuda_ctx_t*) {}
lshmoe_status_t lshmoe_dispatch_encode_async(lshmoe_cuda_codec_t*, const void*, const size_t*,
                                             size_t, size_t, lshmoe_dtype_t, uint64_t, void*,
                                             const size_t*, lshmoe_cuda_ctx_t*, void*) {
  return no_cuda();
}
lshmoe_status_t lshmoe_dispatch_decode_async(lshmoe_cuda_codec_t*, const void*, const size_t*,
                                             const size_t*, size_t, size_t, lshmoe_dtype_t,
                                             uint64_t, void*, lshmoe_cuda_ctx_t*, void*) {
  return no_cuda();
}
lshmoe_status_t lshmoe_combine_encode_async(lshmoe_cuda_codec_t*, const lshmoe_cuda_ctx_t*,
                                            const void*, uint64_t, void*, const size_t*, void*) {
  return no_cuda();
}
lshmoe_status_t lshmoe_combine_decode_async(lshmoe_cuda_codec_t*, const lshmoe_cuda_ctx_t*,
                                            const void*, const size_t*, uint64_t, void*, void*) {
  return no_cuda();
}
lshmoe_status_t lshmoe_cuda_codec_check(lshmoe_cuda_codec_t*, void*) {
  return no_cuda();
}

#endif

}  // extern "C"
