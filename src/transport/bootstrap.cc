#include "transport/bootstrap.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>

#include "common/log.h"

namespace lshmoe::transport {
namespace {

using Clock = std::chrono::steady_clock;

constexpr uint32_t kMagic = 0x424d534cu;  // "LSMB"
constexpr uint32_t kVersion = 1;

// What a rank sends to rank 0 first.
struct Hello {
  uint32_t magic;
  uint32_t version;
  uint32_t rank;
  uint32_t world_size;
  uint64_t blob_size;
};

class Socket {
 public:
  explicit Socket(int fd = -1) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(other.release()) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = other.release();
    }
    return *this;
  }
  ~Socket() { reset(); }
  int get() const { return fd_; }
  int release() {
    const int fd = fd_;
    fd_ = -1;
    return fd;
  }
  void reset() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
  }

 private:
  int fd_;
};

int remaining_ms(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? int(left.count()) : 0;
}

bool set_nonblocking(int fd) {
  const int flags = fcntl(fd, F_GETFL, 0);
  return flags >= 0 && fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

// Waits until fd is ready for `events`; false on timeout. Errors are left for
// the following read or write to report.
bool wait_ready(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    pollfd p{fd, events, 0};
    const int r = poll(&p, 1, remaining_ms(deadline));
    if (r > 0) return true;
    if (r == 0) return false;
    if (errno != EINTR) return true;
  }
}

Status send_all(int fd, const void* data, size_t size, Clock::time_point deadline,
                const char* peer) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    if (!wait_ready(fd, POLLOUT, deadline)) {
      return fail(LSHMOE_ERR_TIMEOUT, "bootstrap: sending to %s timed out", peer);
    }
    const ssize_t n = send(fd, p, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return fail(LSHMOE_ERR_NETWORK, "bootstrap: sending to %s failed: %s", peer, strerror(errno));
    }
    p += n;
    size -= size_t(n);
  }
  return LSHMOE_SUCCESS;
}

Status recv_all(int fd, void* data, size_t size, Clock::time_point deadline, const char* peer) {
  char* p = static_cast<char*>(data);
  while (size > 0) {
    if (!wait_ready(fd, POLLIN, deadline)) {
      return fail(LSHMOE_ERR_TIMEOUT, "bootstrap: waiting for %s timed out", peer);
    }
    const ssize_t n = recv(fd, p, size, 0);
    if (n == 0) {
      return fail(LSHMOE_ERR_NETWORK, "bootstrap: %s closed the connection mid-exchange", peer);
    }
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK) continue;
      return fail(LSHMOE_ERR_NETWORK, "bootstrap: receiving from %s failed: %s", peer,
                  strerror(errno));
    }
    p += n;
    size -= size_t(n);
  }
  return LSHMOE_SUCCESS;
}

Status listen_on(int port, Socket* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = getaddrinfo(nullptr, service.c_str(), &hints, &list); rc != 0) {
    return fail(LSHMOE_ERR_NETWORK, "bootstrap: no address to listen on port %d: %s", port,
                gai_strerror(rc));
  }
  int last_errno = 0;
  // Prefer a dual-stack IPv6 socket, so IPv4 and IPv6 peers both reach it.
  for (int pass = 0; pass < 2 && out->get() < 0; ++pass) {
    for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
      if ((pass == 0) != (a->ai_family == AF_INET6)) continue;
      Socket s(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
      if (s.get() < 0) continue;
      const int one = 1, zero = 0;
      setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
      if (a->ai_family == AF_INET6)
        setsockopt(s.get(), IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
      if (bind(s.get(), a->ai_addr, a->ai_addrlen) == 0 && listen(s.get(), 128) == 0 &&
          set_nonblocking(s.get())) {
        *out = std::move(s);
        break;
      }
      last_errno = errno;
    }
  }
  freeaddrinfo(list);
  if (out->get() < 0) {
    return fail(LSHMOE_ERR_NETWORK, "bootstrap: rank 0 cannot listen on MASTER_PORT=%d: %s", port,
                strerror(last_errno));
  }
  return LSHMOE_SUCCESS;
}

// Connects to rank 0, retrying while it is not listening yet.
Status connect_to_root(const BootstrapConfig& c, Clock::time_point deadline, Socket* out) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string service = std::to_string(c.master_port);
  std::string last_error = "no attempt";
  do {
    addrinfo* list = nullptr;
    const int rc = getaddrinfo(c.master_addr.c_str(), service.c_str(), &hints, &list);
    if (rc != 0) {
      last_error = gai_strerror(rc);
    } else {
      for (addrinfo* a = list; a != nullptr && out->get() < 0; a = a->ai_next) {
        Socket s(socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol));
        if (s.get() < 0 || !set_nonblocking(s.get())) continue;
        if (connect(s.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
          last_error = strerror(errno);
          continue;
        }
        if (!wait_ready(s.get(), POLLOUT, deadline)) break;
        int err = 0;
        socklen_t len = sizeof(err);
        getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0) {
          last_error = strerror(err);
          continue;
        }
        *out = std::move(s);
      }
      freeaddrinfo(list);
    }
    if (out->get() >= 0) {
      const int one = 1;
      setsockopt(out->get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      return LSHMOE_SUCCESS;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50, remaining_ms(deadline))));
  } while (remaining_ms(deadline) > 0);
  return fail(LSHMOE_ERR_TIMEOUT,
              "bootstrap: rank %d could not reach rank 0 at MASTER_ADDR=%s MASTER_PORT=%d "
              "within %d ms (last error: %s)",
              c.rank, c.master_addr.c_str(), c.master_port, c.timeout_ms, last_error.c_str());
}

