// libnccl-net-lshmoe.so driven as NCCL drives it, between two real processes
// on loopback, through both the v11 and the v8 tables: properties, sizes from
// 0 B to 64 MiB, 32 requests in flight completed out of order, several comms
// at once, close while idle, a peer killed mid-transfer, and misuse.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "multi_process.h"
#include "net_api.h"

namespace lshmoe {
namespace {

using test_support::NetApi;
using test_support::run_ranks;
using Clock = std::chrono::steady_clock;

constexpr int kOk = 0, kFailed = 1, kWrong = 2;

// Loopback only: the plugin's one device is the loopback interface.
const bool kLoopbackOnly = [] {
  setenv("LSHMOE_NET_IF", "lo", 1);
  setenv("UCX_WARN_UNUSED_ENV_VARS", "n", 1);
  return true;
}();

#define CHECK(cond, ...)                  \
  do {                                    \
    if (!(cond)) {                        \
      fprintf(stderr, "[%d] ", getpid()); \
      fprintf(stderr, __VA_ARGS__);       \
      fprintf(stderr, "\n");              \
      return kWrong;                      \
    }                                     \
  } while (0)
#define CHECK_NCCL(call) CHECK((call) == ncclSuccess, "%s failed", #call)

// Pipes between the two processes of a test: handles one way, signals the other.
struct Pipes {
  int to_sender[2];
  int to_receiver[2];
  Pipes() {
    if (pipe(to_sender) != 0 || pipe(to_receiver) != 0) abort();
  }
  static bool write_all(int fd, const void* p, size_t n) { return write(fd, p, n) == ssize_t(n); }
  static bool read_all(int fd, void* p, size_t n) {
    size_t got = 0;
    while (got < n) {
      const ssize_t r = read(fd, static_cast<char*>(p) + got, n - got);
      if (r <= 0) return false;
      got += size_t(r);
    }
    return true;
  }
};

bool open_and_init(NetApi& api, int version) {
  return api.open("lshmoe", version) && api.init() == ncclSuccess;
}

// Tests until done; the result of the failing test, or ncclSystemError
// standing for "still pending" at the deadline.
ncclResult_t wait_request(NetApi& api, void* req, int* size, int limit_ms = 20000) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(limit_ms);
  int done = 0;
  while (Clock::now() < deadline) {
    const ncclResult_t r = api.test(req, &done, size);
    if (r != ncclSuccess || done) return r;
  }
  fprintf(stderr, "[%d] request still pending after %d ms\n", getpid(), limit_ms);
  return ncclInProgress;
}

int listen_and_accept(NetApi& api, const Pipes& pipes, int comms, std::vector<void*>* recv_comms,
                      std::vector<void*>* listen_comms) {
  for (int c = 0; c < comms; ++c) {
    char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
    void* lc = nullptr;
    CHECK_NCCL(api.listen(0, handle, &lc));
    CHECK(Pipes::write_all(pipes.to_sender[1], handle, sizeof(handle)), "pipe");
    listen_comms->push_back(lc);
  }
  for (void* lc : *listen_comms) {
    void* rc = nullptr;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (rc == nullptr && Clock::now() < deadline) CHECK_NCCL(api.accept(lc, &rc));
    CHECK(rc != nullptr, "accept never completed");
    recv_comms->push_back(rc);
  }
  return kOk;
}

int connect_all(NetApi& api, const Pipes& pipes, int comms, std::vector<void*>* send_comms) {
  for (int c = 0; c < comms; ++c) {
    char handle[NCCL_NET_HANDLE_MAXSIZE];
    CHECK(Pipes::read_all(pipes.to_sender[0], handle, sizeof(handle)), "pipe");
    void* sc = nullptr;
    const auto deadline = Clock::now() + std::chrono::seconds(60);
    while (sc == nullptr && Clock::now() < deadline) CHECK_NCCL(api.connect(0, handle, &sc));
    CHECK(sc != nullptr, "connect never completed");
    send_comms->push_back(sc);
  }
  return kOk;
}

uint8_t pattern(size_t message, size_t i) {
  return uint8_t(message * 131 + i * 7 + (i >> 9));
}

// Rank 0 receives, rank 1 sends; both run `body` with their comms.
using Body = std::function<int(int rank, NetApi&, std::vector<void*>& comms)>;
using Env = std::vector<std::pair<const char*, const char*>>;
std::vector<int> run_pair(int version, int comms, const Body& body, int limit_ms = 60000,
                          const Env& env = {}) {
  Pipes pipes;
  return run_ranks(
      {0, 1},
      [&](int rank) {
        for (const auto& [name, value] : env) setenv(name, value, 1);
        NetApi api;
        if (!open_and_init(api, version)) {
          fprintf(stderr, "cannot open or init the plugin (v%d): %s\n", version, dlerror());
          return kFailed;
        }
        std::vector<void*> mine, listens;
        const int setup = rank == 0 ? listen_and_accept(api, pipes, comms, &mine, &listens)
                                    : connect_all(api, pipes, comms, &mine);
        if (setup != kOk) return setup;
        const int result = body(rank, api, mine);
        if (result != kOk) return result;
        for (void* c : mine) CHECK_NCCL(rank == 0 ? api.close_recv(c) : api.close_send(c));
        for (void* l : listens) CHECK_NCCL(api.close_listen(l));
        CHECK_NCCL(api.finalize());
        return kOk;
      },
      limit_ms);
}

class NetPlugin : public ::testing::TestWithParam<int> {};

// Every use of the plugin runs in a child process, so each test starts with
// a plugin that was never initialised (as a new NCCL job does).
int in_child(const std::function<int()>& fn) {
  return run_ranks({0}, [&](int) { return fn(); })[0];
}

TEST_P(NetPlugin, PropertiesDescribeTheInterface) {
  const int version = GetParam();
  EXPECT_EQ(in_child([&] {
              NetApi api;
              CHECK(open_and_init(api, version), "cannot open the plugin: %s", dlerror());
              CHECK(strcmp(api.name(), "lshmoe") == 0, "name %s", api.name());
              int n = 0;
              CHECK_NCCL(api.devices(&n));
              CHECK(n == 1, "%d devices with LSHMOE_NET_IF=lo", n);
              ncclNetProperties_v11_t p{};
              CHECK_NCCL(api.properties(0, &p));
              CHECK(strcmp(p.name, "lo") == 0, "device 0 is %s", p.name);
              CHECK(p.pciPath == nullptr, "lo has a PCI path: %s", p.pciPath);
              CHECK(p.ptrSupport & NCCL_PTR_HOST, "no host memory");
              CHECK(p.netDeviceType == NCCL_NET_DEVICE_HOST, "device type %d", p.netDeviceType);
              CHECK(p.maxRecvs == 1 && p.speed > 0 && p.maxComms > 0, "recvs %d speed %d comms %d",
                    p.maxRecvs, p.speed, p.maxComms);
              if (version == 11) {
                CHECK(p.vProps.ndevs == 1 && p.vProps.devs[0] == 0, "vProps");
                CHECK(p.maxP2pBytes >= (size_t(64) << 20), "maxP2pBytes %zu", p.maxP2pBytes);
                CHECK(p.maxMultiRequestSize == 1, "maxMultiRequestSize");
              }
              CHECK(api.properties(1, &p) == ncclInternalError, "device 1 exists");
              CHECK(api.properties(-1, &p) == ncclInternalError, "device -1 exists");
              CHECK_NCCL(api.finalize());
              return kOk;
            }),
            kOk);
}

TEST_P(NetPlugin, SizesFromZeroTo64MiB) {
  const std::vector<size_t> sizes = {0, 1, 7, 4096, 65537, size_t(1) << 20, size_t(64) << 20};
  const auto codes = run_pair(GetParam(), 1, [&](int rank, NetApi& api, std::vector<void*>& c) {
    for (size_t m = 0; m < sizes.size(); ++m) {
      const size_t size = sizes[m];
      // The last receive posts exactly the size; the others leave room.
      const size_t capacity = m + 1 == sizes.size() ? size : size + 100;
      std::vector<uint8_t> buf(std::max<size_t>(capacity, 1));
      void* mh = nullptr;
      CHECK_NCCL(api.reg_mr(c[0], buf.data(), buf.size(), NCCL_PTR_HOST, &mh));
      void* req = nullptr;
      if (rank == 1) {
        for (size_t i = 0; i < size; ++i) buf[i] = pattern(m, i);
        while (req == nullptr) CHECK_NCCL(api.isend(c[0], buf.data(), size, 5, mh, &req));
      } else {
        while (req == nullptr) CHECK_NCCL(api.irecv(c[0], buf.data(), capacity, 5, mh, &req));
      }
      int got = -1;
      CHECK_NCCL(wait_request(api, req, &got));
      CHECK(got == int(size), "message %zu: %d bytes reported, %zu sent", m, got, size);
      if (rank == 0) {
        for (size_t i = 0; i < size; ++i) {
          CHECK(buf[i] == pattern(m, i), "message %zu differs at byte %zu", m, i);
        }
      }
      CHECK_NCCL(api.dereg_mr(c[0], mh));
    }
    return kOk;
  });
  EXPECT_EQ(codes, (std::vector<int>{kOk, kOk}));
}

TEST_P(NetPlugin, ThirtyTwoInFlightCompletedOutOfOrder) {
  constexpr size_t kBytes = 100000;
  const auto codes = run_pair(GetParam(), 1, [&](int rank, NetApi& api, std::vector<void*>& c) {
    std::vector<std::vector<uint8_t>> bufs(NCCL_NET_MAX_REQUESTS, std::vector<uint8_t>(kBytes));
    std::vector<void*> reqs(NCCL_NET_MAX_REQUESTS, nullptr);
    for (int k = 0; k < NCCL_NET_MAX_REQUESTS; ++k) {
      if (rank == 1) {
        for (size_t i = 0; i < kBytes; ++i) bufs[size_t(k)][i] = pattern(size_t(k), i);
        CHECK_NCCL(api.isend(c[0], bufs[size_t(k)].data(), kBytes, 3, nullptr, &reqs[size_t(k)]));
      } else {
        CHECK_NCCL(api.irecv(c[0], bufs[size_t(k)].data(), kBytes, 3, nullptr, &reqs[size_t(k)]));
      }
      CHECK(reqs[size_t(k)] != nullptr, "request %d of 32 refused", k);
    }
    // A 33rd is refused (NULL request: try again), not an error.
    std::vector<uint8_t> extra(16);
    void* more = reinterpret_cast<void*>(1);
    CHECK_NCCL(rank == 1 ? api.isend(c[0], extra.data(), extra.size(), 3, nullptr, &more)
                         : api.irecv(c[0], extra.data(), extra.size(), 3, nullptr, &more));
    CHECK(more == nullptr, "a 33rd request was accepted");
    for (int k = NCCL_NET_MAX_REQUESTS - 1; k >= 0; --k) {  // newest first
      int got = -1;
      CHECK_NCCL(wait_request(api, reqs[size_t(k)], &got));
      CHECK(got == int(kBytes), "request %d: %d bytes", k, got);
    }
    if (rank == 0) {
      // Same tag: the k-th receive posted got the k-th message sent.
      for (int k = 0; k < NCCL_NET_MAX_REQUESTS; ++k) {
        for (size_t i = 0; i < kBytes; i += 997) {
          CHECK(bufs[size_t(k)][i] == pattern(size_t(k), i), "receive %d holds another message", k);
        }
      }
    }
    return kOk;
  });
  EXPECT_EQ(codes, (std::vector<int>{kOk, kOk}));
}

TEST_P(NetPlugin, SeveralCommsAtOnce) {
  constexpr int kComms = 3;
  constexpr size_t kBytes = 300000;
  const auto codes =
      run_pair(GetParam(), kComms, [&](int rank, NetApi& api, std::vector<void*>& c) {
        std::vector<std::vector<uint8_t>> bufs(kComms, std::vector<uint8_t>(kBytes));
        std::vector<void*> reqs(kComms, nullptr);
        for (int k = 0; k < kComms; ++k) {
          // Every comm uses the same tag: comms must not see each other's messages.
          if (rank == 1) {
            for (size_t i = 0; i < kBytes; ++i) bufs[size_t(k)][i] = pattern(size_t(k) + 40, i);
            CHECK_NCCL(api.isend(c[size_t(k)], bufs[size_t(k)].data(), kBytes, 1, nullptr,
                                 &reqs[size_t(k)]));
          } else {
            CHECK_NCCL(api.irecv(c[size_t(k)], bufs[size_t(k)].data(), kBytes, 1, nullptr,
                                 &reqs[size_t(k)]));
          }
        }
        for (int k = 0; k < kComms; ++k) {
          int got = -1;
          CHECK_NCCL(wait_request(api, reqs[size_t(k)], &got));
          if (rank == 0) {
            for (size_t i = 0; i < kBytes; i += 101) {
              CHECK(bufs[size_t(k)][i] == pattern(size_t(k) + 40, i), "comm %d got another's data",
                    k);
            }
          }
        }
        return kOk;
      });
  EXPECT_EQ(codes, (std::vector<int>{kOk, kOk}));
}

TEST_P(NetPlugin, CloseWhileIdleThenConnectAgain) {
  for (int round = 0; round < 2; ++round) {
    const auto codes = run_pair(GetParam(), 2, [&](int rank, NetApi& api, std::vector<void*>& c) {
      // Close one comm idle, unused; use the other.
      CHECK_NCCL(rank == 0 ? api.close_recv(c[1]) : api.close_send(c[1]));
      c.pop_back();
      std::vector<uint8_t> buf(1000, uint8_t(rank == 1 ? 9 : 0));
      void* req = nullptr;
      CHECK_NCCL(rank == 1 ? api.isend(c[0], buf.data(), buf.size(), 0, nullptr, &req)
                           : api.irecv(c[0], buf.data(), buf.size(), 0, nullptr, &req));
      int got = 0;
      CHECK_NCCL(wait_request(api, req, &got));
      CHECK(buf[999] == 9, "data lost after closing the other comm");
      return kOk;
    });
    EXPECT_EQ(codes, (std::vector<int>{kOk, kOk})) << "round " << round;
  }
}

// The peer is killed (SIGKILL) with a transfer in flight: test() returns
// ncclSystemError within a bounded time.
TEST_P(NetPlugin, PeerKilledMidTransferIsASystemError) {
  for (const int victim : {1, 0}) {
    Pipes sync;
    const auto codes = run_pair(GetParam(), 1, [&](int rank, NetApi& api, std::vector<void*>& c) {
      constexpr size_t kBytes = size_t(64) << 20;
      std::vector<uint8_t> buf(kBytes, 1);
      if (rank == victim) {
        // One message through, so the connection is up; then die mid-way.
        void* req = nullptr;
        CHECK_NCCL(rank == 1 ? api.isend(c[0], buf.data(), 4096, 0, nullptr, &req)
                             : api.irecv(c[0], buf.data(), 4096, 0, nullptr, &req));
        CHECK_NCCL(wait_request(api, req, nullptr));
        CHECK_NCCL(rank == 1 ? api.isend(c[0], buf.data(), kBytes, 0, nullptr, &req)
                             : api.irecv(c[0], buf.data(), kBytes, 0, nullptr, &req));
        int done = 0;
        for (int i = 0; i < 100 && !done; ++i) api.test(req, &done, nullptr);
        const pid_t me = getpid();
        Pipes::write_all(sync.to_receiver[1], &me, sizeof(me));
        pause();
        return kFailed;
      }
      void* req = nullptr;
      CHECK_NCCL(rank == 1 ? api.isend(c[0], buf.data(), 4096, 0, nullptr, &req)
                           : api.irecv(c[0], buf.data(), 4096, 0, nullptr, &req));
      CHECK_NCCL(wait_request(api, req, nullptr));
      CHECK_NCCL(rank == 1 ? api.isend(c[0], buf.data(), kBytes, 0, nullptr, &req)
                           : api.irecv(c[0], buf.data(), kBytes, 0, nullptr, &req));
      pid_t peer = 0;
      CHECK(Pipes::read_all(sync.to_receiver[0], &peer, sizeof(peer)), "sync");
      kill(peer, SIGKILL);
      const auto start = Clock::now();
      const ncclResult_t r = wait_request(api, req, nullptr, 15000);
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start).count();
      CHECK(r == ncclSystemError, "test gave %d after the peer died (%lld ms)", int(r),
            (long long)ms);
      // Closing the broken comm is clean; the run_pair epilogue closes it.
      return kOk;
    });
    EXPECT_EQ(codes[size_t(1 - victim)], kOk) << "victim " << victim;
    EXPECT_EQ(codes[size_t(victim)], 128 + SIGKILL) << "victim " << victim;
  }
}

