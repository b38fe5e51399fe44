#include "net_compression.h"

#include <vector>

namespace lshmoe::plugin {
namespace {

namespace net = transport::net;

struct CompressedRequest {
  net::Request* inner = nullptr;
  bool receive = false;
  void* buffer = nullptr;     // a receive's destination
  size_t capacity = 0;        // its size
  std::vector<uint8_t> wire;  // a send's compressed message; a receive's copy of one
};

}  // namespace

Status refuse_marked(size_t size) {
  return fail(LSHMOE_ERR_WIRE_BAD_KIND,
              "net: a compressed message (%zu bytes) arrived but LSHMOE_NET_COMPRESS is off here",
              size);
}

Status NetCompression::create(const Config& config, std::unique_ptr<NetCompression>* out) {
  out->reset();
  if (!config.net_compress) return LSHMOE_SUCCESS;
  std::unique_ptr<NetCompression> c(new NetCompression());
  LSHMOE_RETURN_IF_ERROR(exchange::NetCompressor::create(config, &c->compressor_));
  *out = std::move(c);
  return LSHMOE_SUCCESS;
}

Status NetCompression::isend(net::SendComm* comm, const void* data, size_t size, int tag,
                             bool host_memory, void** request) {
  *request = nullptr;
  // A full comm makes NCCL try again: encode only a send that can be posted.
  if (!net::can_send(comm)) return LSHMOE_SUCCESS;
  auto r = std::make_unique<CompressedRequest>();
  const void* payload = data;
  size_t bytes = size;
  const bool compress = host_memory && compressor_->wants(size);
  if (compress) {
    std::lock_guard<std::mutex> lock(mu_);
    LSHMOE_RETURN_IF_ERROR(compressor_->encode(data, size, &r->wire));
    payload = r->wire.data();
    bytes = r->wire.size();
  }
  r->capacity = size;  // reported once the send is done
  LSHMOE_RETURN_IF_ERROR(net::isend(comm, payload, bytes, tag, compress, &r->inner));
  if (r->inner != nullptr) *request = r.release();
  return LSHMOE_SUCCESS;
}

Status NetCompression::irecv(net::RecvComm* comm, void* data, size_t capacity, int tag,
                             void** request) {
  *request = nullptr;
  auto r = std::make_unique<CompressedRequest>();
  r->receive = true;
  r->buffer = data;
  r->capacity = capacity;
  LSHMOE_RETURN_IF_ERROR(net::irecv(comm, data, capacity, tag, &r->inner));
  if (r->inner != nullptr) *request = r.release();
  return LSHMOE_SUCCESS;
}

Status NetCompression::test(void* request, bool* done, size_t* size) {
  auto* r = static_cast<CompressedRequest*>(request);
  if (r == nullptr) return fail(LSHMOE_ERR_INVALID_ARGUMENT, "net: test of a NULL request");
  bool marked = false;
  size_t bytes = 0;
  Status s = net::test(r->inner, done, &bytes, &marked);
  if (s == LSHMOE_SUCCESS && !*done) return LSHMOE_SUCCESS;
  std::unique_ptr<CompressedRequest> finished(r);  // released, whatever the outcome
  if (s != LSHMOE_SUCCESS) return s;
  if (!r->receive) {
    *size = r->capacity;  // a send: the caller's size, whatever went on the wire
  } else if (marked) {
    // The compressed message landed in the caller's buffer: decode it from
    // a copy (the rows take more room than the wire).
    const auto* landed = static_cast<const uint8_t*>(r->buffer);
    r->wire.assign(landed, landed + bytes);
    std::lock_guard<std::mutex> lock(mu_);
    s = compressor_->decode(r->wire.data(), r->wire.size(), r->buffer, r->capacity, size);
    if (s != LSHMOE_SUCCESS) *done = false;
    return s;
  } else {
    *size = bytes;
  }
  return LSHMOE_SUCCESS;
}

}  // namespace lshmoe::plugin