std::string missing_ranks(const std::vector<Socket>& peers) {
  std::string list;
  int listed = 0, missing = 0;
  for (size_t r = 1; r < peers.size(); ++r) {
    if (peers[r].get() >= 0) continue;
    ++missing;
    if (listed < 16) {
      list += (listed ? ", " : "") + std::to_string(r);
      ++listed;
    }
  }
  if (missing > listed) list += ", ... (" + std::to_string(missing) + " in all)";
  return list;
}

// Rank 0: gathers every hello and blob, then sends every rank the table.
Status run_root(const BootstrapConfig& c, const void* blob, size_t size, Clock::time_point deadline,
                std::vector<std::vector<uint8_t>>* blobs) {
  Socket listener;
  LSHMOE_RETURN_IF_ERROR(listen_on(c.master_port, &listener));
  std::vector<Socket> peers(size_t(c.world_size));
  blobs->assign(size_t(c.world_size), {});
  (*blobs)[0].assign(static_cast<const uint8_t*>(blob), static_cast<const uint8_t*>(blob) + size);
  int arrived = 1;
  while (arrived < c.world_size) {
    if (!wait_ready(listener.get(), POLLIN, deadline)) {
      return fail(LSHMOE_ERR_TIMEOUT,
                  "bootstrap: rank(s) %s of WORLD_SIZE=%d never arrived at MASTER_PORT=%d "
                  "within %d ms",
                  missing_ranks(peers).c_str(), c.world_size, c.master_port, c.timeout_ms);
    }
    Socket peer(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (peer.get() < 0) continue;  // the connection went away before accept
    // A connection that closes or speaks another protocol before saying
    // which rank it is (a port probe, a stale peer) is dropped, not fatal.
    Hello hello{};
    if (recv_all(peer.get(), &hello, sizeof(hello), deadline, "a new peer") != LSHMOE_SUCCESS ||
        hello.magic != kMagic || hello.version != kVersion) {
      LSHMOE_WARN("bootstrap: dropped a connection on MASTER_PORT=%d that did not introduce itself",
                  c.master_port);
      clear_error();
      continue;
    }
    if (hello.world_size != uint32_t(c.world_size)) {
      return fail(LSHMOE_ERR_INVALID_CONFIG,
                  "bootstrap: rank %u has WORLD_SIZE=%u, rank 0 has WORLD_SIZE=%d", hello.rank,
                  hello.world_size, c.world_size);
    }
    if (hello.rank == 0 || hello.rank >= uint32_t(c.world_size) || peers[hello.rank].get() >= 0) {
      return fail(LSHMOE_ERR_INVALID_CONFIG,
                  "bootstrap: a peer claims RANK=%u, which is %s (WORLD_SIZE=%d)", hello.rank,
                  hello.rank == 0 || hello.rank >= uint32_t(c.world_size) ? "out of range"
                                                                          : "taken already",
                  c.world_size);
    }
    if (hello.blob_size > kMaxBootstrapBlob) {
      return fail(LSHMOE_ERR_NETWORK, "bootstrap: rank %u sends a %llu-byte blob (at most %zu)",
                  hello.rank, static_cast<unsigned long long>(hello.blob_size), kMaxBootstrapBlob);
    }
    std::vector<uint8_t>& b = (*blobs)[hello.rank];
    b.resize(size_t(hello.blob_size));
    const std::string name = "rank " + std::to_string(hello.rank);
    LSHMOE_RETURN_IF_ERROR(recv_all(peer.get(), b.data(), b.size(), deadline, name.c_str()));
    peers[hello.rank] = std::move(peer);
    ++arrived;
  }
  // The table: every blob's size, then the blobs, in rank order.
  std::vector<uint8_t> table(sizeof(uint64_t) * size_t(c.world_size));
  for (int r = 0; r < c.world_size; ++r) {
    const uint64_t n = (*blobs)[size_t(r)].size();
    memcpy(table.data() + sizeof(uint64_t) * size_t(r), &n, sizeof(n));
  }
  for (const auto& b : *blobs) table.insert(table.end(), b.begin(), b.end());
  for (int r = 1; r < c.world_size; ++r) {
    const std::string name = "rank " + std::to_string(r);
    LSHMOE_RETURN_IF_ERROR(
        send_all(peers[size_t(r)].get(), table.data(), table.size(), deadline, name.c_str()));
  }
  return LSHMOE_SUCCESS;
}

Status run_peer(const BootstrapConfig& c, const void* blob, size_t size, Clock::time_point deadline,
                std::vector<std::vector<uint8_t>>* blobs) {
  Socket root;
  LSHMOE_RETURN_IF_ERROR(connect_to_root(c, deadline, &root));
  const Hello hello{kMagic, kVersion, uint32_t(c.rank), uint32_t(c.world_size), size};
  LSHMOE_RETURN_IF_ERROR(send_all(root.get(), &hello, sizeof(hello), deadline, "rank 0"));
  LSHMOE_RETURN_IF_ERROR(send_all(root.get(), blob, size, deadline, "rank 0"));
  std::vector<uint64_t> sizes(size_t(c.world_size));
  LSHMOE_RETURN_IF_ERROR(
      recv_all(root.get(), sizes.data(), sizes.size() * sizeof(uint64_t), deadline, "rank 0"));
  blobs->assign(size_t(c.world_size), {});
  for (int r = 0; r < c.world_size; ++r) {
    if (sizes[size_t(r)] > kMaxBootstrapBlob) {
      return fail(LSHMOE_ERR_NETWORK, "bootstrap: rank 0 announces a %llu-byte blob for rank %d",
                  static_cast<unsigned long long>(sizes[size_t(r)]), r);
    }
    (*blobs)[size_t(r)].resize(size_t(sizes[size_t(r)]));
    LSHMOE_RETURN_IF_ERROR(recv_all(root.get(), (*blobs)[size_t(r)].data(),
                                    (*blobs)[size_t(r)].size(), deadline, "rank 0"));
  }
  return LSHMOE_SUCCESS;
}

// The integer value of environment variable `name` in [lo, hi].
Status env_int(const char* name, long lo, long hi, int* out) {
  const char* text = getenv(name);
  if (text == nullptr || *text == '\0') {
    return fail(LSHMOE_ERR_INVALID_CONFIG, "%s is not set", name);
  }
  char* end = nullptr;
  errno = 0;
  const long v = strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) {
    return fail(LSHMOE_ERR_INVALID_CONFIG,
                "%s=\"%s\" is invalid: expected an integer in [%ld, %ld]", name, text, lo, hi);
  }
  *out = int(v);
  return LSHMOE_SUCCESS;
}

}  // namespace

