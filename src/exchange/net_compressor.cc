#include "exchange/net_compressor.h"

#include <cstring>

#include "codec/wire_format.h"

namespace lshmoe::exchange {

Status NetCompressor::create(const Config& config, std::unique_ptr<NetCompressor>* out) {
  const uint32_t mask = dtype_mask(config);
  if (config.hidden <= 0 || mask == 0 || (mask & (mask - 1)) != 0) {
    return fail(LSHMOE_ERR_INVALID_CONFIG,
                "LSHMOE_NET_COMPRESS=1 needs the row shape: LSHMOE_HIDDEN > 0 (it is %lld) and "
                "LSHMOE_DTYPES naming one dtype (it is \"%s\")",
                static_cast<long long>(config.hidden), config.dtypes.c_str());
  }
  std::unique_ptr<NetCompressor> c(new NetCompressor());
  c->row_elems_ = size_t(config.hidden);
  c->dtype_ = DType(__builtin_ctz(mask));
  c->row_bytes_ = c->row_elems_ * dtype_size(c->dtype_);
  Config codec_config = config;
  codec_config.stats = false;
  LSHMOE_RETURN_IF_ERROR(cpu::CpuCodec::create(codec_config, &c->codec_));
  *out = std::move(c);
  return LSHMOE_SUCCESS;
}

bool NetCompressor::wants(size_t bytes) const {
  if (bytes == 0 || bytes % row_bytes_ != 0) return false;
  lshmoe_plan_t plan;
  return codec_->plan(bytes / row_bytes_, row_elems_, dtype_, &plan) == LSHMOE_SUCCESS &&
         plan.compressed;
}

Status NetCompressor::encode(const void* data, size_t bytes, std::vector<uint8_t>* wire) {
  const size_t n = bytes / row_bytes_;
  lshmoe_plan_t plan;
  LSHMOE_RETURN_IF_ERROR(codec_->plan(n, row_elems_, dtype_, &plan));
  wire->resize(plan.dispatch_bytes);
  return codec_->dispatch_encode(data, n, row_elems_, dtype_, 0, wire->data(), wire->size(),
                                 &origin_);
}

Status NetCompressor::decode(const void* wire, size_t wire_bytes, void* out, size_t capacity,
                             size_t* bytes) {
  if (wire_bytes < wire::kHeaderBytes) {
    return fail(LSHMOE_ERR_WIRE_TRUNCATED, "net: a compressed message of %zu bytes", wire_bytes);
  }
  wire::Header h;
  memcpy(&h, wire, sizeof(h));
  const size_t n = h.n_rows;
  if (n == 0 || n > capacity / row_bytes_) {
    return fail(LSHMOE_ERR_WIRE_SIZE_MISMATCH,
                "net: a compressed message of %zu rows of %zu bytes, the receive holds %zu bytes",
                n, row_bytes_, capacity);
  }
  // The decoder checks the header against the plan for n rows, and the rest.
  LSHMOE_RETURN_IF_ERROR(codec_->dispatch_decode(wire, wire_bytes, n, row_elems_, dtype_,
                                                 LSHMOE_SEQ_ANY, out, &expert_));
  *bytes = n * row_bytes_;
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::exchange
