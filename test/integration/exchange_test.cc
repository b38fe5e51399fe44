// The compressed all-to-all between real processes on loopback, through the
// public API, with UCX over TCP and over shared memory: 2 to 4 ranks, unequal
// splits with zeros, every dtype, compression off (bit-exact) and on
// (identity expert returns the input), centroid mode, interleaved handles,
// and failures: a peer that dies, a missing rank, mismatched sizes.
#include <gtest/gtest.h>

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "common/dtype.h"
#include "exchange_rows.h"
#include "lshmoe/lshmoe.h"
#include "multi_process.h"

namespace lshmoe {
namespace {

using namespace test_support;  // NOLINT: the shared rows and job helpers

// Largest |a - b| / (|b| + 0.1) over the rows.
double max_rel_diff(const Buffer& a, const Buffer& b) {
  double worst = 0;
  for (size_t r = 0; r < b.rows(); ++r) {
    for (size_t j = 0; j < kRowElems; ++j) {
      const double d =
          std::fabs(double(a.get(r, j)) - b.get(r, j)) / (std::fabs(b.get(r, j)) + 0.1);
      worst = std::max(worst, d);
    }
  }
  return worst;
}

double rounding_of(DType t) {
  return t == DType::kFloat32 ? 1e-5 : t == DType::kFloat16 ? 4e-3 : 3e-2;
}

// One rank of the round trip: dispatch, an expert, combine, checked against
// what the rows should be.
int round_trip(int me, int world, DType t, const Options& o) {
  lshmoe_comm_t* comm = create_comm(o);
  if (comm == nullptr) return kFailed;
  const lshmoe_dtype_t dt = lshmoe_dtype_t(t);
  std::vector<size_t> send_counts, recv_counts(static_cast<size_t>(world));
  const Buffer x = send_rows_of(me, world, t, &send_counts);
  Buffer expected(t, 0);
  size_t total_recv = 0;
  for (int s = 0; s < world; ++s) total_recv += recv_counts[size_t(s)] = rows_between(s, me);
  expected = Buffer(t, total_recv);
  for (int s = 0, r = 0; s < world; ++s) {
    for (size_t i = 0; i < recv_counts[size_t(s)]; ++i, ++r) {
      for (size_t j = 0; j < kRowElems; ++j) expected.set(size_t(r), j, token(s, me, i, j));
    }
  }

  // Rows mode, two dispatches in flight before their combines.
  Buffer xe(t, total_recv), xe2(t, total_recv);
  lshmoe_handle_t *h = nullptr, *h2 = nullptr;
  CHECK_OK(lshmoe_dispatch(comm, x.bytes.data(), send_counts.data(), xe.bytes.data(),
                           recv_counts.data(), kRowElems, dt, LSHMOE_DISPATCH_ROWS, &h));
  CHECK_OK(lshmoe_dispatch(comm, x.bytes.data(), send_counts.data(), xe2.bytes.data(),
                           recv_counts.data(), kRowElems, dt, LSHMOE_DISPATCH_ROWS, &h2));
  CHECK(xe.bytes == xe2.bytes, "the same dispatch twice gave different rows");
  const Buffer ye = affine_expert(xe);
  Buffer y(t, x.rows()), y_identity(t, x.rows());
  CHECK_OK(lshmoe_combine(comm, h, ye.bytes.data(), y.bytes.data()));
  CHECK_OK(lshmoe_combine(comm, h2, xe2.bytes.data(), y_identity.bytes.data()));
  CHECK(lshmoe_combine(comm, h, ye.bytes.data(), y.bytes.data()) == LSHMOE_ERR_CONTEXT_MISMATCH,
        "a handle combined twice");
  lshmoe_handle_free(h);
  lshmoe_handle_free(h2);

  lshmoe_stats_t st;
  CHECK_OK(lshmoe_comm_stats(comm, &st));
  if (!o.enable) {
    // Bit-exact pass-through.
    CHECK(xe.bytes == expected.bytes, "disabled dispatch changed the rows");
    CHECK(y_identity.bytes == x.bytes, "disabled identity round trip changed the rows");
    CHECK(affine_expert(x).bytes == y.bytes, "disabled combine changed the expert output");
    CHECK(st.messages_compressed == 0, "compressed %llu messages while disabled",
          (unsigned long long)st.messages_compressed);
  } else {
    size_t compressible = 0;
    for (int d = 0; d < world; ++d) compressible += d != me && send_counts[size_t(d)] >= 32;
    CHECK(st.messages_compressed == 2 * compressible, "compressed %llu messages, expected %zu",
          (unsigned long long)st.messages_compressed, 2 * compressible);
    // Identity expert with compensation: the input comes back.
    const double back = max_rel_diff(y_identity, x);
    CHECK(back <= rounding_of(t), "identity round trip is off by %g", back);
    const double dispatch_error = max_rel_diff(xe, expected);
    bool any_compressed_in = false;
    for (int s = 0; s < world; ++s) any_compressed_in |= s != me && recv_counts[size_t(s)] >= 32;
    CHECK(!any_compressed_in || dispatch_error > rounding_of(t),
          "compressed rows arrived exact (%g): nothing was compressed?", dispatch_error);
    CHECK(dispatch_error < 0.5, "dispatch error %g on clustered rows", dispatch_error);
    if (compressible > 0) {
      CHECK(st.wire_bytes < st.logical_bytes / 2, "wire %llu of %llu logical bytes",
            (unsigned long long)st.wire_bytes, (unsigned long long)st.logical_bytes);
    }
  }

  // Centroid mode: the expert computes on slots and must give what the rows
  // mode gave.
  std::vector<size_t> expert_counts(static_cast<size_t>(world)), used(static_cast<size_t>(world));
  CHECK_OK(lshmoe_comm_expert_rows(comm, recv_counts.data(), kRowElems, dt,
                                   LSHMOE_DISPATCH_CENTROIDS, expert_counts.data()));
  size_t total_expert = 0;
  for (int s = 0; s < world; ++s) {
    total_expert += expert_counts[size_t(s)];
    if (!o.enable) CHECK(expert_counts[size_t(s)] == recv_counts[size_t(s)], "centroid rows");
  }
  Buffer slots(t, total_expert), y_centroid(t, x.rows());
  lshmoe_handle_t* hc = nullptr;
  CHECK_OK(lshmoe_dispatch(comm, x.bytes.data(), send_counts.data(), slots.bytes.data(),
                           recv_counts.data(), kRowElems, dt, LSHMOE_DISPATCH_CENTROIDS, &hc));
  CHECK_OK(lshmoe_handle_used_rows(hc, used.data()));
  for (int s = 0; s < world; ++s) {
    CHECK(used[size_t(s)] <= expert_counts[size_t(s)], "used rows beyond the slots");
  }
  CHECK_OK(lshmoe_combine(comm, hc, affine_expert(slots).bytes.data(), y_centroid.bytes.data()));
  lshmoe_handle_free(hc);
  const double centroid_vs_rows = max_rel_diff(y_centroid, y);
  CHECK(centroid_vs_rows <= rounding_of(t), "centroid mode differs from rows mode by %g",
        centroid_vs_rows);
  lshmoe_comm_destroy(comm);
  return kOk;
}

struct Case {
  int world;
  const char* tls;
  DType dtype;
  bool enable;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  std::string tls = c.tls;
  tls = tls.substr(0, tls.find(','));
  return std::to_string(c.world) + "ranks_" + tls + "_" + dtype_name(c.dtype) +
         (c.enable ? "_compressed" : "_disabled");
}

class Exchange : public ::testing::TestWithParam<Case> {};

TEST_P(Exchange, RoundTrip) {
  const Case c = GetParam();
  const int port = free_port();
  std::vector<int> ranks;
  for (int r = 0; r < c.world; ++r) ranks.push_back(r);
  const std::vector<int> codes = run_ranks(
      ranks,
      [&](int rank) {
        set_job_env(rank, c.world, port, c.tls);
        Options o;
        o.enable = c.enable;
        return round_trip(rank, c.world, c.dtype, o);
      },
      60000);
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << ranks[i];
}

INSTANTIATE_TEST_SUITE_P(Loopback, Exchange,
                         ::testing::Values(Case{2, "tcp,self", DType::kBFloat16, true},
                                           Case{3, "tcp,self", DType::kFloat32, true},
                                           Case{4, "tcp,self", DType::kFloat16, true},
                                           Case{4, "tcp,self", DType::kBFloat16, false},
                                           Case{2, "sm,self", DType::kFloat32, false},
                                           Case{3, "sm,self", DType::kBFloat16, true},
                                           Case{4, "sm,self", DType::kFloat16, true},
                                           Case{3, "sm,self", DType::kFloat16, false}),
                         case_name);

// Child helper: one dispatch of the standard rows (recv_rows[extra_from] +=
// extra) and, unless told otherwise, its combine with an identity expert.
lshmoe_status_t one_round(lshmoe_comm_t* comm, int me, int world, int extra_from = -1,
                          size_t extra = 0, bool combine = true) {
  std::vector<size_t> send_counts, recv_counts(static_cast<size_t>(world));
  const Buffer x = send_rows_of(me, world, DType::kBFloat16, &send_counts);
  size_t total = 0;
  for (int s = 0; s < world; ++s) {
    recv_counts[size_t(s)] = rows_between(s, me) + (s == extra_from ? extra : 0);
    total += recv_counts[size_t(s)];
  }
  Buffer xe(DType::kBFloat16, total), y(DType::kBFloat16, x.rows());
  lshmoe_handle_t* h = nullptr;
  lshmoe_status_t s =
      lshmoe_dispatch(comm, x.bytes.data(), send_counts.data(), xe.bytes.data(), recv_counts.data(),
                      kRowElems, LSHMOE_BFLOAT16, LSHMOE_DISPATCH_ROWS, &h);
  if (s != LSHMOE_SUCCESS || !combine) {
    lshmoe_handle_free(h);
    return s;
  }
  s = lshmoe_combine(comm, h, xe.bytes.data(), y.bytes.data());
  lshmoe_handle_free(h);
  return s;
}

// Dispatch and combine (affine expert) of m times the standard rows to every
// peer; the expert rows and the result, back to back.
std::vector<uint8_t> scaled_round(lshmoe_comm_t* comm, int me, int world, size_t m,
                                  lshmoe_status_t* status) {
  std::vector<size_t> send_counts(static_cast<size_t>(world)),
      recv_counts(static_cast<size_t>(world));
  size_t sent = 0, got = 0;
  for (int p = 0; p < world; ++p) {
    sent += send_counts[size_t(p)] = m * rows_between(me, p);
    got += recv_counts[size_t(p)] = m * rows_between(p, me);
  }
  Buffer x(DType::kBFloat16, sent), xe(DType::kBFloat16, got), y(DType::kBFloat16, sent);
  for (int p = 0, r = 0; p < world; ++p) {
    for (size_t i = 0; i < send_counts[size_t(p)]; ++i, ++r) {
      for (size_t j = 0; j < kRowElems; ++j) x.set(size_t(r), j, token(me, p, i, j));
    }
  }
  lshmoe_handle_t* h = nullptr;
  *status =
      lshmoe_dispatch(comm, x.bytes.data(), send_counts.data(), xe.bytes.data(), recv_counts.data(),
                      kRowElems, LSHMOE_BFLOAT16, LSHMOE_DISPATCH_ROWS, &h);
  if (*status == LSHMOE_SUCCESS) {
    *status = lshmoe_combine(comm, h, affine_expert(xe).bytes.data(), y.bytes.data());
  }
  lshmoe_handle_free(h);
  std::vector<uint8_t> out = xe.bytes;
  out.insert(out.end(), y.bytes.begin(), y.bytes.end());
  return out;
}

// Freed handles are reused by later dispatches (their residual buffers
// kept): after dispatches of other sizes, with parts that go from raw to
// compressed and to empty, the same dispatch gives the same bytes again.
TEST(ExchangeHandles, AReusedHandleGivesTheSameResultAsAFreshOne) {
  const int port = free_port(), world = 3;
  const std::vector<int> codes = run_ranks({0, 1, 2}, [&](int me) {
    set_job_env(me, world, port, "tcp,self");
    lshmoe_comm_t* comm = create_comm(Options{});
    if (comm == nullptr) return kFailed;
    lshmoe_status_t s = LSHMOE_SUCCESS;
    const std::vector<uint8_t> first = scaled_round(comm, me, world, 1, &s);
    CHECK_OK(s);
    for (size_t m : {size_t(4), size_t(0), size_t(2), size_t(1)}) {
      const std::vector<uint8_t> again = scaled_round(comm, me, world, m, &s);
      CHECK_OK(s);
      if (m == 1) CHECK(again == first, "a reused handle changed the result");
    }
    lshmoe_comm_destroy(comm);
    return kOk;
  });
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << i;
}

bool contains(const char* text, const std::string& word) {
  return std::string(text).find(word) != std::string::npos;
}

class ExchangeFailure : public ::testing::TestWithParam<const char*> {};

// A rank that dies between two exchanges: the others get an error naming it
// within the timeout (at once where UCX detects the death), then fail fast.
TEST_P(ExchangeFailure, PeerThatDiesIsNamedWithinTheTimeout) {
  const int port = free_port(), world = 3, timeout_ms = 3000;
  const std::vector<int> codes = run_ranks({0, 1, 2}, [&](int me) {
    set_job_env(me, world, port, GetParam());
    Options o;
    o.timeout_ms = timeout_ms;
    lshmoe_comm_t* comm = create_comm(o);
    if (comm == nullptr) return kFailed;
    CHECK_OK(one_round(comm, me, world));
    if (me == 2) _exit(kOk);  // dies without a word
    const auto start = std::chrono::steady_clock::now();
    const lshmoe_status_t s = one_round(comm, me, world);
    const auto took = std::chrono::steady_clock::now() - start;
    CHECK(s == LSHMOE_ERR_NETWORK || s == LSHMOE_ERR_TIMEOUT, "status %d: %s", int(s),
          lshmoe_last_error());
    CHECK(contains(lshmoe_last_error(), "rank 2"), "the message does not name rank 2: %s",
          lshmoe_last_error());
    CHECK(took < std::chrono::milliseconds(timeout_ms + 2000), "took %lld ms",
          (long long)std::chrono::duration_cast<std::chrono::milliseconds>(took).count());
    const lshmoe_status_t again = one_round(comm, me, world);
    CHECK(again == s && contains(lshmoe_last_error(), "failed earlier"),
          "second call: status %d: %s", int(again), lshmoe_last_error());
    lshmoe_comm_destroy(comm);
    return kOk;
  });
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << i;
}

// Ranks that disagree on a message's size: the receiver gets an error naming
// the sender, and the communicator stays usable.
TEST_P(ExchangeFailure, MismatchedSizesAreAnErrorAndLoseNothing) {
  const int port = free_port(), world = 2;
  const std::vector<int> codes = run_ranks({0, 1}, [&](int me) {
    set_job_env(me, world, port, GetParam());
    lshmoe_comm_t* comm = create_comm(Options{});
    if (comm == nullptr) return kFailed;
    for (size_t extra : {size_t(7), size_t(200)}) {
      // Rank 1 expects more rows from rank 0 than rank 0 sends (a raw
      // message of 10 rows, or a compressed one).
      const lshmoe_status_t s = one_round(comm, me, world, me == 1 ? 0 : -1, extra, false);
      if (me == 1) {
        CHECK(s == LSHMOE_ERR_WIRE_SIZE_MISMATCH && contains(lshmoe_last_error(), "rank 0"),
              "status %d: %s", int(s), lshmoe_last_error());
      } else {
        CHECK(s == LSHMOE_SUCCESS, "the sender failed: %s", lshmoe_last_error());
      }
      // Then a correct round trip works.
      CHECK_OK(one_round(comm, me, world));
    }
    lshmoe_comm_destroy(comm);
    return kOk;
  });
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << i;
}

INSTANTIATE_TEST_SUITE_P(Loopback, ExchangeFailure, ::testing::Values("tcp,self", "sm,self"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           const std::string tls = p.param;
                           return tls.substr(0, tls.find(','));
                         });

TEST(ExchangeBootstrap, MissingRankIsNamed) {
  const int port = free_port();
  const std::vector<int> codes = run_ranks({0, 1}, [&](int me) {
    set_job_env(me, 3, port, "tcp,self");
    lshmoe_config_t* config = nullptr;
    lshmoe_config_create(&config);
    lshmoe_config_set(config, "LSHMOE_TIMEOUT_MS", "1500");
    lshmoe_comm_t* comm = nullptr;
    const lshmoe_status_t s = lshmoe_comm_create(config, &comm);
    lshmoe_config_destroy(config);
    if (me == 0) {
      CHECK(s == LSHMOE_ERR_TIMEOUT && contains(lshmoe_last_error(), "2"), "status %d: %s", int(s),
            lshmoe_last_error());
    } else {
      CHECK(s != LSHMOE_SUCCESS, "rank 1 joined a job missing rank 2");
    }
    return kOk;
  });
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << i;
}

// LSHMOE_STATS=1: each communicator appends its counters when destroyed.
TEST(ExchangeStats, CommunicatorCountersGoToTheStatsFile) {
  const int port = free_port();
  char path[] = "/tmp/lshmoe_stats_XXXXXX";
  const int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  close(fd);
  const std::vector<int> codes = run_ranks({0, 1}, [&](int me) {
    set_job_env(me, 2, port, "tcp,self");
    lshmoe_config_t* config = nullptr;
    lshmoe_config_create(&config);
    lshmoe_config_set(config, "LSHMOE_STATS", "1");
    lshmoe_config_set(config, "LSHMOE_STATS_FILE", path);
    lshmoe_comm_t* comm = nullptr;
    CHECK_OK(lshmoe_comm_create(config, &comm));
    lshmoe_config_destroy(config);
    CHECK_OK(one_round(comm, me, 2));
    lshmoe_comm_destroy(comm);
    return kOk;
  });
  ASSERT_EQ(codes, (std::vector<int>{kOk, kOk}));
  FILE* f = fopen(path, "r");
  ASSERT_NE(f, nullptr);
  char line[512];
  int lines = 0;
  bool rank0 = false, rank1 = false;
  while (fgets(line, sizeof(line), f) != nullptr) {
    ++lines;
    rank0 |= strstr(line, "communicator rank 0:") != nullptr;
    rank1 |= strstr(line, "communicator rank 1:") != nullptr;
    EXPECT_NE(strstr(line, "compressed"), nullptr) << line;
  }
  fclose(f);
  unlink(path);
  EXPECT_EQ(lines, 2);
  EXPECT_TRUE(rank0 && rank1);
}

TEST(ExchangeBootstrap, InvalidEnvironmentIsNamed) {
  const std::vector<int> codes = run_ranks({0}, [&](int me) {
    set_job_env(0, 2, 1234, "tcp,self");
    setenv("WORLD_SIZE", "two", 1);
    lshmoe_comm_t* comm = nullptr;
    const lshmoe_status_t s = lshmoe_comm_create(nullptr, &comm);
    CHECK(s != LSHMOE_SUCCESS && contains(lshmoe_last_error(), "WORLD_SIZE"), "status %d: %s",
          int(s), lshmoe_last_error());
    setenv("WORLD_SIZE", "2", 1);
    setenv("LSHMOE_RATIO", "7", 1);
    const lshmoe_status_t bad_config = lshmoe_comm_create(nullptr, &comm);
    CHECK(bad_config == LSHMOE_ERR_INVALID_CONFIG && contains(lshmoe_last_error(), "LSHMOE_RATIO"),
          "status %d: %s", int(bad_config), lshmoe_last_error());
    return kOk;
  });
  EXPECT_EQ(codes[0], kOk);
}

}  // namespace
}  // namespace lshmoe