Status bootstrap_config_from_env(BootstrapConfig* config) {
  BootstrapConfig c;
  const char* addr = getenv("MASTER_ADDR");
  if (addr == nullptr || *addr == '\0') {
    return fail(LSHMOE_ERR_INVALID_CONFIG, "MASTER_ADDR is not set (the host of rank 0)");
  }
  c.master_addr = addr;
  LSHMOE_RETURN_IF_ERROR(env_int("MASTER_PORT", 1, 65535, &c.master_port));
  const bool torchrun = getenv("WORLD_SIZE") != nullptr || getenv("RANK") != nullptr;
  const char* size_var = torchrun ? "WORLD_SIZE" : "OMPI_COMM_WORLD_SIZE";
  const char* rank_var = torchrun ? "RANK" : "OMPI_COMM_WORLD_RANK";
  LSHMOE_RETURN_IF_ERROR(env_int(size_var, 1, 1 << 20, &c.world_size));
  LSHMOE_RETURN_IF_ERROR(env_int(rank_var, 0, c.world_size - 1, &c.rank));
  *config = c;
  return LSHMOE_SUCCESS;
}

Status bootstrap_allgather(const BootstrapConfig& config, const void* blob, size_t size,
                           std::vector<std::vector<uint8_t>>* blobs) {
  if (blobs == nullptr || (size > 0 && blob == nullptr)) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "bootstrap: blob and blobs are required");
  }
  if (config.world_size < 1 || config.rank < 0 || config.rank >= config.world_size ||
      config.master_port < 1 || config.master_port > 65535 || config.timeout_ms < 0) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT,
                "bootstrap: rank %d, world size %d, port %d, timeout %d ms are inconsistent",
                config.rank, config.world_size, config.master_port, config.timeout_ms);
  }
  if (size > kMaxBootstrapBlob) {
    return fail(LSHMOE_ERR_INVALID_ARGUMENT, "bootstrap: a blob of %zu bytes (at most %zu)", size,
                kMaxBootstrapBlob);
  }
  const auto deadline = Clock::now() + std::chrono::milliseconds(config.timeout_ms);
  if (config.world_size == 1) {
    blobs->assign(1, std::vector<uint8_t>(static_cast<const uint8_t*>(blob),
                                          static_cast<const uint8_t*>(blob) + size));
    return LSHMOE_SUCCESS;
  }
  return config.rank == 0 ? run_root(config, blob, size, deadline, blobs)
                          : run_peer(config, blob, size, deadline, blobs);
}

}  // namespace lshmoe::transport
