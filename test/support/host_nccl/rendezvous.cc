#include "rendezvous.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>

#include "comm.h"

namespace host_nccl {
namespace {

constexpr uint32_t kIdMagic = 0x4c434e48u;  // "HNCL"
constexpr uint16_t kIdVersion = 1;
constexpr int kDefaultTimeoutMs = 300000;  // the library's default
constexpr long kMaxTimeoutMs = 86400000;

struct IdLayout {
  uint32_t magic;
  uint16_t version;
  uint16_t port;
  char address[NCCL_UNIQUE_ID_BYTES - 8];  // NUL-terminated
};
static_assert(sizeof(IdLayout) == NCCL_UNIQUE_ID_BYTES);

// A port nobody is bound to now, below the kernel's ephemeral range (from
// 32768), so that outgoing connections of jobs running in parallel cannot
// take it between this check and rank 0's listen.
int free_port() {
  std::mt19937 random(std::random_device{}() ^ uint32_t(getpid()) ^
                      uint32_t(std::chrono::steady_clock::now().time_since_epoch().count()));
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = 20000 + int(random() % 12000u);
    const int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    addr.sin_port = htons(uint16_t(port));
    const bool ok = bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    close(fd);
    if (ok) return port;
  }
  return 0;
}

bool parse_long(const char* text, long lo, long hi, long* out) {
  if (text == nullptr || *text == '\0') return false;
  char* end = nullptr;
  errno = 0;
  const long v = strtol(text, &end, 10);
  if (errno != 0 || *end != '\0' || v < lo || v > hi) return false;
  *out = v;
  return true;
}

}  // namespace

ncclResult_t make_unique_id(ncclUniqueId* id) {
  IdLayout layout{};
  layout.magic = kIdMagic;
  layout.version = kIdVersion;
  const char* env_addr = getenv("MASTER_ADDR");
  const char* env_port = getenv("MASTER_PORT");
  std::string address = "127.0.0.1";
  int port = 0;
  if (env_addr != nullptr && *env_addr != '\0' && env_port != nullptr && *env_port != '\0') {
    long v = 0;
    if (!parse_long(env_port, 1, 65535, &v)) {
      return fail(ncclInvalidArgument,
                  "ncclGetUniqueId: MASTER_PORT=\"%s\" is invalid: expected an integer in "
                  "[1, 65535]",
                  env_port);
    }
    address = env_addr;
    port = int(v);
  } else {
    port = free_port();
    if (port == 0) {
      return fail(ncclSystemError, "ncclGetUniqueId: found no free TCP port in [20000, 32000)");
    }
  }
  if (address.size() >= sizeof(layout.address)) {
    return fail(ncclInvalidArgument, "ncclGetUniqueId: MASTER_ADDR is %zu characters (at most %zu)",
                address.size(), sizeof(layout.address) - 1);
  }
  memcpy(layout.address, address.c_str(), address.size() + 1);
  layout.port = uint16_t(port);
  memcpy(id->internal, &layout, sizeof(layout));
  return ncclSuccess;
}

ncclResult_t parse_unique_id(const ncclUniqueId& id, Rendezvous* out) {
  IdLayout layout;
  memcpy(&layout, id.internal, sizeof(layout));
  if (layout.magic != kIdMagic || layout.version != kIdVersion) {
    return fail(ncclInvalidArgument,
                "the ncclUniqueId was not made by this library's ncclGetUniqueId (magic 0x%08x, "
                "version %u; expected 0x%08x, version %u)",
                layout.magic, unsigned(layout.version), kIdMagic, unsigned(kIdVersion));
  }
  if (memchr(layout.address, '\0', sizeof(layout.address)) == nullptr ||
      layout.address[0] == '\0' || layout.port == 0) {
    return fail(ncclInvalidArgument, "the ncclUniqueId holds no rendezvous address and port");
  }
  out->address = layout.address;
  out->port = layout.port;
  return ncclSuccess;
}

ncclResult_t timeout_from_env(int* timeout_ms) {
  const char* text = getenv("LSHMOE_TIMEOUT_MS");
  if (text == nullptr || *text == '\0') {
    *timeout_ms = kDefaultTimeoutMs;
    return ncclSuccess;
  }
  long v = 0;
  if (!parse_long(text, 1, kMaxTimeoutMs, &v)) {
    return fail(ncclInvalidArgument,
                "LSHMOE_TIMEOUT_MS=\"%s\" is invalid: expected an integer in [1, %ld]", text,
                kMaxTimeoutMs);
  }
  *timeout_ms = int(v);
  return ncclSuccess;
}

}  // namespace host_nccl