TEST_P(NetPlugin, MisuseIsAnInternalError) {
  const int version = GetParam();
  EXPECT_EQ(in_child([&] {
              NetApi api;
              CHECK(open_and_init(api, version), "cannot open the plugin");
              char handle[NCCL_NET_HANDLE_MAXSIZE] = {};
              void* comm = reinterpret_cast<void*>(1);
              // Not a handle of ours; no such device.
              CHECK(api.connect(0, handle, &comm) == ncclInternalError && comm == nullptr,
                    "connect to a zero handle");
              CHECK(api.connect(5, handle, &comm) == ncclInternalError, "connect on device 5");
              void* lc = nullptr;
              CHECK_NCCL(api.listen(0, handle, &lc));
              void* mh = nullptr;
              int x = 0;
              CHECK(api.reg_mr(lc, &x, sizeof(x), 0x40, &mh) == ncclInternalError, "memory type");
              CHECK(api.test(nullptr, &x, nullptr) == ncclInternalError, "test(NULL)");
              if (version == 11) {
                CHECK(
                    api.v11->regMrDmaBuf(lc, &x, 4, NCCL_PTR_CUDA, 0, 3, &mh) == ncclInternalError,
                    "DMA-BUF");
                void* bufs[2] = {&x, &x};
                size_t sizes[2] = {4, 4};
                int tags[2] = {0, 0};
                void* req = nullptr;
                CHECK(api.irecv_many(lc, 2, bufs, sizes, tags, nullptr, &req) == ncclInternalError,
                      "irecv of 2 buffers");
              }
              CHECK_NCCL(api.close_listen(lc));
              CHECK_NCCL(api.finalize());
              return kOk;
            }),
            kOk);
}