namespace lshmoe {
namespace {

// Two experts per rank, top-2 duplicates, through lshmoe_dispatch_experts:
// every part is compressed on its own, so the combine of two different
// nonlinear experts is as good as the dispatch; the same rows as one part
// per peer (lshmoe_dispatch) mix the experts in their slots.
float expert_out(int e, float x) {
  return e == 0 ? 2.0f * std::tanh(x) : x * x - 0.5f;
}

struct TwoExpertRun {
  double parts_err = 0, mixed_err = 0;
};

// Per part [peer][expert]: 80 tokens per peer, token t to expert t % 2 and
// one in three to both.
int two_experts_rank(int me, int world, int port, double* parts_err, double* mixed_err) {
  set_job_env(me, world, port, "tcp,self");
  Options o;
  lshmoe_comm_t* comm = create_comm(o);
  if (comm == nullptr) return kFailed;
  constexpr int E = 2;
  constexpr size_t kTokens = 80;
  // The rows of one peer's message, and the expert of each row.
  auto routed = [](int s, int d, std::vector<std::vector<float>>* rows,
                   std::vector<int>* expert_of) {
    std::vector<size_t> to[E];
    for (size_t t = 0; t < kTokens; ++t) {
      to[t % 2].push_back(t);
      if (t % 3 == 0) to[1 - t % 2].push_back(t);
    }
    for (int e = 0; e < E; ++e) {
      for (size_t t : to[e]) {
        std::vector<float> x(kRowElems);
        for (size_t j = 0; j < kRowElems; ++j) x[j] = token(s, d, t, j);
        rows->push_back(x);
        expert_of->push_back(e);
      }
    }
    return std::vector<size_t>{to[0].size(), to[1].size()};
  };
  std::vector<size_t> send_rows, recv_rows, send_peer, recv_peer;
  std::vector<std::vector<float>> send, recv_ref;
  std::vector<int> send_expert, recv_expert;
  for (int p = 0; p < world; ++p) {
    const std::vector<size_t> out = routed(me, p, &send, &send_expert);
    const std::vector<size_t> in = routed(p, me, &recv_ref, &recv_expert);
    for (int e = 0; e < E; ++e) {
      send_rows.push_back(out[size_t(e)]);
      recv_rows.push_back(in[size_t(e)]);
    }
    send_peer.push_back(out[0] + out[1]);
    recv_peer.push_back(in[0] + in[1]);
  }
  Buffer x(DType::kFloat32, send.size());
  for (size_t r = 0; r < send.size(); ++r)
    for (size_t j = 0; j < kRowElems; ++j) x.set(r, j, send[r][j]);
  for (int variant = 0; variant < 2; ++variant) {
    Buffer xe(DType::kFloat32, recv_ref.size()), y(DType::kFloat32, send.size());
    lshmoe_handle_t* h = nullptr;
    if (variant == 0) {
      CHECK_OK(lshmoe_dispatch_experts(comm, x.bytes.data(), send_rows.data(), xe.bytes.data(),
                                       recv_rows.data(), E, kRowElems, LSHMOE_FLOAT32,
                                       LSHMOE_DISPATCH_ROWS, &h));
    } else {
      CHECK_OK(lshmoe_dispatch(comm, x.bytes.data(), send_peer.data(), xe.bytes.data(),
                               recv_peer.data(), kRowElems, LSHMOE_FLOAT32, LSHMOE_DISPATCH_ROWS,
                               &h));
    }
    Buffer ye(DType::kFloat32, recv_ref.size());
    for (size_t r = 0; r < ye.rows(); ++r)
      for (size_t j = 0; j < kRowElems; ++j) ye.set(r, j, expert_out(recv_expert[r], xe.get(r, j)));
    CHECK_OK(lshmoe_combine(comm, h, ye.bytes.data(), y.bytes.data()));
    lshmoe_handle_free(h);
    double err = 0, norm = 0;
    for (size_t r = 0; r < send.size(); ++r) {
      for (size_t j = 0; j < kRowElems; ++j) {
        const double want = expert_out(send_expert[r], send[r][j]);
        err += (y.get(r, j) - want) * (y.get(r, j) - want);
        norm += want * want;
      }
    }
    (variant == 0 ? *parts_err : *mixed_err) = std::sqrt(err / norm);
  }
  // A wrong expert count is named.
  lshmoe_handle_t* unused = nullptr;
  CHECK(lshmoe_dispatch_experts(comm, x.bytes.data(), send_rows.data(), nullptr, recv_rows.data(),
                                0, kRowElems, LSHMOE_FLOAT32, LSHMOE_DISPATCH_ROWS,
                                &unused) == LSHMOE_ERR_INVALID_ARGUMENT &&
            strstr(lshmoe_last_error(), "0 experts per rank") != nullptr,
        "zero experts accepted: %s", lshmoe_last_error());
  lshmoe_comm_destroy(comm);
  return kOk;
}

TEST(ExchangeExperts, PartsKeepTwoExpertsApart) {
  constexpr int kWorld = 3;
  const int port = free_port();
  const auto codes = run_ranks({0, 1, 2}, [&](int r) {
    double parts = 0, mixed = 0;
    const int code = two_experts_rank(r, kWorld, port, &parts, &mixed);
    if (code != kOk) return code;
    fprintf(stderr, "rank %d: combine error %.4f with parts, %.4f mixed\n", r, parts, mixed);
    if (!(parts < 0.05)) return kWrong + 10;
    if (!(mixed > 5 * parts && mixed > 0.2)) return kWrong + 20;
    return kOk;
  });
  EXPECT_EQ(codes, (std::vector<int>{kOk, kOk, kOk}));
}

// Many experts per rank, parts from empty to over a MiB, in one message a
// peer. Compression off: every row arrives and returns bit for bit; on:
// every part of 32 rows or more is compressed on its own, and the identity
// expert's combine gives the rows back.
constexpr int kManyExperts = 300;

size_t many_part_rows(int s, int d, int e) {
  if (e % 97 == 5) return 4200 + size_t(s) * 7 + size_t(d);  // over a MiB of fp32 rows
  return (size_t(e) * 13 + size_t(s) * 5 + size_t(d) * 3) % 45;
}

// The rows rank s sends rank d, part after part.
void fill_peer_rows(int s, int d, Buffer* b, size_t* row) {
  for (size_t i = 0, n = 0; int(i) < kManyExperts; ++i) {
    for (size_t k = 0; k < many_part_rows(s, d, int(i)); ++k, ++n, ++*row)
      for (size_t j = 0; j < kRowElems; ++j) b->set(*row, j, token(s, d, n, j));
  }
}

int many_experts_rank(int me, int world, int port, bool enable) {
  set_job_env(me, world, port, "tcp,self");
  Options o;
  o.enable = enable;
  lshmoe_comm_t* comm = create_comm(o);
  if (comm == nullptr) return kFailed;
  std::vector<size_t> send_rows, recv_rows;
  size_t sent = 0, got = 0, compressible = 0;
  for (int p = 0; p < world; ++p) {
    for (int e = 0; e < kManyExperts; ++e) {
      sent += send_rows.emplace_back(many_part_rows(me, p, e));
      got += recv_rows.emplace_back(many_part_rows(p, me, e));
      compressible += p != me && send_rows.back() >= 32;
    }
  }
  Buffer x(DType::kFloat32, sent), expected(DType::kFloat32, got);
  for (int p = 0, r = 0, q = 0; p < world; ++p) {
    size_t row = size_t(r), exp_row = size_t(q);
    fill_peer_rows(me, p, &x, &row);
    fill_peer_rows(p, me, &expected, &exp_row);
    r = int(row);
    q = int(exp_row);
  }
  Buffer xe(DType::kFloat32, got), y(DType::kFloat32, sent);
  lshmoe_handle_t* h = nullptr;
  CHECK_OK(lshmoe_dispatch_experts(comm, x.bytes.data(), send_rows.data(), xe.bytes.data(),
                                   recv_rows.data(), kManyExperts, kRowElems, LSHMOE_FLOAT32,
                                   LSHMOE_DISPATCH_ROWS, &h));
  CHECK_OK(lshmoe_combine(comm, h, xe.bytes.data(), y.bytes.data()));
  lshmoe_handle_free(h);
  lshmoe_stats_t st;
  CHECK_OK(lshmoe_comm_stats(comm, &st));
  if (!enable) {
    CHECK(xe.bytes == expected.bytes, "the dispatch changed rows");
    CHECK(y.bytes == x.bytes, "the identity round trip changed rows");
  } else {
    CHECK(st.messages_compressed == compressible, "compressed %llu dispatch messages, expected %zu",
          (unsigned long long)st.messages_compressed, compressible);
    // Parts of 32 to 44 rows hold rows of several clusters per slot: the
    // rows' error in norm, not the worst element's.
    double err = 0, norm = 0;
    for (size_t r = 0; r < got; ++r) {
      for (size_t j = 0; j < kRowElems; ++j) {
        const double d = double(xe.get(r, j)) - expected.get(r, j);
        err += d * d;
        norm += double(expected.get(r, j)) * expected.get(r, j);
      }
    }
    const double dispatch_error = std::sqrt(err / norm), back = max_rel_diff(y, x);
    CHECK(dispatch_error > 1e-4 && dispatch_error < 0.5, "dispatch error %g", dispatch_error);
    CHECK(back <= rounding_of(DType::kFloat32), "identity round trip is off by %g", back);
  }
  lshmoe_comm_destroy(comm);
  return kOk;
}

TEST(ExchangeExperts, ManyAndLargePartsTravelApart) {
  for (bool enable : {false, true}) {
    const int port = free_port();
    const auto codes =
        run_ranks({0, 1}, [&](int r) { return many_experts_rank(r, 2, port, enable); });
    EXPECT_EQ(codes, (std::vector<int>{kOk, kOk})) << (enable ? "compressed" : "disabled");
  }
}

}  // namespace
}  // namespace lshmoe
