// The backward of a compressed pair between real processes on loopback: the
// gradients lshmoe_combine_backward and lshmoe_dispatch_backward give,
// against a reference computed here from the forward's definition (the same
// assignment, in double precision), for an identity and a nonlinear expert,
// rows and centroid mode, alpha 0 and 1, 2 to 4 ranks; exactly the plain
// all-to-all's gradient with compression off; finite differences of the
// compressed forward with its assignment frozen; and misuse of the order.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "exchange_rows.h"
#include "multi_process.h"

namespace lshmoe {
namespace {

using namespace test_support;  // NOLINT: the shared rows and job helpers

constexpr size_t H = kRowElems;

// The gradient of the combine's output that rank s gives row i sent to d.
float grad_of(int s, int d, size_t i, size_t j) {
  return 0.5f * token(s + 11, d + 7, i, j) - 0.2f;
}

// A row-wise expert, the same on every rank: tanh(W v + b), or the identity.
struct Expert {
  bool identity;
  std::vector<double> w = std::vector<double>(H * H), b = std::vector<double>(H);
  explicit Expert(bool is_identity) : identity(is_identity) {
    for (size_t r = 0; r < H; ++r) {
      b[r] = 0.1 * std::sin(double(r));
      for (size_t c = 0; c < H; ++c) w[r * H + c] = std::cos(double(r * 31 + c * 17)) / 8.0;
    }
  }
  std::vector<double> forward(const double* v) const {
    std::vector<double> y(v, v + H);
    if (identity) return y;
    for (size_t r = 0; r < H; ++r) {
      double a = b[r];
      for (size_t c = 0; c < H; ++c) a += w[r * H + c] * v[c];
      y[r] = std::tanh(a);
    }
    return y;
  }
  // J(v)^T g.
  std::vector<double> backward(const double* v, const double* g) const {
    std::vector<double> dv(g, g + H);
    if (identity) return dv;
    const std::vector<double> y = forward(v);
    std::fill(dv.begin(), dv.end(), 0.0);
    for (size_t r = 0; r < H; ++r) {
      const double d = g[r] * (1.0 - y[r] * y[r]);
      for (size_t c = 0; c < H; ++c) dv[c] += w[r * H + c] * d;
    }
    return dv;
  }
  // Row-wise over a buffer.
  Buffer apply(const Buffer& in, const Buffer* grad) const {
    Buffer out(in.dtype, in.rows());
    std::vector<double> v(H), g(H);
    for (size_t r = 0; r < in.rows(); ++r) {
      for (size_t j = 0; j < H; ++j) {
        v[j] = in.get(r, j);
        if (grad) g[j] = grad->get(r, j);
      }
      const std::vector<double> y = grad ? backward(v.data(), g.data()) : forward(v.data());
      for (size_t j = 0; j < H; ++j) out.set(r, j, float(y[j]));
    }
    return out;
  }
};

struct Pass {
  Buffer x{DType::kFloat32, 0}, xe = x, y = x, g = x, gye = x, gxe = x, gx = x;
  std::vector<size_t> send, recv;
  std::vector<std::vector<uint32_t>> slots;  // per peer, the slot of each sent row
};

// One training step's four all-to-alls on this rank's rows (x perturbed at
// one element when `nudge`), with the gradient grad_of of the output.
lshmoe_status_t step(lshmoe_comm_t* comm, int me, int world, DType t, lshmoe_dispatch_mode_t mode,
                     const Expert& expert, Pass* p, size_t nudge_row = SIZE_MAX,
                     size_t nudge_col = 0, float nudge = 0.0f) {
  p->x = send_rows_of(me, world, t, &p->send);
  if (nudge_row != SIZE_MAX) p->x.set(nudge_row, nudge_col, p->x.get(nudge_row, nudge_col) + nudge);
  p->recv.assign(size_t(world), 0);
  for (int s = 0; s < world; ++s) p->recv[size_t(s)] = rows_between(s, me);
  std::vector<size_t> expert_rows(static_cast<size_t>(world));
  lshmoe_status_t s =
      lshmoe_comm_expert_rows(comm, p->recv.data(), H, lshmoe_dtype_t(t), mode, expert_rows.data());
  if (s != LSHMOE_SUCCESS) return s;
  size_t total = 0;
  for (size_t r : expert_rows) total += r;
  p->xe = Buffer(t, total);
  lshmoe_handle_t* h = nullptr;
  s = lshmoe_dispatch(comm, p->x.bytes.data(), p->send.data(), p->xe.bytes.data(), p->recv.data(),
                      H, lshmoe_dtype_t(t), mode, &h);
  if (s != LSHMOE_SUCCESS) return s;
  p->slots.assign(size_t(world), {});
  for (int d = 0; d < world && s == LSHMOE_SUCCESS; ++d) {
    p->slots[size_t(d)].resize(p->send[size_t(d)]);
    s = lshmoe_handle_assignment(h, size_t(d), p->slots[size_t(d)].data());
  }
  p->y = Buffer(t, p->x.rows());
  if (s == LSHMOE_SUCCESS) {
    s = lshmoe_combine(comm, h, expert.apply(p->xe, nullptr).bytes.data(), p->y.bytes.data());
  }
  p->g = Buffer(t, p->x.rows());
  for (int d = 0, r = 0; d < world; ++d) {
    for (size_t i = 0; i < p->send[size_t(d)]; ++i, ++r) {
      for (size_t j = 0; j < H; ++j) p->g.set(size_t(r), j, grad_of(me, d, i, j));
    }
  }
  p->gye = Buffer(t, total);
  p->gx = Buffer(t, p->x.rows());
  if (s == LSHMOE_SUCCESS) {
    s = lshmoe_combine_backward(comm, h, p->g.bytes.data(), p->gye.bytes.data());
  }
  if (s == LSHMOE_SUCCESS) {
    p->gxe = expert.apply(p->xe, &p->gye);
    s = lshmoe_dispatch_backward(comm, h, p->gxe.bytes.data(), p->gx.bytes.data());
  }
  lshmoe_handle_free(h);
  return s;
}

// The reference gradient of the compressed forward y_i = E(c_k) + alpha (x_i
// - c_k), c_k the mean of slot k's rows: dx_i = J_E(c_k)^T M_k + alpha (g_i -
// M_k), M_k the mean of g over the slot. Largest error relative to the
// gradient's scale.
double reference_error(const Pass& p, const Expert& expert, double alpha) {
  double worst = 0.0, scale = 1e-3;
  size_t base = 0;
  for (size_t d = 0; d < p.send.size(); ++d) {
    const size_t n = p.send[d];
    const std::vector<uint32_t>& a = p.slots[d];
    const uint32_t k_max = n ? *std::max_element(a.begin(), a.end()) + 1 : 0;
    std::vector<double> c(k_max * H, 0.0), m(k_max * H, 0.0), count(k_max, 0.0);
    for (size_t i = 0; i < n; ++i) {
      count[a[i]] += 1;
      for (size_t j = 0; j < H; ++j) {
        c[a[i] * H + j] += p.x.get(base + i, j);
        m[a[i] * H + j] += p.g.get(base + i, j);
      }
    }
    for (uint32_t k = 0; k < k_max; ++k) {
      for (size_t j = 0; j < H; ++j) {
        c[k * H + j] /= count[k];
        m[k * H + j] /= count[k];
      }
    }
    for (size_t i = 0; i < n; ++i) {
      const std::vector<double> s = expert.backward(&c[a[i] * H], &m[a[i] * H]);
      for (size_t j = 0; j < H; ++j) {
        const double want = s[j] + alpha * (p.g.get(base + i, j) - m[a[i] * H + j]);
        worst = std::max(worst, std::fabs(double(p.gx.get(base + i, j)) - want));
        scale = std::max(scale, std::fabs(want));
      }
    }
    base += n;
  }
  return worst / scale;
}

struct Case {
  int world;
  lshmoe_dispatch_mode_t mode;
  bool identity;
  const char* alpha;
  DType dtype;
};

std::string case_name(const ::testing::TestParamInfo<Case>& info) {
  const Case& c = info.param;
  return std::to_string(c.world) + "ranks_" +
         (c.mode == LSHMOE_DISPATCH_ROWS ? "rows" : "centroids") + "_" +
         (c.identity ? "identity" : "tanh") + "_alpha" + c.alpha + "_" + dtype_name(c.dtype);
}

class Backward : public ::testing::TestWithParam<Case> {};

// The gradient of the compressed forward, against the reference.
TEST_P(Backward, MatchesTheReferenceGradient) {
  const Case c = GetParam();
  const int port = free_port();
  std::vector<int> ranks;
  for (int r = 0; r < c.world; ++r) ranks.push_back(r);
  const std::vector<int> codes = run_ranks(
      ranks,
      [&](int me) {
        set_job_env(me, c.world, port, "tcp,self");
        Options o;
        o.compensate = c.alpha;
        lshmoe_comm_t* comm = create_comm(o);
        if (comm == nullptr) return kFailed;
        const Expert expert(c.identity);
        Pass p;
        CHECK_OK(step(comm, me, c.world, c.dtype, c.mode, expert, &p));
        bool merged = false;  // some rows shared a slot
        for (const auto& a : p.slots) {
          std::vector<uint32_t> sorted = a;
          std::sort(sorted.begin(), sorted.end());
          merged = merged || std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end();
        }
        CHECK(merged || c.world == 2, "no rows were merged: nothing compressed?");
        const double err = reference_error(p, expert, std::atof(c.alpha));
        const double tolerance = c.dtype == DType::kFloat32 ? 2e-5 : 2e-2;
        CHECK(err <= tolerance, "gradient off the reference by %g (tolerance %g)", err, tolerance);
        lshmoe_comm_destroy(comm);
        return kOk;
      },
      60000);
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << ranks[i];
}

INSTANTIATE_TEST_SUITE_P(
    Loopback, Backward,
    ::testing::Values(Case{2, LSHMOE_DISPATCH_ROWS, true, "1", DType::kFloat32},
                      Case{3, LSHMOE_DISPATCH_ROWS, false, "1", DType::kFloat32},
                      Case{3, LSHMOE_DISPATCH_ROWS, false, "0", DType::kFloat32},
                      Case{4, LSHMOE_DISPATCH_CENTROIDS, false, "1", DType::kFloat32},
                      Case{3, LSHMOE_DISPATCH_CENTROIDS, true, "0", DType::kFloat32},
                      Case{3, LSHMOE_DISPATCH_ROWS, false, "1", DType::kBFloat16},
                      Case{2, LSHMOE_DISPATCH_CENTROIDS, false, "1", DType::kFloat16}),
    case_name);

// With compression off both gradients are the plain all-to-all's, bit for
// bit: the expert side gets exactly the rows of grad_out its peers sent.
TEST(BackwardDisabled, IsExactlyThePlainAllToAllGradient) {
  const int port = free_port(), world = 3;
  const std::vector<int> codes = run_ranks({0, 1, 2}, [&](int me) {
    set_job_env(me, world, port, "tcp,self");
    Options o;
    o.enable = false;
    lshmoe_comm_t* comm = create_comm(o);
    if (comm == nullptr) return kFailed;
    const Expert identity(true);
    Pass p;
    CHECK_OK(step(comm, me, world, DType::kBFloat16, LSHMOE_DISPATCH_ROWS, identity, &p));
    for (int s = 0, r = 0; s < world; ++s) {
      for (size_t i = 0; i < p.recv[size_t(s)]; ++i, ++r) {
        for (size_t j = 0; j < H; ++j) {
          Buffer want(DType::kBFloat16, 1);
          want.set(0, j, grad_of(s, me, i, j));
          CHECK(p.gye.get(size_t(r), j) == want.get(0, j), "expert gradient row %d differs", r);
        }
      }
    }
    CHECK(p.gx.bytes == p.g.bytes, "the identity's input gradient is not grad_out");
    lshmoe_comm_destroy(comm);
    return kOk;
  });
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << i;
}

// Central differences of L = sum g . y through the real compressed forward
// (every rank nudges one of its own elements; the expert is row-wise, so
// each rank's L depends on its own rows only), where the nudge left the
// assignment as it was.
TEST(BackwardFiniteDifferences, AgreeWithTheGradient) {
  const int port = free_port(), world = 2;
  const std::vector<int> codes = run_ranks(
      {0, 1},
      [&](int me) {
        set_job_env(me, world, port, "tcp,self");
        lshmoe_comm_t* comm = create_comm(Options{});
        if (comm == nullptr) return kFailed;
        const Expert expert(false);
        Pass base;
        CHECK_OK(step(comm, me, world, DType::kFloat32, LSHMOE_DISPATCH_ROWS, expert, &base));
        auto loss = [&](const Pass& q) {
          double l = 0.0;
          for (size_t r = 0; r < q.y.rows(); ++r)
            for (size_t j = 0; j < H; ++j) l += double(q.g.get(r, j)) * q.y.get(r, j);
          return l;
        };
        const float eps = 1e-2f;
        int checked = 0;
        for (size_t probe = 0; probe < 6; ++probe) {
          const size_t row = (probe * 37 + size_t(me) * 5) % base.x.rows(), col = probe * 11 % H;
          Pass plus, minus;
          CHECK_OK(step(comm, me, world, DType::kFloat32, LSHMOE_DISPATCH_ROWS, expert, &plus, row,
                        col, eps));
          CHECK_OK(step(comm, me, world, DType::kFloat32, LSHMOE_DISPATCH_ROWS, expert, &minus, row,
                        col, -eps));
          if (plus.slots != base.slots || minus.slots != base.slots) continue;  // not frozen
          const double fd = (loss(plus) - loss(minus)) / (2.0 * eps);
          const double analytic = base.gx.get(row, col);
          CHECK(std::fabs(fd - analytic) <= 2e-3 + 1e-2 * std::fabs(analytic),
                "row %zu col %zu: finite difference %g, gradient %g", row, col, fd, analytic);
          ++checked;
        }
        CHECK(checked >= 3, "only %d probes kept the assignment", checked);
        lshmoe_comm_destroy(comm);
        return kOk;
      },
      60000);
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << i;
}

// Out of order or twice: an error naming the step, before any message moves
// (so no rank waits for another), and the communicator stays usable.
TEST(BackwardMisuse, OutOfOrderOrRepeatedStepsAreErrors) {
  const int port = free_port(), world = 2;
  const std::vector<int> codes = run_ranks({0, 1}, [&](int me) {
    set_job_env(me, world, port, "tcp,self");
    lshmoe_comm_t* comm = create_comm(Options{});
    if (comm == nullptr) return kFailed;
    std::vector<size_t> send, recv(static_cast<size_t>(world));
    const Buffer x = send_rows_of(me, world, DType::kFloat32, &send);
    size_t total = 0;
    for (int s = 0; s < world; ++s) total += recv[size_t(s)] = rows_between(s, me);
    Buffer xe(DType::kFloat32, total), y(DType::kFloat32, x.rows());
    Buffer gye(DType::kFloat32, total), gx(DType::kFloat32, x.rows());
    lshmoe_handle_t* h = nullptr;
    CHECK_OK(lshmoe_dispatch(comm, x.bytes.data(), send.data(), xe.bytes.data(), recv.data(), H,
                             LSHMOE_FLOAT32, LSHMOE_DISPATCH_ROWS, &h));
    auto names = [](const char* word) {
      return std::string(lshmoe_last_error()).find(word) != std::string::npos;
    };
    CHECK(lshmoe_combine_backward(comm, h, x.bytes.data(), gye.bytes.data()) ==
                  LSHMOE_ERR_CONTEXT_MISMATCH &&
              names("combine backward") && names("combined"),
          "combine backward before the combine: %s", lshmoe_last_error());
    CHECK(lshmoe_dispatch_backward(comm, h, xe.bytes.data(), gx.bytes.data()) ==
              LSHMOE_ERR_CONTEXT_MISMATCH,
          "dispatch backward before the combine: %s", lshmoe_last_error());
    CHECK_OK(lshmoe_combine(comm, h, xe.bytes.data(), y.bytes.data()));
    CHECK(lshmoe_dispatch_backward(comm, h, xe.bytes.data(), gx.bytes.data()) ==
              LSHMOE_ERR_CONTEXT_MISMATCH,
          "dispatch backward before the combine backward: %s", lshmoe_last_error());
    CHECK(
        lshmoe_combine_backward(comm, h, nullptr, gye.bytes.data()) == LSHMOE_ERR_INVALID_ARGUMENT,
        "a NULL gradient: %s", lshmoe_last_error());
    CHECK_OK(lshmoe_combine_backward(comm, h, y.bytes.data(), gye.bytes.data()));
    CHECK(lshmoe_combine_backward(comm, h, y.bytes.data(), gye.bytes.data()) ==
              LSHMOE_ERR_CONTEXT_MISMATCH,
          "combine backward twice: %s", lshmoe_last_error());
    CHECK_OK(lshmoe_dispatch_backward(comm, h, gye.bytes.data(), gx.bytes.data()));
    CHECK(lshmoe_dispatch_backward(comm, h, gye.bytes.data(), gx.bytes.data()) ==
              LSHMOE_ERR_CONTEXT_MISMATCH,
          "dispatch backward twice: %s", lshmoe_last_error());
    lshmoe_handle_free(h);
    // Still usable.
    CHECK_OK(lshmoe_dispatch(comm, x.bytes.data(), send.data(), xe.bytes.data(), recv.data(), H,
                             LSHMOE_FLOAT32, LSHMOE_DISPATCH_ROWS, &h));
    CHECK_OK(lshmoe_combine(comm, h, xe.bytes.data(), y.bytes.data()));
    lshmoe_handle_free(h);
    lshmoe_comm_destroy(comm);
    return kOk;
  });
  for (size_t i = 0; i < codes.size(); ++i) EXPECT_EQ(codes[i], kOk) << "rank " << i;
}

}  // namespace
}  // namespace lshmoe
