// The device halves (--backend nccl): device buffers on one stream, one
// ncclComm_t per rank; raw is NCCL's own all-to-all, lshmoe a communicator
// made from the same ncclComm_t (lshmoe_comm_create_from_nccl).
#include <cuda_runtime.h>
#include <nccl.h>

#include <cstdlib>
#include <cstring>

#include "alltoall/halves.h"

namespace lshmoe::perf {
namespace {

void cuda_check(cudaError_t e, const char* what) {
  if (e != cudaSuccess) die(what, cudaGetErrorString(e));
}

void nccl_check(ncclResult_t r, const char* what) {
  if (r != ncclSuccess) {
    const char* last = ncclGetLastError(nullptr);
    die(what,
        std::string(ncclGetErrorString(r)) + (last != nullptr ? std::string(": ") + last : ""));
  }
}

ncclDataType_t nccl_type(lshmoe_dtype_t t) {
  switch (t) {
    case LSHMOE_BFLOAT16:
      return ncclBfloat16;
    case LSHMOE_FLOAT16:
      return ncclFloat16;
    default:
      return ncclFloat32;
  }
}

class DeviceMemory {
 public:
  DeviceMemory() = default;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { cudaFree(ptr_); }
  void ensure(size_t bytes) {
    if (bytes <= bytes_ && ptr_ != nullptr) return;
    cudaFree(ptr_);
    ptr_ = nullptr;
    cuda_check(cudaMalloc(&ptr_, bytes > 0 ? bytes : 1), "cudaMalloc");
    bytes_ = bytes;
  }
  void* get() const { return ptr_; }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

// What both halves share: the NCCL communicator and the stream.
struct Device {
  ncclComm_t nccl = nullptr;
  cudaStream_t stream = nullptr;
  int world = 0;
  ~Device() {
    if (stream != nullptr) cudaStreamSynchronize(stream);
    if (nccl != nullptr) ncclCommDestroy(nccl);
    if (stream != nullptr) cudaStreamDestroy(stream);
  }
};

class DeviceHalf : public Half {
 public:
  DeviceHalf(const PerfOptions& o, std::shared_ptr<Device> device)
      : o_(o), device_(std::move(device)), row_bytes_(o.hidden * lshmoe_dtype_size(o.dtype)) {}
  ~DeviceHalf() override { drop_graph(); }

  void resize(const std::vector<uint8_t>& x, const std::vector<size_t>& counts) override {
    wait();
    drop_graph();
    counts_ = counts;
    x_bytes_ = x.size();
    x_.ensure(x_bytes_);
    y_.ensure(x_bytes_);
    cuda_check(cudaMemcpy(x_.get(), x.data(), x.size(), cudaMemcpyHostToDevice), "copying rows in");
    xe_bytes_ = expert_rows() * row_bytes_;
    xe_.ensure(xe_bytes_);
  }
  void wait() override { cuda_check(cudaStreamSynchronize(device_->stream), "the stream"); }
  std::vector<uint8_t> result(bool dispatched) override {
    std::vector<uint8_t> out(dispatched ? xe_bytes_ : x_bytes_);
    cuda_check(cudaMemcpy(out.data(), dispatched ? xe_.get() : y_.get(), out.size(),
                          cudaMemcpyDeviceToHost),
               "copying results out");
    return out;
  }
  bool can_capture() const override { return true; }
  void capture_begin() override {
    drop_graph();
    capturing_ = true;
    cuda_check(cudaStreamBeginCapture(device_->stream, cudaStreamCaptureModeThreadLocal),
               "cudaStreamBeginCapture");
  }
  void capture_end() override {
    cudaGraph_t graph = nullptr;
    cuda_check(cudaStreamEndCapture(device_->stream, &graph), "cudaStreamEndCapture");
    capturing_ = false;
    cuda_check(cudaGraphInstantiate(&exec_, graph, 0), "cudaGraphInstantiate");
    cudaGraphDestroy(graph);
  }
  void replay(int n) override {
    for (int i = 0; i < n; ++i)
      cuda_check(cudaGraphLaunch(exec_, device_->stream), "cudaGraphLaunch");
  }

 protected:
  virtual size_t expert_rows() const {
    size_t rows = 0;
    for (size_t c : counts_) rows += c;
    return rows;
  }
  // Work captured in a graph that its handles must outlive.
  virtual void graph_dropped() {}
  void drop_graph() {
    if (exec_ == nullptr) return;
    wait();
    cudaGraphExecDestroy(exec_);
    exec_ = nullptr;
    graph_dropped();
  }

  const PerfOptions& o_;
  std::shared_ptr<Device> device_;
  const size_t row_bytes_;
  std::vector<size_t> counts_;
  DeviceMemory x_, xe_, y_;
  size_t x_bytes_ = 0, xe_bytes_ = 0;
  bool capturing_ = false;
  cudaGraphExec_t exec_ = nullptr;
};

// NCCL's own all-to-all: what an unmodified job would see.
class NcclRawHalf : public DeviceHalf {
 public:
  using DeviceHalf::DeviceHalf;
  void dispatch(size_t) override { all_to_all(x_.get(), xe_.get()); }
  void combine(size_t) override { all_to_all(xe_.get(), y_.get()); }
  void drop(size_t) override {}
  bool stats(lshmoe_stats_t*) const override { return false; }