// LSHMOE_NET_COMPRESS=1: row-aligned messages of enough rows arrive close to
// what was sent (lossy), with the sender's size; others arrive exact.
TEST_P(NetPlugin, CompressionOfRowAlignedMessages) {
  constexpr size_t kHidden = 256, kRows = 1024;
  const Env env = {
      {"LSHMOE_NET_COMPRESS", "1"}, {"LSHMOE_HIDDEN", "256"}, {"LSHMOE_DTYPES", "bf16"}};
  // 1024 clustered rows (compressed), 8 rows (too few), and an odd size.
  const std::vector<size_t> sizes = {kRows * kHidden * 2, 8 * kHidden * 2, 1000};
  auto value = [](size_t m, size_t i) {  // bf16 values, so exact ones stay exact
    const size_t row = i / kHidden, col = i % kHidden;
    return bf16_to_float(
        float_to_bf16(float((row * 7 + m) % 5) + 0.25f * float((col * 13 + row % 3) % 9) / 9.0f));
  };
  const auto codes = run_pair(
      GetParam(), 1,
      [&](int rank, NetApi& api, std::vector<void*>& c) {
        for (size_t m = 0; m < sizes.size(); ++m) {
          const size_t bytes = sizes[m];
          std::vector<uint16_t> rows((bytes + 1) / 2);
          void* req = nullptr;
          if (rank == 1) {
            for (size_t i = 0; i < rows.size(); ++i) rows[i] = float_to_bf16(value(m, i));
            CHECK_NCCL(api.isend(c[0], rows.data(), bytes, 2, nullptr, &req));
          } else {
            // Room for more than was sent, as NCCL posts.
            rows.resize(rows.size() + 512);
            CHECK_NCCL(api.irecv(c[0], rows.data(), rows.size() * 2, 2, nullptr, &req));
          }
          int got = -1;
          CHECK_NCCL(wait_request(api, req, &got));
          CHECK(got == int(bytes), "message %zu: %d bytes reported, %zu sent", m, got, bytes);
          if (rank == 1) continue;
          double err = 0, norm = 0;
          for (size_t i = 0; i < bytes / 2; ++i) {
            const double d = double(bf16_to_float(rows[i])) - value(m, i);
            err += d * d;
            norm += double(value(m, i)) * value(m, i);
          }
          const double rel = std::sqrt(err / norm);
          if (m == 0) {
            CHECK(rel > 0 && rel < 0.2, "compressed message: relative error %g", rel);
          } else if (m == 1) {
            CHECK(rel == 0, "an 8-row message changed (%g)", rel);
          }
        }
        return kOk;
      },
      60000, env);
  EXPECT_EQ(codes, (std::vector<int>{kOk, kOk}));
}

