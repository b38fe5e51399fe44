// LSHMOE_NET_COMPRESS on the plugin's requests: the transport moves bytes
// and one mark per message; this layer compresses the sends of host memory
// that the compressor accepts, marks them, and decodes marked receives into
// the caller's buffer. A compressing net's requests are CompressedRequests
// wrapping the transport's.
#pragma once

#include <memory>
#include <mutex>

#include "common/config.h"
#include "exchange/net_compressor.h"
#include "transport/ucx/ucx_net.h"

namespace lshmoe::plugin {

class NetCompression {
 public:
  // *out stays NULL when the configuration does not ask for compression;
  // fails naming the variables when it does but lacks the row shape.
  static Status create(const Config& config, std::unique_ptr<NetCompression>* out);

  // As transport::net's; *request is NULL when the comm is full (try again).
  Status isend(transport::net::SendComm* comm, const void* data, size_t size, int tag,
               bool host_memory, void** request);
  Status irecv(transport::net::RecvComm* comm, void* data, size_t capacity, int tag,
               void** request);
  // Once *done, *size is the logical size (the sender's rows, decoded).
  Status test(void* request, bool* done, size_t* size);

 private:
  NetCompression() = default;
  std::mutex mu_;  // the compressor is not reentrant; NCCL may test from several threads
  std::unique_ptr<exchange::NetCompressor> compressor_;
};

// What a net without compression does with a marked message.
Status refuse_marked(size_t size);

}  // namespace lshmoe::plugin