 private:
  void all_to_all(const void* send, void* recv) {
    const size_t count = counts_.empty() ? 0 : counts_[0] * o_.hidden;  // equal splits
#if NCCL_VERSION_CODE >= NCCL_VERSION(2, 28, 0)
    nccl_check(ncclAlltoAll(send, recv, count, nccl_type(o_.dtype), device_->nccl, device_->stream),
               "ncclAlltoAll");
#else
    const size_t bytes = count * lshmoe_dtype_size(o_.dtype);
    nccl_check(ncclGroupStart(), "ncclGroupStart");
    for (int p = 0; p < device_->world; ++p) {
      nccl_check(ncclSend(static_cast<const char*>(send) + size_t(p) * bytes, count,
                          nccl_type(o_.dtype), p, device_->nccl, device_->stream),
                 "ncclSend");
      nccl_check(ncclRecv(static_cast<char*>(recv) + size_t(p) * bytes, count, nccl_type(o_.dtype),
                          p, device_->nccl, device_->stream),
                 "ncclRecv");
    }
    nccl_check(ncclGroupEnd(), "ncclGroupEnd");
#endif
  }
};

class LshmoeDeviceHalf : public DeviceHalf {
 public:
  LshmoeDeviceHalf(const PerfOptions& o, std::shared_ptr<Device> device, lshmoe_comm_t* comm)
      : DeviceHalf(o, std::move(device)), comm_(comm) {}
  ~LshmoeDeviceHalf() override {
    drop_graph();
    for (lshmoe_handle_t* h : handles_) lshmoe_handle_free(h);
    graph_dropped();
    lshmoe_comm_destroy(comm_);
  }
  void resize(const std::vector<uint8_t>& x, const std::vector<size_t>& counts) override {
    DeviceHalf::resize(x, counts);
    for (lshmoe_handle_t*& h : handles_) lshmoe_handle_free(h);
    handles_.assign(size_t(o_.agg_iters), nullptr);
  }
  void dispatch(size_t slot) override {
    check(lshmoe_dispatch_async(comm_, x_.get(), counts_.data(), xe_.get(), counts_.data(),
                                o_.hidden, o_.dtype, o_.mode, device_->stream, &handles_[slot]),
          "lshmoe_dispatch_async");
  }
  void combine(size_t slot) override {
    check(lshmoe_combine_async(comm_, handles_[slot], xe_.get(), y_.get(), device_->stream),
          "lshmoe_combine_async");
    drop(slot);
  }
  void drop(size_t slot) override {
    // A handle a capture used must live as long as its graph.
    if (capturing_) {
      in_graph_.push_back(handles_[slot]);
    } else {
      lshmoe_handle_free(handles_[slot]);
    }
    handles_[slot] = nullptr;
  }
  void wait() override {
    DeviceHalf::wait();
    check(lshmoe_comm_check(comm_, device_->stream), "a device decoder");
  }
  bool stats(lshmoe_stats_t* s) const override {
    check(lshmoe_comm_stats(comm_, s), "lshmoe_comm_stats");
    return true;
  }

 protected:
  size_t expert_rows() const override {
    std::vector<size_t> rows(counts_.size());
    check(lshmoe_comm_expert_rows(comm_, counts_.data(), o_.hidden, o_.dtype, o_.mode, rows.data()),
          "lshmoe_comm_expert_rows");
    size_t total = 0;
    for (size_t r : rows) total += r;
    return total;
  }
  void graph_dropped() override {
    for (lshmoe_handle_t* h : in_graph_) lshmoe_handle_free(h);
    in_graph_.clear();
  }

 private:
  lshmoe_comm_t* comm_;
  std::vector<lshmoe_handle_t*> handles_, in_graph_;
};

int local_rank(int rank) {
  for (const char* name : {"LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_RANK"}) {
    if (const char* v = getenv(name)) return atoi(v);
  }
  return rank;
}

}  // namespace

int make_device_halves(const PerfOptions& o, lshmoe_comm_t* meet, int rank, int world,
                       std::unique_ptr<Half>* raw_half, std::unique_ptr<Half>* lshmoe_half,
                       std::string* device_info, std::string* why) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) {
    cudaGetLastError();
    *why = "no CUDA device";
    return 77;
  }
  const int gpu = local_rank(rank) % devices;
  cuda_check(cudaSetDevice(gpu), "cudaSetDevice");
  cudaDeviceProp prop{};
  cuda_check(cudaGetDeviceProperties(&prop, gpu), "cudaGetDeviceProperties");
  char info[512];
  snprintf(info, sizeof(info), "device %2d [%04x:%02x:%02x] %s", gpu, prop.pciDomainID,
           prop.pciBusID, prop.pciDeviceID, prop.name);
  *device_info = info;

  ncclUniqueId id{};
  if (rank == 0) nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
  const std::vector<uint8_t> ids = allgather(meet, world, &id, sizeof(id));
  memcpy(&id, ids.data(), sizeof(id));  // rank 0's
  auto device = std::make_shared<Device>();
  device->world = world;
  nccl_check(ncclCommInitRank(&device->nccl, world, id, rank), "ncclCommInitRank");
  cuda_check(cudaStreamCreateWithFlags(&device->stream, cudaStreamNonBlocking), "cudaStreamCreate");

  lshmoe_config_t* config = nullptr;
  check(lshmoe_config_from_env(&config), "the LSHMOE_* settings");
  if (!o.ratio.empty())
    check(lshmoe_config_set(config, "LSHMOE_RATIO", o.ratio.c_str()), "--ratio");
  lshmoe_comm_t* comm = nullptr;
  const lshmoe_status_t s = lshmoe_comm_create_from_nccl(device->nccl, config, &comm);
  lshmoe_config_destroy(config);
  check(s, "lshmoe_comm_create_from_nccl");
  *raw_half = std::make_unique<NcclRawHalf>(o, device);
  *lshmoe_half = std::make_unique<LshmoeDeviceHalf>(o, device, comm);
  return 0;
}

}  // namespace lshmoe::perf
