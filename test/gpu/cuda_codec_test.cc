// The CUDA back end against the CPU one, on a real device (skipped without
// one): wire compatibility both ways, the same bytes where the assignments
// agree, the identity round trip, CUDA-graph replay, and corrupt input
// rejected with the CPU's codes while other messages still decode.
#include <cuda_runtime.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "codec/cpu/cpu_codec.h"
#include "codec/cuda/cuda_codec.h"
#include "codec/wire_format.h"
#include "common/dtype.h"

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
const DType kType = DType::kBFloat16;

// Clustered bf16 rows: a shared offset, 16 centres, noise.
std::vector<uint16_t> clustered(size_t rows, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<float> centres(16 * kH), offset(kH);
  for (float& v : offset) v = normal(rng);
  for (float& v : centres) v = normal(rng);
  std::vector<uint16_t> out(rows * kH);
  for (size_t i = 0; i < rows; ++i) {
    const size_t c = rng() % 16;
    for (size_t j = 0; j < kH; ++j) {
      out[i * kH + j] = float_to_bf16(offset[j] + centres[c * kH + j] + 0.3f * normal(rng));
    }
  }
  return out;
}

struct Batch {
  std::vector<size_t> rows = {0, 20, 1000, 3000};  // empty, raw, compressed x2
  std::vector<size_t> wire_offsets;
  std::vector<lshmoe_plan_t> plans;
  size_t total_rows = 0, wire_bytes = 0;
  std::vector<uint16_t> x;
  explicit Batch(const cpu::CpuCodec& codec) {
    for (size_t n : rows) {
      lshmoe_plan_t p;
      EXPECT_EQ(codec.plan(n, kH, kType, &p), LSHMOE_SUCCESS);
      plans.push_back(p);
      wire_offsets.push_back(wire_bytes);
      wire_bytes += (p.dispatch_bytes + 15) / 16 * 16;
      total_rows += n;
    }
    x = clustered(total_rows, 7);
  }
  size_t row_offset(size_t m) const {
    size_t r = 0;
    for (size_t k = 0; k < m; ++k) r += rows[k];
    return r;
  }
};

class CudaCodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_device()) GTEST_SKIP() << "no CUDA device";
    ASSERT_EQ(cpu::CpuCodec::create(config_, &cpu_), LSHMOE_SUCCESS) << last_error();
    ASSERT_EQ(cuda::CudaCodec::create(config_, &gpu_), LSHMOE_SUCCESS) << last_error();
    ASSERT_EQ(cudaStreamCreate(&stream_), cudaSuccess);
  }
  void TearDown() override {
    if (stream_ != nullptr) cudaStreamDestroy(stream_);
  }
  // Encodes the batch on the GPU; returns the wire on the host.
  std::vector<uint8_t> gpu_encode(const Batch& b, cuda::BatchContext* ctx) {
    Device rows(b.x.size() * 2), wire(b.wire_bytes);
    EXPECT_EQ(cudaMemcpy(rows.p, b.x.data(), b.x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
    EXPECT_EQ(gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, kType, 5, wire.p,
                                    b.wire_offsets.data(), ctx, stream_),
              LSHMOE_SUCCESS)
        << last_error();
    std::vector<uint8_t> out(b.wire_bytes);
    EXPECT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
    EXPECT_EQ(cudaMemcpy(out.data(), wire.p, out.size(), cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }
  // Decodes a wire on the GPU into rows (poisoned first); returns them.
  std::vector<uint16_t> gpu_decode(const Batch& b, const std::vector<uint8_t>& wire_host,
                                   cuda::BatchContext* ctx, Status* errors) {
    Device wire(wire_host.size()), rows(b.x.size() * 2);
    EXPECT_EQ(cudaMemcpy(wire.p, wire_host.data(), wire_host.size(), cudaMemcpyHostToDevice),
              cudaSuccess);
    EXPECT_EQ(cudaMemset(rows.p, 0xff, b.x.size() * 2), cudaSuccess);
    EXPECT_EQ(gpu_->dispatch_decode(wire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                    kType, 5, rows.p, ctx, stream_),
              LSHMOE_SUCCESS)
        << last_error();
    *errors = gpu_->check_errors(stream_);
    std::vector<uint16_t> out(b.x.size());
    EXPECT_EQ(cudaMemcpy(out.data(), rows.p, out.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
    return out;
  }

  Config config_;
  std::unique_ptr<cpu::CpuCodec> cpu_;
  std::unique_ptr<cuda::CudaCodec> gpu_;
  cudaStream_t stream_ = nullptr;
};

TEST_F(CudaCodecTest, GpuMessagesDecodeOnTheCpuAndMatchItsEncoder) {
  Batch b(*cpu_);
  cuda::BatchContext ctx;
  const std::vector<uint8_t> wire = gpu_encode(b, &ctx);
  for (size_t m = 0; m < b.rows.size(); ++m) {
    const lshmoe_plan_t& p = b.plans[m];
    const uint16_t* x = b.x.data() + b.row_offset(m) * kH;
    std::vector<uint16_t> from_gpu(b.rows[m] * kH), from_cpu(b.rows[m] * kH);
    cpu::ExpertContext e1, e2;
    ASSERT_EQ(cpu_->dispatch_decode(wire.data() + b.wire_offsets[m], p.dispatch_bytes, b.rows[m],
                                    kH, kType, 5, from_gpu.data(), &e1),
              LSHMOE_SUCCESS)
        << "message " << m << ": " << last_error();
    if (!p.compressed) {
      EXPECT_EQ(0, memcmp(from_gpu.data(), x, from_gpu.size() * 2)) << "raw message " << m;
      continue;
    }
    // The CPU encoder on the same rows: same quality, and the same bytes
    // wherever the two assignments agree.
    std::vector<uint8_t> cpu_wire(p.dispatch_bytes);
    cpu::OriginContext o;
    ASSERT_EQ(
        cpu_->dispatch_encode(x, b.rows[m], kH, kType, 5, cpu_wire.data(), cpu_wire.size(), &o),
        LSHMOE_SUCCESS);
    ASSERT_EQ(cpu_->dispatch_decode(cpu_wire.data(), cpu_wire.size(), b.rows[m], kH, kType, 5,
                                    from_cpu.data(), &e2),
              LSHMOE_SUCCESS);
    // Co-membership: each row labelled by the first row of its slot, so that
    // a renumbering of slots does not count as a difference.
    auto first_rows = [&](const std::vector<uint32_t>& a) {
      std::vector<uint32_t> first(b.rows[m], UINT32_MAX), label(b.rows[m]);
      for (size_t i = 0; i < b.rows[m]; ++i) {
        if (first[a[i]] == UINT32_MAX) first[a[i]] = uint32_t(i);
        label[i] = first[a[i]];
      }
      return label;
    };
    const std::vector<uint32_t> l1 = first_rows(e1.assignment), l2 = first_rows(e2.assignment);
    size_t same = 0, identical = 0;
    for (size_t i = 0; i < b.rows[m]; ++i) {
      same += l1[i] == l2[i];
      identical += e1.assignment[i] == e2.assignment[i];
    }
    EXPECT_GE(double(same), 0.99 * double(b.rows[m])) << "message " << m;
    auto error = [&](const std::vector<uint16_t>& y) {
      double e = 0, n = 0;
      for (size_t i = 0; i < y.size(); ++i) {
        const double d = double(bf16_to_float(y[i])) - bf16_to_float(x[i]);
        e += d * d;
        n += double(bf16_to_float(x[i])) * bf16_to_float(x[i]);
      }
      return std::sqrt(e / n);
    };
    EXPECT_NEAR(error(from_gpu), error(from_cpu), 0.02 * error(from_cpu)) << "message " << m;
    if (identical == b.rows[m]) {
      EXPECT_EQ(0, memcmp(wire.data() + b.wire_offsets[m], cpu_wire.data(), p.dispatch_bytes))
          << "message " << m << ": equal assignments, different bytes";
    }
  }
}

TEST_F(CudaCodecTest, CpuMessagesDecodeOnTheGpuBitForBit) {
  Batch b(*cpu_);
  std::vector<uint8_t> wire(b.wire_bytes, 0);
  std::vector<uint16_t> want(b.x.size());
  for (size_t m = 0; m < b.rows.size(); ++m) {
    cpu::OriginContext o;
    cpu::ExpertContext e;
    const size_t at = b.row_offset(m) * kH;
    ASSERT_EQ(cpu_->dispatch_encode(b.x.data() + at, b.rows[m], kH, kType, 5,
                                    wire.data() + b.wire_offsets[m], b.plans[m].dispatch_bytes, &o),
              LSHMOE_SUCCESS);
    ASSERT_EQ(cpu_->dispatch_decode(wire.data() + b.wire_offsets[m], b.plans[m].dispatch_bytes,
                                    b.rows[m], kH, kType, 5, want.data() + at, &e),
              LSHMOE_SUCCESS);
  }
  cuda::BatchContext ctx;
  Status errors;
  const std::vector<uint16_t> got = gpu_decode(b, wire, &ctx, &errors);
  EXPECT_EQ(errors, LSHMOE_SUCCESS) << last_error();
  EXPECT_EQ(0, memcmp(got.data(), want.data(), want.size() * 2));
}

TEST_F(CudaCodecTest, IdentityExpertRoundTripReturnsTheInput) {
  Batch b(*cpu_);
  cuda::BatchContext origin, expert;
  Device rows(b.x.size() * 2), wire(b.wire_bytes), expanded(b.x.size() * 2), back(b.x.size() * 2);
  std::vector<size_t> combine_offsets;
  size_t combine_bytes = 0;
  for (const auto& p : b.plans) {
    combine_offsets.push_back(combine_bytes);
    combine_bytes += (p.combine_bytes + 15) / 16 * 16;
  }
  Device wire2(combine_bytes);
  ASSERT_EQ(cudaMemcpy(rows.p, b.x.data(), b.x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  ASSERT_EQ(gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, kType, 1, wire.p,
                                  b.wire_offsets.data(), &origin, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->dispatch_decode(wire.p, b.wire_offsets.data(), b.rows.data(), b.rows.size(), kH,
                                  kType, 1, expanded.p, &expert, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->combine_encode(expert, expanded.p, 2, wire2.p, combine_offsets.data(), stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->combine_decode(origin, wire2.p, combine_offsets.data(), 2, back.p, stream_),
            LSHMOE_SUCCESS);
  ASSERT_EQ(gpu_->check_errors(stream_), LSHMOE_SUCCESS) << last_error();
  std::vector<uint16_t> y(b.x.size());
  ASSERT_EQ(cudaMemcpy(y.data(), back.p, y.size() * 2, cudaMemcpyDeviceToHost), cudaSuccess);
  // y = round(c + round(x - c)): two bf16 roundings, each at most 2^-8 of
  // magnitudes bounded by the rows' own.
  double worst = 0, largest = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    const double want = bf16_to_float(b.x[i]);
    worst = std::max(worst, std::fabs(bf16_to_float(y[i]) - want));
    largest = std::max(largest, std::fabs(want));
  }
  EXPECT_LT(worst, 0.02 * largest);
}

TEST_F(CudaCodecTest, GraphReplayGivesTheSameBytes) {
  Batch b(*cpu_);
  cuda::BatchContext ctx;
  Device rows(b.x.size() * 2), wire(b.wire_bytes);
  ASSERT_EQ(cudaMemcpy(rows.p, b.x.data(), b.x.size() * 2, cudaMemcpyHostToDevice), cudaSuccess);
  auto encode = [&] {
    return gpu_->dispatch_encode(rows.p, b.rows.data(), b.rows.size(), kH, kType, 3, wire.p,
                                 b.wire_offsets.data(), &ctx, stream_);
  };
  ASSERT_EQ(encode(), LSHMOE_SUCCESS);  // warm-up: scratch and projection allocated
  std::vector<uint8_t> eager(b.wire_bytes), replayed(b.wire_bytes);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(eager.data(), wire.p, eager.size(), cudaMemcpyDeviceToHost), cudaSuccess);
  ASSERT_EQ(cudaMemset(wire.p, 0, b.wire_bytes), cudaSuccess);
  cudaGraph_t graph;
  cudaGraphExec_t exec;
  ASSERT_EQ(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(encode(), LSHMOE_SUCCESS) << last_error();
  ASSERT_EQ(cudaStreamEndCapture(stream_, &graph), cudaSuccess);
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream_), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream_), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(replayed.data(), wire.p, replayed.size(), cudaMemcpyDeviceToHost),
            cudaSuccess);
  EXPECT_EQ(eager, replayed);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
}

TEST_F(CudaCodecTest, CorruptMessagesAreRejectedAndWriteNothing) {
  Batch b(*cpu_);
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
  for (const Case& c :
       {Case{base, 0x00, LSHMOE_ERR_WIRE_BAD_MAGIC},
        Case{base + wire::kHeaderBytes + width - 1, 0xff, LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE}}) {
    std::vector<uint8_t> bad = good;
    bad[c.at] = c.value;
    cuda::BatchContext ctx;
    Status errors;
    const std::vector<uint16_t> got = gpu_decode(b, bad, &ctx, &errors);
    EXPECT_EQ(errors, c.want) << last_error();
    const size_t r0 = b.row_offset(m) * kH, r1 = r0 + b.rows[m] * kH;
    for (size_t i = r0; i < r1; ++i) ASSERT_EQ(got[i], 0xffff) << "row data written at " << i;
    // The other compressed message decoded all the same.
    for (size_t i = r1; i < got.size(); ++i) ASSERT_NE(got[i], 0xffff) << "unwritten at " << i;
  }
}

}  // namespace
}  // namespace lshmoe