TEST_P(NetPlugin, CompressionNeedsTheRowShape) {
  const int version = GetParam();
  EXPECT_EQ(in_child([&] {
              setenv("LSHMOE_NET_COMPRESS", "1", 1);  // no LSHMOE_HIDDEN
              NetApi api;
              CHECK(api.open("lshmoe", version), "cannot open the plugin");
              CHECK(api.init() == ncclInternalError, "init accepted compression without rows");
              return kOk;
            }),
            kOk);
}

// A setting that names no interface, or is invalid, fails init with a
// message naming it (NCCL then moves on to its other nets).
TEST_P(NetPlugin, InvalidSettingsFailInit) {
  const int version = GetParam();
  for (const char* setting : {"LSHMOE_NET_IF=nosuch0", "LSHMOE_TIMEOUT_MS=soon"}) {
    const auto codes = run_ranks({0}, [&](int) {
      const std::string s = setting;
      setenv(s.substr(0, s.find('=')).c_str(), s.substr(s.find('=') + 1).c_str(), 1);
      NetApi api;
      CHECK(api.open("lshmoe", version), "cannot open the plugin");
      CHECK(api.init() == ncclInternalError, "init accepted %s", setting);
      int n = 0;
      CHECK(api.devices(&n) == ncclInternalError, "devices() after a failed init");
      return kOk;
    });
    EXPECT_EQ(codes[0], kOk) << setting;
  }
}

INSTANTIATE_TEST_SUITE_P(Tables, NetPlugin, ::testing::Values(11, 8),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return std::string(p.param == 11 ? "v11" : "v8");
                         });

}  // namespace
}  // namespace lshmoe
