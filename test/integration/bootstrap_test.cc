// The bootstrap between real processes on loopback: every rank gets every
// blob; a missing rank, an unreachable rank 0, a dying peer and mismatched
// settings give errors that name the problem within the timeout.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "multi_process.h"
#include "transport/bootstrap.h"

namespace lshmoe::transport {
namespace {

using ::lshmoe::test_support::free_port;
using ::lshmoe::test_support::run_ranks;

std::vector<uint8_t> blob_of(int rank) {
  // Different sizes, including an empty one, and rank-specific bytes.
  std::vector<uint8_t> b(size_t(rank) * 37);
  for (size_t i = 0; i < b.size(); ++i) b[i] = uint8_t(rank * 31 + i);
  return b;
}

BootstrapConfig config_for(int port, int rank, int world, int timeout_ms = 10000) {
  BootstrapConfig c;
  c.master_addr = "127.0.0.1";
  c.master_port = port;
  c.rank = rank;
  c.world_size = world;
  c.timeout_ms = timeout_ms;
  return c;
}

// Exit codes of the children, so the parent can tell what failed.
constexpr int kOk = 0, kCallFailed = 1, kWrongBlobs = 2, kWrongError = 3;

class BootstrapWorld : public ::testing::TestWithParam<int> {};

TEST_P(BootstrapWorld, EveryRankGetsEveryBlob) {
  const int world = GetParam(), port = free_port();
  std::vector<int> ranks;
  // Peers start before rank 0: they must retry until it listens.
  for (int r = world - 1; r >= 0; --r) ranks.push_back(r);
  const std::vector<int> codes = run_ranks(ranks, [&](int rank) {
    if (rank == 0) usleep(200 * 1000);
    std::vector<std::vector<uint8_t>> blobs;
    const std::vector<uint8_t> mine = blob_of(rank);
    if (bootstrap_allgather(config_for(port, rank, world), mine.data(), mine.size(), &blobs) !=
        LSHMOE_SUCCESS) {
      fprintf(stderr, "rank %d: %s\n", rank, lshmoe_last_error());
      return kCallFailed;
    }
    if (blobs.size() != size_t(world)) return kWrongBlobs;
    for (int r = 0; r < world; ++r) {
      if (blobs[size_t(r)] != blob_of(r)) return kWrongBlobs;
    }
    return kOk;
  });
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << ranks[i];
}

INSTANTIATE_TEST_SUITE_P(Ranks, BootstrapWorld, ::testing::Values(1, 2, 3, 4));

// Child helper: the call must fail with `want` and a message containing every
// one of `words`.
int expect_failure(const BootstrapConfig& c, lshmoe_status_t want,
                   const std::vector<std::string>& words) {
  std::vector<std::vector<uint8_t>> blobs;
  const std::vector<uint8_t> mine = blob_of(c.rank);
  const auto start = std::chrono::steady_clock::now();
  const lshmoe_status_t s = bootstrap_allgather(c, mine.data(), mine.size(), &blobs);
  const auto took = std::chrono::steady_clock::now() - start;
  const std::string msg = lshmoe_last_error();
  bool ok = s == want && took < std::chrono::milliseconds(c.timeout_ms + 3000);
  for (const std::string& w : words) ok = ok && msg.find(w) != std::string::npos;
  if (!ok) fprintf(stderr, "rank %d: status %d, message: %s\n", c.rank, int(s), msg.c_str());
  return ok ? kOk : kWrongError;
}

// Child helper: the gather must fail somehow (the peer gave up), not hang.
int expect_any_failure(const BootstrapConfig& c) {
  std::vector<std::vector<uint8_t>> blobs;
  const std::vector<uint8_t> mine = blob_of(c.rank);
  return bootstrap_allgather(c, mine.data(), mine.size(), &blobs) == LSHMOE_SUCCESS ? kWrongError
                                                                                    : kOk;
}

TEST(Bootstrap, RankZeroNamesTheRanksThatNeverArrived) {
  const int port = free_port();
  const std::vector<int> codes = run_ranks({0, 1}, [&](int rank) {
    // Rank 1 has time to arrive even on a loaded machine; rank 0 gives up.
    if (rank == 1) return expect_any_failure(config_for(port, 1, 4, 8000));
    return expect_failure(config_for(port, 0, 4, 2500), LSHMOE_ERR_TIMEOUT,
                          {"rank(s) 2, 3", "WORLD_SIZE=4", "never arrived"});
  });
  EXPECT_EQ(codes[0], kOk);
  EXPECT_EQ(codes[1], kOk);
}

TEST(Bootstrap, APeerNamesTheAddressItCouldNotReach) {
  const int port = free_port();
  const std::vector<int> codes = run_ranks({1}, [&](int) {
    return expect_failure(
        config_for(port, 1, 2, 500), LSHMOE_ERR_TIMEOUT,
        {"rank 0", "MASTER_ADDR=127.0.0.1", "MASTER_PORT=" + std::to_string(port)});
  });
  EXPECT_EQ(codes[0], kOk);
}

TEST(Bootstrap, MismatchedWorldSizesAreReported) {
  const int port = free_port();
  const std::vector<int> codes = run_ranks({0, 1}, [&](int rank) {
    if (rank == 1) {
      std::vector<std::vector<uint8_t>> blobs;
      const std::vector<uint8_t> mine = blob_of(1);
      bootstrap_allgather(config_for(port, 1, 3, 3000), mine.data(), mine.size(), &blobs);
      return kOk;
    }
    return expect_failure(config_for(port, 0, 2, 3000), LSHMOE_ERR_INVALID_CONFIG,
                          {"rank 1 has WORLD_SIZE=3", "rank 0 has WORLD_SIZE=2"});
  });
  EXPECT_EQ(codes[0], kOk);
}

// A peer that introduces itself as rank 2, announces a 1000-byte blob, sends
// 10 bytes and dies: rank 0 reports rank 2, and rank 1 gets an error too.
TEST(Bootstrap, APeerThatDiesMidExchangeIsAnErrorNotAHang) {
  const int port = free_port();
  const std::vector<int> codes = run_ranks({0, 1, 2}, [&](int rank) {
    if (rank == 2) {
      usleep(100 * 1000);
      const int fd = socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(uint16_t(port));
      for (int i = 0; i < 100 && connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0;
           ++i) {
        usleep(20 * 1000);
      }
      // The hello of the wire protocol: magic "LSMB", version 1, rank, world
      // size, blob bytes.
      const uint32_t head[4] = {0x424d534cu, 1, 2, 3};
      const uint64_t blob_bytes = 1000;
      const uint8_t part[10] = {};
      const bool sent = write(fd, head, sizeof(head)) == sizeof(head) &&
                        write(fd, &blob_bytes, 8) == 8 && write(fd, part, 10) == 10;
      close(fd);
      return sent ? kOk : kCallFailed;
    }
    if (rank == 0) {
      return expect_failure(config_for(port, 0, 3, 3000), LSHMOE_ERR_NETWORK,
                            {"rank 2", "closed the connection"});
    }
    return expect_any_failure(config_for(port, 1, 3, 3000));
  });
  EXPECT_EQ(codes[0], kOk) << "rank 0";
  EXPECT_EQ(codes[1], kOk) << "rank 1";
  EXPECT_EQ(codes[2], kOk) << "the dying peer";
}

TEST(BootstrapEnv, TorchrunAndMpirunVariables) {
  const std::vector<const char*> vars = {
      "MASTER_ADDR", "MASTER_PORT",          "RANK",
      "WORLD_SIZE",  "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"};
  auto clear = [&] {
    for (const char* v : vars) unsetenv(v);
  };
  clear();
  BootstrapConfig c;
  EXPECT_EQ(bootstrap_config_from_env(&c), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_NE(std::string(lshmoe_last_error()).find("MASTER_ADDR"), std::string::npos);

  setenv("MASTER_ADDR", "node7", 1);
  setenv("MASTER_PORT", "29500", 1);
  setenv("RANK", "3", 1);
  setenv("WORLD_SIZE", "8", 1);
  ASSERT_EQ(bootstrap_config_from_env(&c), LSHMOE_SUCCESS) << lshmoe_last_error();
  EXPECT_EQ(c.master_addr, "node7");
  EXPECT_EQ(c.master_port, 29500);
  EXPECT_EQ(c.rank, 3);
  EXPECT_EQ(c.world_size, 8);

  setenv("RANK", "8", 1);
  EXPECT_EQ(bootstrap_config_from_env(&c), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_NE(std::string(lshmoe_last_error()).find("RANK=\"8\""), std::string::npos);
  setenv("MASTER_PORT", "http", 1);
  EXPECT_EQ(bootstrap_config_from_env(&c), LSHMOE_ERR_INVALID_CONFIG);
  EXPECT_NE(std::string(lshmoe_last_error()).find("MASTER_PORT"), std::string::npos);

  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
  setenv("MASTER_PORT", "29500", 1);
  setenv("OMPI_COMM_WORLD_RANK", "1", 1);
  setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
  ASSERT_EQ(bootstrap_config_from_env(&c), LSHMOE_SUCCESS) << lshmoe_last_error();
  EXPECT_EQ(c.rank, 1);
  EXPECT_EQ(c.world_size, 2);
  clear();
}

}  // namespace
}  // namespace lshmoe::transport
