// The CUDA back end against the CPU one, on a real device (skipped without
// one), for every dtype: bucket keys, wire compatibility both ways, the
// same bytes where the assignments agree, combine bytes, energies, the
// identity round trip, CUDA-graph replay of encode and decode, and corrupt
// input rejected with the CPU's codes while the other messages still decode,
// and the backward against the CPU's under the same assignments.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "codec/cpu/grouping.h"
#include "codec/cpu/projection.h"
#include "codec/cuda/cuda_codec.h"
#include "codec/projection_spec.h"
#include "codec/wire_format.h"
#include "common/dtype.h"
#include "common/thread_pool.h"

namespace lshmoe {
namespace {

bool have_device() {
  int n = 0;
  return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

struct Device {
  void* p = nullptr;
  explicit Device(size_t bytes) { EXPECT_EQ(cudaMalloc(&p, bytes ? bytes : 1), cudaSuccess); }
  ~Device() { cudaFree(p); }
};

constexpr size_t kH = 256;

// Rows of one dtype, as bytes.
struct Rows {
  DType t;
  std::vector<uint8_t> bytes;
  Rows(DType type, size_t rows) : t(type), bytes(rows * kH * dtype_size(type)) {}
  size_t elems() const { return bytes.size() / dtype_size(t); }
  float get(size_t i) const { return load_elem(t, bytes.data(), i); }
  void set(size_t i, float v) { store_elem(t, bytes.data(), i, v); }
  const uint8_t* row(size_t r) const { return bytes.data() + r * kH * dtype_size(t); }
  uint8_t* row(size_t r) { return bytes.data() + r * kH * dtype_size(t); }
};

// Clustered rows: a shared offset, 16 centres, noise.
Rows clustered(DType t, size_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> centres(16 * kH), offset(kH);
  for (float& v : offset) v = normal(rng);
  for (float& v : centres) v = normal(rng);
  Rows out(t, rows);
  for (size_t i = 0; i < rows; ++i) {
    const size_t c = rng() % 16;
    for (size_t j = 0; j < kH; ++j) {
      out.set(i * kH + j, offset[j] + centres[c * kH + j] + 0.3f * normal(rng));
    }
  }
  return out;
}

struct Batch {
  std::vector<size_t> rows;
  std::vector<size_t> wire_offsets, combine_offsets;
  std::vector<lshmoe_plan_t> plans;
  size_t total_rows = 0, wire_bytes = 0, combine_bytes = 0;
  Rows x;
  // By default: empty, raw, compressed x2.
  Batch(const cpu::CpuCodec& codec, DType t, std::vector<size_t> counts = {0, 20, 1000, 3000})
      : rows(std::move(counts)), x(t, 0) {
    for (size_t n : rows) {
      lshmoe_plan_t p;
      EXPECT_EQ(codec.plan(n, kH, t, &p), LSHMOE_SUCCESS);
      plans.push_back(p);
      wire_offsets.push_back(wire_bytes);
      combine_offsets.push_back(combine_bytes);
      wire_bytes += (p.dispatch_bytes + 15) / 16 * 16;
      combine_bytes += (p.combine_bytes + 15) / 16 * 16;
      total_rows += n;
    }
    x = clustered(t, total_rows, 7);
  }
  size_t row_offset(size_t m) const {
    size_t r = 0;
    for (size_t k = 0; k < m; ++k) r += rows[k];
    return r;
  }
};

class CudaCodecTest : public ::testing::TestWithParam<DType> {
 protected:
  void SetUp() override {
    if (!have_device()) GTEST_SKIP() << "no CUDA device";
    t_ = GetParam();
    ASSERT_EQ(cpu::CpuCodec::create(config_, &cpu_), LSHMOE_SUCCESS) << last_error();
    ASSERT_EQ(cuda::CudaCodec::create(config_, &gpu_), LSHMOE_SUCCESS) << last_error();
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    gpu_.reset();
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  // Encodes the batch on the GPU (into a wire poisoned with 0xaa bytes);
  // returns the wire on the host.
  std::vector<uint8_t> gpu_encode(const Batch& b, cuda::BatchContext* ctx) {
    Device rows(b.x.bytes.size()), wire(b.wire_bytes);
    EXPECT_EQ(cudaMemcpy(rows.p, b.x.bytes.data(), b.x.bytes.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    EXPECT_EQ(cudaMemset(wire.p, 0xaa, b.wire_bytes), cudaSuccess);
    EXPECT_EQ(gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, t_, 5, wire.p,
                                    b.wire_offsets.data(), ctx, stream_),
              LSHMOE_SUCCESS)
        << last_error();
    std::vector<uint8_t> out(b.wire_bytes);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), wire.p, out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
  // Decodes a wire on the GPU into rows (poisoned with 0xff bytes first).
  Rows gpu_decode(const Batch& b, const std::vector<uint8_t>& wire_host, cuda::BatchContext* ctx,
                  Status* errors) {
    Device wire(wire_host.size()), rows(b.x.bytes.size());
    EXPECT_EQ(cudaMemcpy(wire.p, wire_host.data(), wire_host.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    EXPECT_EQ(cudaMemset(rows.p, 0xff, b.x.bytes.size()), cudaSuccess);
    EXPECT_EQ(gpu_->dispatch_decode(wire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                    t_, 5, rows.p, ctx, stream_),
              LSHMOE_SUCCESS)
        << last_error();
    *errors = gpu_->check_errors(stream_);
    Rows out(t_, b.total_rows);
    EXPECT_EQ(cudaMemcpy(out.bytes.data(), rows.p, out.bytes.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    return out;
  }

  DType t_ = DType::kBFloat16;
  Config config_;
  std::unique_ptr<cpu::CpuCodec> cpu_;
  std::unique_ptr<cuda::CudaCodec> gpu_;
  cudaStream_t stream_ = nullptr;
};

TEST_P(CudaCodecTest, GpuMessagesDecodeOnTheCpuAndMatchItsEncoder) {
  Batch b(*cpu_, t_);
  cuda::BatchContext ctx;
  const std::vector<uint8_t> wire = gpu_encode(b, &ctx);
  for (size_t m = 0; m < b.rows.size(); ++m) {
    const lshmoe_plan_t& p = b.plans[m];
    const size_t n = b.rows[m];
    const uint8_t* x = b.x.row(b.row_offset(m));
    Rows from_gpu(t_, n), from_cpu(t_, n);
    cpu::ExpertContext e1, e2;
    ASSERT_EQ(cpu_->dispatch_decode(wire.data() + b.wire_offsets[m], p.dispatch_bytes, n, kH, t_, 5,
                                    from_gpu.bytes.data(), &e1),
              LSHMOE_SUCCESS)
        << "message " << m << ": " << last_error();
    if (!p.compressed) {
      EXPECT_EQ(0, memcmp(from_gpu.bytes.data(), x, from_gpu.bytes.size())) << "raw " << m;
      continue;
    }
    // Every byte of the message written: the assignment's padding, the
    // unused slots and the tail are zero, as the CPU writes them.
    {
      const uint8_t* msg = wire.data() + b.wire_offsets[m];
      const wire::Layout l = wire::layout(LSHMOE_DISPATCH, n, kH, t_, p.slots);
      uint32_t used = 0;
      for (uint32_t a : e1.assignment) used = std::max(used, a + 1);
      const size_t assigned = l.assignment_offset + wire::index_width(p.slots) * n;
      for (size_t k = assigned; k < l.slots_offset; ++k) {
        ASSERT_EQ(msg[k], 0) << "message " << m << ": assignment padding at " << k;
      }
      for (size_t k = l.slots_offset + size_t(used) * kH * dtype_size(t_); k < l.total_bytes; ++k) {
        ASSERT_EQ(msg[k], 0) << "message " << m << ": slot padding at " << k;
      }
    }
    // The CPU encoder on the same rows: the same grouping (up to slot
    // numbers) for nearly every row, the same quality, and the same bytes
    // wherever the two assignments agree.
    std::vector<uint8_t> cpu_wire(p.dispatch_bytes);
    cpu::OriginContext o;
    ASSERT_EQ(cpu_->dispatch_encode(x, n, kH, t_, 5, cpu_wire.data(), cpu_wire.size(), &o),
              LSHMOE_SUCCESS);
    ASSERT_EQ(cpu_->dispatch_decode(cpu_wire.data(), cpu_wire.size(), n, kH, t_, 5,
                                    from_cpu.bytes.data(), &e2),
              LSHMOE_SUCCESS);
    // Co-membership: each row labelled by the first row of its slot.
    auto first_rows = [&](const std::vector<uint32_t>& a) {
      std::vector<uint32_t> first(n, UINT32_MAX), label(n);
      for (size_t i = 0; i < n; ++i) {
        if (first[a[i]] == UINT32_MAX) first[a[i]] = uint32_t(i);
        label[i] = first[a[i]];
      }
      return label;
    };
    const std::vector<uint32_t> l1 = first_rows(e1.assignment), l2 = first_rows(e2.assignment);
    size_t same = 0, identical = 0;
    for (size_t i = 0; i < n; ++i) {
      same += l1[i] == l2[i];
      identical += e1.assignment[i] == e2.assignment[i];
    }
    EXPECT_GE(double(same), 0.99 * double(n)) << "message " << m;
    auto error = [&](const Rows& y) {
      double e = 0, norm = 0;
      for (size_t i = 0; i < y.elems(); ++i) {
        const double want = load_elem(t_, x, i);
        e += (y.get(i) - want) * (y.get(i) - want);
        norm += want * want;
      }
      return std::sqrt(e / norm);
    };
    EXPECT_NEAR(error(from_gpu), error(from_cpu), 0.02 * error(from_cpu)) << "message " << m;
    if (identical == n) {
      EXPECT_EQ(0, memcmp(wire.data() + b.wire_offsets[m], cpu_wire.data(), p.dispatch_bytes))
          << "message " << m << ": equal assignments, different bytes";
    }
  }
  // The energies the device summed over the compressed rows, against the
  // CPU's over the same rows (the CPU encoded each compressed message once).
  double input = 0, residual = 0;
  ASSERT_EQ(gpu_->read_energies(&input, &residual), LSHMOE_SUCCESS) << last_error();
  const lshmoe_stats_t cpu = cpu_->stats();
  EXPECT_GT(cpu.input_energy, 0.0);
  EXPECT_NEAR(input, cpu.input_energy, 1e-4 * cpu.input_energy);
  EXPECT_NEAR(residual, cpu.residual_energy, 0.05 * cpu.residual_energy);
}

// Independent normal rows: no cluster structure to help the hash.
Rows random_rows(DType t, size_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  Rows out(t, rows);
  for (size_t i = 0; i < out.elems(); ++i) out.set(i, normal(rng));
  return out;
}

// The bucket keys of the GPU (cuBLAS projection, device centring and
// hashing) against the CPU's, message by message, on random and clustered
// rows: summation order may flip near-ties, so at least 99.9 % must agree.
TEST_P(CudaCodecTest, HashCodesAgreeWithTheCpu) {
  const std::vector<size_t> counts = {4096, 1000, 3000};
  size_t total = 0;
  for (size_t n : counts) total += n;
  for (const bool clustered_rows : {false, true}) {
    const Rows x = clustered_rows ? clustered(t_, total, 21) : random_rows(t_, total, 22);
    Device rows(x.bytes.size()), keys(total * sizeof(uint64_t));
    ASSERT_EQ(cudaMemcpy(rows.p, x.bytes.data(), x.bytes.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(gpu_->hash_keys(rows.p, counts.data(), counts.size(), kH, t_,
                              static_cast<uint64_t*>(keys.p), stream_),
              LSHMOE_SUCCESS)
        << last_error();
    ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    std::vector<uint64_t> got(total);
    ASSERT_EQ(cudaMemcpy(got.data(), keys.p, total * sizeof(uint64_t), cudaMemcpyDeviceToHost),
              cudaSuccess);
    cpu::Projection proj;
    cpu::build_projection(projection_spec(config_, kH), int(config_.hashes), int(config_.proj_dim),
                          t_, &proj);
    ThreadPool pool(1);
    size_t first = 0, agree = 0;
    for (size_t n : counts) {
      std::vector<float> y(n * proj.cols);
      std::vector<uint64_t> want(n);
      cpu::project_rows(cpu_->kernels(), pool, proj, t_, x.row(first), n, config_.center, y.data());
      cpu::hash_keys(y.data(), n, proj.cols, proj.tables, proj.dim, want.data());
      for (size_t i = 0; i < n; ++i) agree += got[first + i] == want[i];
      first += n;
    }
    EXPECT_GE(double(agree), 0.999 * double(total))
        << (clustered_rows ? "clustered" : "random") << " rows: " << agree << " of " << total;
  }
}

// Identical keys give identical groups: without spare slots and Lloyd
// steps (which look at projected values, where summation order may differ)
// the GPU's assignment of every message is the CPU's grouping of the GPU's
// own keys, exactly.
TEST_P(CudaCodecTest, TheGpuGroupsItsKeysAsTheCpuDoes) {
  Config c = config_;
  c.spare_slots = false;
  c.refine = 0;
  std::unique_ptr<cpu::CpuCodec> cpu;
  std::unique_ptr<cuda::CudaCodec> gpu;
  ASSERT_EQ(cpu::CpuCodec::create(c, &cpu), LSHMOE_SUCCESS) << last_error();
  ASSERT_EQ(cuda::CudaCodec::create(c, &gpu), LSHMOE_SUCCESS) << last_error();
  Batch b(*cpu, t_);
  Device rows(b.x.bytes.size()), wire(b.wire_bytes), keys(b.total_rows * sizeof(uint64_t));
  ASSERT_EQ(cudaMemcpy(rows.p, b.x.bytes.data(), b.x.bytes.size(), cudaMemcpyHostToDevice),
            cudaSuccess);
  cuda::BatchContext ctx;
  ASSERT_EQ(gpu->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, t_, 5, wire.p,
                                 b.wire_offsets.data(), &ctx, stream_),
            LSHMOE_SUCCESS)
      << last_error();
  ASSERT_EQ(gpu->hash_keys(rows.p, b.rows.data(), b.rows.size(), kH, t_,
                           static_cast<uint64_t*>(keys.p), stream_),
            LSHMOE_SUCCESS)
      << last_error();
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  std::vector<uint8_t> wire_host(b.wire_bytes);
  std::vector<uint64_t> keys_host(b.total_rows);
  ASSERT_EQ(cudaMemcpy(wire_host.data(), wire.p, b.wire_bytes, cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(keys_host.data(), keys.p, keys_host.size() * sizeof(uint64_t),
                       cudaMemcpyDeviceToHost),
            cudaSuccess);
  size_t compared = 0;
  for (size_t m = 0; m < b.rows.size(); ++m) {
    const lshmoe_plan_t& p = b.plans[m];
    if (!p.compressed) continue;
    const size_t n = b.rows[m];
    Rows decoded(t_, n);
    cpu::ExpertContext e;
    ASSERT_EQ(cpu->dispatch_decode(wire_host.data() + b.wire_offsets[m], p.dispatch_bytes, n, kH,
                                   t_, 5, decoded.bytes.data(), &e),
              LSHMOE_SUCCESS)
        << last_error();
    std::vector<cpu::KeyedRow> scratch;
    std::vector<uint32_t> want(n);
    cpu::group_isolating(keys_host.data() + b.row_offset(m), n, key_bits(c), p.slots, {}, scratch,
                         want.data());
    EXPECT_EQ(e.assignment, want) << "message " << m;
    ++compared;
  }
  EXPECT_EQ(compared, 2u);
}

// A row holding a NaN and one holding an infinity share a slot of their
// own, and their energies stay out of the totals on both back ends.
TEST_P(CudaCodecTest, EnergiesLeaveOutNonFiniteRowsAsTheCpuDoes) {
  Batch b(*cpu_, t_);
  const size_t first = b.row_offset(2);
  b.x.set((first + 5) * kH + 3, std::nanf(""));
  b.x.set((first + 9) * kH, INFINITY);
  cuda::BatchContext ctx;
  const std::vector<uint8_t> wire = gpu_encode(b, &ctx);
  for (size_t m = 0; m < b.rows.size(); ++m) {
    const lshmoe_plan_t& p = b.plans[m];
    if (!p.compressed) continue;
    std::vector<uint8_t> cpu_wire(p.dispatch_bytes);
    Rows decoded(t_, b.rows[m]);
    cpu::OriginContext o;
    cpu::ExpertContext e;
    ASSERT_EQ(cpu_->dispatch_encode(b.x.row(b.row_offset(m)), b.rows[m], kH, t_, 5, cpu_wire.data(),
                                    cpu_wire.size(), &o),
              LSHMOE_SUCCESS);
    ASSERT_EQ(cpu_->dispatch_decode(wire.data() + b.wire_offsets[m], p.dispatch_bytes, b.rows[m],
                                    kH, t_, 5, decoded.bytes.data(), &e),
              LSHMOE_SUCCESS)
        << "message " << m << ": " << last_error();
  }
  double input = 0, residual = 0;
  ASSERT_EQ(gpu_->read_energies(&input, &residual), LSHMOE_SUCCESS) << last_error();
  const lshmoe_stats_t cpu = cpu_->stats();
  ASSERT_TRUE(std::isfinite(cpu.input_energy) && std::isfinite(cpu.residual_energy));
  EXPECT_TRUE(std::isfinite(input) && std::isfinite(residual)) << input << " " << residual;
  EXPECT_NEAR(input, cpu.input_energy, 1e-4 * cpu.input_energy);
  EXPECT_NEAR(residual, cpu.residual_energy, 0.05 * cpu.residual_energy);
}

TEST_P(CudaCodecTest, CpuMessagesDecodeOnTheGpuBitForBit) {
  Batch b(*cpu_, t_);
  std::vector<uint8_t> wire(b.wire_bytes, 0);
  Rows want(t_, b.total_rows);
  for (size_t m = 0; m < b.rows.size(); ++m) {
    cpu::OriginContext o;
    cpu::ExpertContext e;
    const size_t r = b.row_offset(m);
    ASSERT_EQ(cpu_->dispatch_encode(b.x.row(r), b.rows[m], kH, t_, 5,
                                    wire.data() + b.wire_offsets[m], b.plans[m].dispatch_bytes, &o),
              LSHMOE_SUCCESS);
    ASSERT_EQ(cpu_->dispatch_decode(wire.data() + b.wire_offsets[m], b.plans[m].dispatch_bytes,
                                    b.rows[m], kH, t_, 5, want.row(r), &e),
              LSHMOE_SUCCESS);
  }
  cuda::BatchContext ctx;
  Status errors;
  const Rows got = gpu_decode(b, wire, &ctx, &errors);
  EXPECT_EQ(errors, LSHMOE_SUCCESS) << last_error();
  EXPECT_EQ(got.bytes, want.bytes);
}

// Combine encoding over the CPU's assignments (a CPU dispatch decoded on the
// GPU): the GPU's slot means, singletons, padding and headers equal the
// CPU's bytes, every byte written (the GPU's wire is poisoned first).
TEST_P(CudaCodecTest, CombineOverCpuAssignmentsMatchesTheCpuBitForBit) {
  Batch b(*cpu_, t_);
  const Rows y = clustered(t_, b.total_rows, 11);  // the expert's outputs
  std::vector<uint8_t> wire(b.wire_bytes, 0), want(b.combine_bytes, 0);
  for (size_t m = 0; m < b.rows.size(); ++m) {
    const lshmoe_plan_t& p = b.plans[m];
    const size_t r = b.row_offset(m);
    cpu::OriginContext o;
    cpu::ExpertContext e;
    Rows expanded(t_, b.rows[m]);
    ASSERT_EQ(cpu_->dispatch_encode(b.x.row(r), b.rows[m], kH, t_, 5,
                                    wire.data() + b.wire_offsets[m], p.dispatch_bytes, &o),
              LSHMOE_SUCCESS);
    if (!p.compressed) {
      memcpy(want.data() + b.combine_offsets[m], y.row(r), b.rows[m] * kH * dtype_size(t_));
      continue;
    }
    ASSERT_EQ(cpu_->dispatch_decode(wire.data() + b.wire_offsets[m], p.dispatch_bytes, b.rows[m],
                                    kH, t_, 5, expanded.bytes.data(), &e),
              LSHMOE_SUCCESS);
    ASSERT_EQ(
        cpu_->combine_encode(e, y.row(r), 6, want.data() + b.combine_offsets[m], p.combine_bytes),
        LSHMOE_SUCCESS)
        << last_error();
  }
  const size_t bytes = b.x.bytes.size();
  Device dwire(b.wire_bytes), dexpanded(bytes), dy(bytes), dcombine(b.combine_bytes);
  ASSERT_EQ(cudaMemcpy(dwire.p, wire.data(), wire.size(), cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(dy.p, y.bytes.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(cudaMemset(dcombine.p, 0xaa, b.combine_bytes), cudaSuccess);
  cuda::BatchContext ctx;
  ASSERT_EQ(gpu_->dispatch_decode(dwire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                  t_, 5, dexpanded.p, &ctx, stream_),
            LSHMOE_SUCCESS)
      << last_error();
  ASSERT_EQ(gpu_->combine_encode(ctx, dy.p, 6, dcombine.p, b.combine_offsets.data(), stream_),
            LSHMOE_SUCCESS)
      << last_error();
  ASSERT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
  std::vector<uint8_t> got(b.combine_bytes);
  ASSERT_EQ(cudaMemcpy(got.data(), dcombine.p, got.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  for (size_t m = 0; m < b.rows.size(); ++m) {
    const size_t len =
        b.plans[m].compressed ? b.plans[m].combine_bytes : b.rows[m] * kH * dtype_size(t_);
    EXPECT_EQ(0, memcmp(got.data() + b.combine_offsets[m], want.data() + b.combine_offsets[m], len))
        << "message " << m;
  }
}

// Centroid mode on CPU-encoded messages: the GPU hands the expert the same
// slots as the CPU does, and turns per-slot outputs into the same combine bytes.
TEST_P(CudaCodecTest, CentroidModeMatchesTheCpu) {
  Batch b(*cpu_, t_);
  std::vector<uint8_t> wire(b.wire_bytes, 0), want_combine(b.combine_bytes, 0);
  std::vector<size_t> expert_rows;
  size_t expert_total = 0;
  for (size_t m = 0; m < b.rows.size(); ++m) {
    expert_rows.push_back(b.plans[m].compressed ? b.plans[m].slots : b.rows[m]);
    expert_total += expert_rows.back();
  }
  Rows want(t_, expert_total);
  size_t at = 0;
  for (size_t m = 0; m < b.rows.size(); ++m) {
    cpu::OriginContext o;
    cpu::ExpertContext e;
    const lshmoe_plan_t& p = b.plans[m];
    ASSERT_EQ(cpu_->dispatch_encode(b.x.row(b.row_offset(m)), b.rows[m], kH, t_, 5,
                                    wire.data() + b.wire_offsets[m], p.dispatch_bytes, &o),
              LSHMOE_SUCCESS);
    ASSERT_EQ(cpu_->dispatch_decode_slots(wire.data() + b.wire_offsets[m], p.dispatch_bytes,
                                          b.rows[m], kH, t_, 5, want.row(at), &e),
              LSHMOE_SUCCESS);
    // Per-slot outputs: the slots themselves.
    ASSERT_EQ(cpu_->combine_encode_slots(
                  e, want.row(at), 6, want_combine.data() + b.combine_offsets[m], p.combine_bytes),
              LSHMOE_SUCCESS);
    at += expert_rows[m];
  }
  Device dwire(b.wire_bytes), dslots(want.bytes.size()), dcombine(b.combine_bytes);
  ASSERT_EQ(cudaMemcpy(dwire.p, wire.data(), wire.size(), cudaMemcpyHostToDevice), cudaSuccess);
  cuda::BatchContext ctx;
  ASSERT_EQ(gpu_->dispatch_decode_slots(dwire.p, b.wire_offsets.data(), b.rows.data(),
                                        b.rows.size(), kH, t_, 5, dslots.p, &ctx, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(
      gpu_->combine_encode_slots(ctx, dslots.p, 6, dcombine.p, b.combine_offsets.data(), stream_),
      LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
  Rows got(t_, expert_total);
  std::vector<uint8_t> got_combine(b.combine_bytes);
  ASSERT_EQ(cudaMemcpy(got.bytes.data(), dslots.p, got.bytes.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(got_combine.data(), dcombine.p, got_combine.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(got.bytes, want.bytes);
  EXPECT_EQ(got_combine, want_combine);
}

TEST_P(CudaCodecTest, IdentityExpertRoundTripReturnsTheInput) {
  Batch b(*cpu_, t_);
  cuda::BatchContext origin, expert;
  const size_t bytes = b.x.bytes.size();
  Device rows(bytes), wire(b.wire_bytes), expanded(bytes), back(bytes), wire2(b.combine_bytes);
  ASSERT_EQ(cudaMemcpy(rows.p, b.x.bytes.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, t_, 1, wire.p,
                                  b.wire_offsets.data(), &origin, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->dispatch_decode(wire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                  t_, 1, expanded.p, &expert, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->combine_encode(expert, expanded.p, 2, wire2.p, b.combine_offsets.data(), stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->combine_decode(origin, wire2.p, b.combine_offsets.data(), 2, back.p, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
  Rows y(t_, b.total_rows);
  ASSERT_EQ(cudaMemcpy(y.bytes.data(), back.p, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  // y = round(c + round(x - c)): two roundings in the dtype, each bounded by
  // the rows' own magnitude.
  double worst = 0, largest = 0;
  for (size_t i = 0; i < y.elems(); ++i) {
    worst = std::max(worst, std::fabs(double(y.get(i)) - b.x.get(i)));
    largest = std::max(largest, std::fabs(double(b.x.get(i))));
  }
  EXPECT_LT(worst, (t_ == DType::kFloat32 ? 1e-6 : 0.02) * largest);
}

// The regrouped combine (the shim's default): with the identity expert the
// outputs are the expanded rows, regrouped they come back within the
// dispatch's error of x; a message of another pair is rejected and writes
// nothing.
TEST_P(CudaCodecTest, RegroupedCombineReturnsTheRowsAndRejectsAnotherPair) {
  Batch b(*cpu_, t_);
  cuda::BatchContext origin, expert;
  const size_t bytes = b.x.bytes.size();
  Device rows(bytes), wire(b.wire_bytes), expanded(bytes), back(bytes), wire2(b.wire_bytes);
  ASSERT_EQ(cudaMemcpy(rows.p, b.x.bytes.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, t_, 1, wire.p,
                                  b.wire_offsets.data(), &origin, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->dispatch_decode(wire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                  t_, 1, expanded.p, &expert, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->combine_encode_regrouped(expert, expanded.p, 2, wire2.p, b.wire_offsets.data(),
                                           stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(
      gpu_->combine_decode_regrouped(origin, wire2.p, b.wire_offsets.data(), 2, back.p, stream_),
      LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
  Rows y(t_, b.total_rows), xh(t_, b.total_rows);
  ASSERT_EQ(cudaMemcpy(y.bytes.data(), back.p, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(xh.bytes.data(), expanded.p, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  // y = Yhat[b(i)] + (x - c): off from x by the regrouping's error of x_hat.
  double err = 0, dispatch_err = 0, norm = 0;
  for (size_t i = 0; i < y.elems(); ++i) {
    err += (double(y.get(i)) - b.x.get(i)) * (double(y.get(i)) - b.x.get(i));
    dispatch_err += (double(xh.get(i)) - b.x.get(i)) * (double(xh.get(i)) - b.x.get(i));
    norm += double(b.x.get(i)) * b.x.get(i);
  }
  EXPECT_LT(std::sqrt(err / norm), 1.5 * std::sqrt(dispatch_err / norm) + 0.01);
  // Another pair's sequence number: rejected, the rows untouched.
  ASSERT_EQ(cudaMemset(back.p, 0x5a, bytes), cudaSuccess);
  ASSERT_EQ(
      gpu_->combine_decode_regrouped(origin, wire2.p, b.wire_offsets.data(), 3, back.p, stream_),
      LSHMOE_SUCCESS);
  EXPECT_EQ(gpu_->check_errors(stream_), LSHMOE_ERR_WIRE_BAD_SEQUENCE);
  std::vector<uint8_t> after(bytes);
  ASSERT_EQ(cudaMemcpy(after.data(), back.p, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  const size_t raw_bytes = b.row_offset(2) * kH * dtype_size(t_);  // messages 0 and 1 are raw
  for (size_t i = raw_bytes; i < bytes; ++i) ASSERT_EQ(after[i], 0x5a) << "byte " << i;
}

TEST_P(CudaCodecTest, GraphReplayOfEncodeAndDecodeGivesTheSameBytes) {
  Batch b(*cpu_, t_);
  cuda::BatchContext origin, expert;
  const size_t bytes = b.x.bytes.size();
  Device rows(bytes), wire(b.wire_bytes), out(bytes);
  ASSERT_EQ(cudaMemcpy(rows.p, b.x.bytes.data(), bytes, cudaMemcpyHostToDevice), cudaSuccess);
  auto both = [&] {
    Status s = gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, t_, 3, wire.p,
                                     b.wire_offsets.data(), &origin, stream_);
    if (s != LSHMOE_SUCCESS) return s;
    return gpu_->dispatch_decode(wire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                 t_, 3, out.p, &expert, stream_);
  };
  ASSERT_EQ(both(), LSHMOE_SUCCESS);  // warm-up: scratch and projection allocated
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  std::vector<uint8_t> eager_wire(b.wire_bytes), eager_out(bytes), wire2(b.wire_bytes), out2(bytes);
  ASSERT_EQ(cudaMemcpy(eager_wire.data(), wire.p, b.wire_bytes, cudaMemcpyDeviceToHost),
            cudaSuccess);
  ASSERT_EQ(cudaMemcpy(eager_out.data(), out.p, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemset(wire.p, 0, b.wire_bytes), cudaSuccess);
  ASSERT_EQ(cudaMemset(out.p, 0, bytes), cudaSuccess);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(both(), LSHMOE_SUCCESS) << last_error();
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream_), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(wire2.data(), wire.p, b.wire_bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(out2.data(), out.p, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(eager_wire, wire2);
  EXPECT_EQ(eager_out, out2);
  EXPECT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

// Device memory never grows inside a capture: a batch larger than any
// before is refused there (nothing enqueued, the capture still ends), and
// captured once it has run eagerly; the first graph stays valid after the
// codec has grown.
TEST_P(CudaCodecTest, AGraphCaptureNeverAllocates) {
  Batch small(*cpu_, t_, {500, 700}), large(*cpu_, t_, {2000, 3000});
  cuda::BatchContext ctx;
  const size_t large_bytes = large.x.bytes.size();
  Device rows(large_bytes), wire(std::max(small.wire_bytes, large.wire_bytes));
  auto encode = [&](const Batch& b) {
    EXPECT_EQ(cudaMemcpy(rows.p, b.x.bytes.data(), b.x.bytes.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    return gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, t_, 4, wire.p,
                                 b.wire_offsets.data(), &ctx, stream_);
  };
  // Captures an encode of b; a graph with no nodes is not instantiated.
  auto capture = [&](const Batch& b, Status* status, size_t* nodes, cudaGraphExec_t* exec) {
    ASSERT_EQ(cudaMemcpy(rows.p, b.x.bytes.data(), b.x.bytes.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    cudaGraph_t graph = nullptr;
    ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal), cudaSuccess);
    *status = gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, t_, 4, wire.p,
                                    b.wire_offsets.data(), &ctx, stream_);
    ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
    ASSERT_EQ(cudaGraphGetNodes(graph, nullptr, nodes), cudaSuccess);
    if (*nodes > 0) {
      ASSERT_EQ(cudaGraphInstantiate(exec, graph, 0), cudaSuccess);
    }
    cudaGraphDestroy(graph);
  };
  ASSERT_EQ(encode(small), LSHMOE_SUCCESS) << last_error();
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  std::vector<uint8_t> small_eager(small.wire_bytes), replayed(small.wire_bytes);
  ASSERT_EQ(cudaMemcpy(small_eager.data(), wire.p, small.wire_bytes, cudaMemcpyDeviceToHost),
            cudaSuccess);
  Status s;
  size_t nodes = 0;
  cudaGraphExec_t small_graph = nullptr, refused = nullptr, large_graph = nullptr;
  capture(small, &s, &nodes, &small_graph);
  ASSERT_EQ(s, LSHMOE_SUCCESS) << last_error();
  ASSERT_GT(nodes, 0u);
  capture(large, &s, &nodes, &refused);
  EXPECT_EQ(s, LSHMOE_ERR_INVALID_ARGUMENT);
  EXPECT_NE(std::string(last_error()).find("graph capture"), std::string::npos) << last_error();
  EXPECT_EQ(nodes, 0u) << "the refused encode enqueued work";
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(encode(large), LSHMOE_SUCCESS) << last_error();  // grows, eagerly
  capture(large, &s, &nodes, &large_graph);
  EXPECT_EQ(s, LSHMOE_SUCCESS) << last_error();
  // The first graph still uses the memory it captured (retired, not freed).
  ASSERT_EQ(cudaMemcpy(rows.p, small.x.bytes.data(), small.x.bytes.size(), cudaMemcpyHostToDevice),
            cudaSuccess);
  ASSERT_EQ(cudaMemset(wire.p, 0, small.wire_bytes), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(small_graph, stream_), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(replayed.data(), wire.p, small.wire_bytes, cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(replayed, small_eager);
  for (cudaGraphExec_t e : {small_graph, refused, large_graph}) {
    if (e != nullptr) cudaGraphExecDestroy(e);
  }
}

TEST_P(CudaCodecTest, CorruptMessagesAreRejectedAndWriteNothing) {
  Batch b(*cpu_, t_);
  cuda::BatchContext origin;
  const std::vector<uint8_t> good = gpu_encode(b, &origin);
  struct Case {
    size_t at;
    uint8_t value;
    Status want;
  };
  const size_t m = 2;  // the first compressed message
  const size_t base = b.wire_offsets[m];
  const uint32_t width = wire::index_width(b.plans[m].slots);
  const size_t elem = dtype_size(t_);
  for (const Case& c :
       {Case{base, 0x00, LSHMOE_ERR_WIRE_BAD_MAGIC},
        Case{base + wire::kHeaderBytes + width - 1, 0xff, LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE}}) {
    std::vector<uint8_t> bad = good;
    bad[c.at] = c.value;
    cuda::BatchContext ctx;
    Status errors;
    const Rows got = gpu_decode(b, bad, &ctx, &errors);
    EXPECT_EQ(errors, c.want) << last_error();
    const size_t r0 = b.row_offset(m) * kH * elem, r1 = r0 + b.rows[m] * kH * elem;
    for (size_t i = r0; i < r1; ++i) ASSERT_EQ(got.bytes[i], 0xff) << "written at byte " << i;
    // The other messages decoded all the same: every row written.
    for (size_t i = r1; i + elem <= got.bytes.size(); i += elem) {
      bool all_ff = true;
      for (size_t k = 0; k < elem; ++k) all_ff = all_ff && got.bytes[i + k] == 0xff;
      ASSERT_FALSE(all_ff) << "unwritten element at byte " << i;
    }
  }
}

// The mapped error word: a rejection reaches poll_errors() once the device
// has finished the decode, with no copy and no wait in the poll; it is
// reported once, and the first of several stands.
TEST_P(CudaCodecTest, APollReportsARejectionOnceTheDeviceFinished) {
  Batch b(*cpu_, t_);
  cuda::BatchContext origin;
  const std::vector<uint8_t> good = gpu_encode(b, &origin);
  ASSERT_EQ(gpu_->poll_errors(), LSHMOE_SUCCESS) << last_error();
  const size_t m = 2;  // the first compressed message
  std::vector<uint8_t> bad = good;
  bad[b.wire_offsets[m]] = 0x00;  // its magic
  Device wire(bad.size()), rows(b.x.bytes.size());
  ASSERT_EQ(cudaMemcpy(wire.p, bad.data(), bad.size(), cudaMemcpyHostToDevice), cudaSuccess);
  for (int call = 0; call < 2; ++call) {
    cuda::BatchContext ctx;
    ASSERT_EQ(gpu_->dispatch_decode(wire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                    t_, 5, rows.p, &ctx, stream_),
              LSHMOE_SUCCESS)
        << last_error();
  }
  // Idle without a synchronising call: the poll itself never waits.
  while (cudaStreamQuery(stream_) == cudaErrorNotReady) {
  }
  ASSERT_EQ(cudaStreamQuery(stream_), cudaSuccess);
  EXPECT_EQ(gpu_->poll_errors(), LSHMOE_ERR_WIRE_BAD_MAGIC);
  EXPECT_NE(std::string(last_error()).find("message 2"), std::string::npos) << last_error();
  EXPECT_EQ(gpu_->poll_errors(), LSHMOE_SUCCESS) << "reported twice: " << last_error();
  EXPECT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
}

// The backward on the device against the CPU codec under the same
// assignments (the GPU's dispatch, decoded on the CPU), in rows and centroid
// mode: the combine-gradient messages carry the CPU's slot means, the expert
// gets the CPU's rows (or slots), the dispatch-gradient messages are the
// CPU's bytes, and the origin's input gradient is S + alpha (g - M) to the bit.
TEST_P(CudaCodecTest, BackwardMatchesTheCpuUnderTheSameAssignment) {
  for (bool slots : {false, true}) {
    SCOPED_TRACE(slots ? "centroids" : "rows");
    Batch b(*cpu_, t_);
    cuda::BatchContext origin, expert;
    const std::vector<uint8_t> wire = gpu_encode(b, &origin);
    std::vector<size_t> expert_at, expert_rows;
    size_t expert_total = 0;
    for (size_t m = 0; m < b.rows.size(); ++m) {
      expert_at.push_back(expert_total);
      expert_rows.push_back(slots && b.plans[m].compressed ? b.plans[m].slots : b.rows[m]);
      expert_total += expert_rows.back();
    }
    const Rows g = clustered(t_, b.total_rows, 21), gxe = clustered(t_, expert_total, 22);
    const size_t rb = kH * dtype_size(t_);
    Device dwire(b.wire_bytes), dexp(expert_total * rb), dg(b.total_rows * rb),
        dcgrad(b.combine_bytes), dgye(expert_total * rb), dgxe(expert_total * rb),
        ddgrad(b.combine_bytes), dgx(b.total_rows * rb);
    ASSERT_EQ(cudaMemcpy(dwire.p, wire.data(), wire.size(), cudaMemcpyHostToDevice), cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dg.p, g.bytes.data(), g.bytes.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dgxe.p, gxe.bytes.data(), gxe.bytes.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    ASSERT_EQ(slots
                  ? gpu_->dispatch_decode_slots(dwire.p, b.wire_offsets.data(), b.rows.data(),
                                                b.rows.size(), kH, t_, 5, dexp.p, &expert, stream_)
                  : gpu_->dispatch_decode(dwire.p, b.wire_offsets.data(), b.rows.data(),
                                          b.rows.size(), kH, t_, 5, dexp.p, &expert, stream_),
              LSHMOE_SUCCESS)
        << last_error();
    ASSERT_EQ(
        gpu_->combine_backward_encode(origin, dg.p, 6, dcgrad.p, b.combine_offsets.data(), stream_),
        LSHMOE_SUCCESS)
        << last_error();
    ASSERT_EQ(gpu_->combine_backward_decode(expert, dcgrad.p, b.combine_offsets.data(), 6, dgye.p,
                                            slots, stream_),
              LSHMOE_SUCCESS)
        << last_error();
    ASSERT_EQ(gpu_->dispatch_backward_encode(expert, dgxe.p, 7, ddgrad.p, b.combine_offsets.data(),
                                             slots, stream_),
              LSHMOE_SUCCESS)
        << last_error();
    ASSERT_EQ(gpu_->dispatch_backward_decode(origin, ddgrad.p, b.combine_offsets.data(), 7, dgx.p,
                                             stream_),
              LSHMOE_SUCCESS)
        << last_error();
    ASSERT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
    std::vector<uint8_t> cgrad(b.combine_bytes), dgrad(b.combine_bytes);
    Rows gye(t_, expert_total), gx(t_, b.total_rows);
    ASSERT_EQ(cudaMemcpy(cgrad.data(), dcgrad.p, cgrad.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(dgrad.data(), ddgrad.p, dgrad.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(gye.bytes.data(), dgye.p, gye.bytes.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    ASSERT_EQ(cudaMemcpy(gx.bytes.data(), dgx.p, gx.bytes.size(), cudaMemcpyDeviceToHost),
              cudaSuccess);
    const float alpha = float(config_.compensate);
    for (size_t m = 0; m < b.rows.size(); ++m) {
      const lshmoe_plan_t& p = b.plans[m];
      const size_t n = b.rows[m], r = b.row_offset(m);
      if (!p.compressed) {  // raw: the gradient rows themselves, both ways
        EXPECT_EQ(0, memcmp(gye.row(expert_at[m]), g.row(r), n * rb)) << "raw " << m;
        EXPECT_EQ(0, memcmp(gx.row(r), gxe.row(expert_at[m]), n * rb)) << "raw " << m;
        continue;
      }
      cpu::ExpertContext e;
      Rows decoded(t_, expert_rows[m]);
      const uint8_t* msg = wire.data() + b.wire_offsets[m];
      ASSERT_EQ(slots ? cpu_->dispatch_decode_slots(msg, p.dispatch_bytes, n, kH, t_, 5,
                                                    decoded.bytes.data(), &e)
                      : cpu_->dispatch_decode(msg, p.dispatch_bytes, n, kH, t_, 5,
                                              decoded.bytes.data(), &e),
                LSHMOE_SUCCESS)
          << last_error();
      // The slot means of g: a forward combine's payload under the same assignment.
      std::vector<uint8_t> means(p.combine_bytes);
      ASSERT_EQ(cpu_->combine_encode(e, g.row(r), 6, means.data(), means.size()), LSHMOE_SUCCESS);
      const uint8_t* got_c = cgrad.data() + b.combine_offsets[m];
      EXPECT_EQ(0, memcmp(got_c + wire::kHeaderBytes, means.data() + wire::kHeaderBytes,
                          p.combine_bytes - wire::kHeaderBytes))
          << "message " << m << ": combine gradient";
      Rows want_gye(t_, expert_rows[m]);
      ASSERT_EQ(
          cpu_->combine_backward_decode(e, got_c, p.combine_bytes, 6, want_gye.bytes.data(), slots),
          LSHMOE_SUCCESS)
          << last_error();
      EXPECT_EQ(0, memcmp(gye.row(expert_at[m]), want_gye.bytes.data(), want_gye.bytes.size()))
          << "message " << m << ": expert gradient";
      std::vector<uint8_t> want_d(p.combine_bytes);
      ASSERT_EQ(cpu_->dispatch_backward_encode(e, gxe.row(expert_at[m]), 7, want_d.data(),
                                               want_d.size(), slots),
                LSHMOE_SUCCESS)
          << last_error();
      const uint8_t* got_d = dgrad.data() + b.combine_offsets[m];
      EXPECT_EQ(0, memcmp(got_d, want_d.data(), p.combine_bytes))
          << "message " << m << ": dispatch gradient";
      const wire::Layout l = wire::layout(LSHMOE_COMBINE, n, kH, t_, p.slots);
      size_t wrong = 0;
      for (size_t i = 0; i < n; ++i) {
        const size_t a = e.assignment[i];
        for (size_t j = 0; j < kH; ++j) {
          const float mk = load_elem(t_, means.data() + l.slots_offset, a * kH + j);
          const float sk = load_elem(t_, want_d.data() + l.slots_offset, a * kH + j);
          uint8_t d[4], want[4];
          store_elem(t_, d, 0, load_elem(t_, g.row(r + i), j) - mk);
          store_elem(t_, want, 0, std::fmaf(alpha, load_elem(t_, d, 0), sk));
          wrong += memcmp(want, gx.row(r + i) + j * dtype_size(t_), dtype_size(t_)) != 0;
        }
      }
      EXPECT_EQ(wrong, 0u) << "message " << m << ": input gradient";
    }
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, CudaCodecTest,
                         ::testing::Values(DType::kBFloat16, DType::kFloat16, DType::kFloat32),
                         [](const ::testing::TestParamInfo<DType>& p) {
                           return std::string(dtype_name(p.param));
                         });

}  // namespace
}  // namespace lshmoe
