// The NCCL API of the host stand-in: NCCL's argument checks and codes, the
// per-thread group, and the exported names. Each pnccl* is defined here and
// its nccl* is a weak alias, as libnccl exports them, so that a profiler can
// interpose the nccl* name and call on through the pnccl* one.
//
// Streams are accepted and ignored: every operation completes on the host
// before its call (or the outermost ncclGroupEnd) returns. A communicator,
// with those split from it, is used by one thread at a time, as the UCX
// worker under it; groups and ncclGetLastError are per thread, as NCCL's.
#include "host_nccl.h"

#include <nccl.h>

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "comm.h"
#include "rendezvous.h"
#include "transport/nccl/nccl_ops.h"

#define HOST_NCCL_API __attribute__((visibility("default")))
#define HOST_NCCL_ALIAS(name) \
  extern "C" __typeof__(p##name) name __attribute__((weak, alias("p" #name), visibility("default")))

namespace host_nccl {
namespace {

thread_local std::string g_last_error;

// NCCL's group state is per thread: nested groups, and the first error of
// a call inside the group, which the outermost ncclGroupEnd returns after
// dropping the group.
struct Group {
  int depth = 0;
  std::vector<Op> ops;
  ncclResult_t error = ncclSuccess;
  std::string error_text;
};
thread_local Group g_group;

constexpr unsigned kConfigMagic = 0xcafebeef;  // what NCCL_CONFIG_INITIALIZER sets

ncclResult_t grouped(ncclResult_t r) {
  if (r != ncclSuccess && g_group.depth > 0 && g_group.error == ncclSuccess) {
    g_group.error = r;
    g_group.error_text = g_last_error;
  }
  return r;
}

// No exception crosses the C API.
template <class F>
ncclResult_t guarded(F&& f) {
  try {
    return f();
  } catch (const std::bad_alloc&) {
    return fail(ncclSystemError, "out of host memory");
  } catch (const std::exception& e) {
    return fail(ncclInternalError, "%s", e.what());
  }
}

ncclResult_t check_comm(const ncclComm* comm, const char* call) {
  if (comm == nullptr) return fail(ncclInvalidArgument, "%s: comm is NULL", call);
  if (comm->magic != ncclComm::kMagic) {
    return fail(ncclInvalidArgument,
                "%s: comm is not a live communicator (destroyed, or not made by this library)",
                call);
  }
  return ncclSuccess;
}

ncclResult_t check_usable(const ncclComm* comm, const char* call) {
  if (comm->async_error == ncclSuccess) return ncclSuccess;
  return fail(comm->async_error,
              "%s: rank %d of %d: the communicator failed earlier (%s); destroy it", call,
              comm->rank, comm->size, comm->async_error_text.c_str());
}

ncclResult_t check_config(const ncclConfig_t* config, const char* call) {
  if (config != nullptr && config->magic != kConfigMagic) {
    return fail(ncclInvalidArgument, "%s: config was not initialized with NCCL_CONFIG_INITIALIZER",
                call);
  }
  return ncclSuccess;
}

// *bytes = count elements of `type`, `blocks` times.
ncclResult_t message_bytes(size_t count, ncclDataType_t type, size_t blocks, const char* call,
                           size_t* bytes) {
  const size_t size = lshmoe::transport::nccl_type_size(type);
  if (size == 0) {
    return fail(ncclInvalidArgument, "%s: datatype %d is not an ncclDataType_t", call, int(type));
  }
  if (count > SIZE_MAX / size / blocks) {
    return fail(ncclInvalidArgument, "%s: %zu elements of %zu bytes do not fit in memory", call,
                count, size);
  }
  *bytes = count * size;
  return ncclSuccess;
}

ncclResult_t submit(std::vector<Op> ops) {
  if (g_group.depth == 0) return run(ops);
  for (Op& op : ops) g_group.ops.push_back(std::move(op));
  return ncclSuccess;
}

ncclResult_t point_to_point(bool send, const void* data, size_t count, ncclDataType_t type,
                            int peer, ncclComm* comm, const char* call) {
  ncclResult_t r = check_comm(comm, call);
  if (r != ncclSuccess) return r;
  size_t bytes = 0;
  if ((r = message_bytes(count, type, 1, call, &bytes)) != ncclSuccess) return r;
  if (peer < 0 || peer >= comm->size) {
    return fail(ncclInvalidArgument, "%s: peer %d is outside [0, %d)", call, peer, comm->size);
  }
  if (data == nullptr && count > 0) {
    return fail(ncclInvalidArgument, "%s: the buffer is NULL for %zu elements", call, count);
  }
  if ((r = check_usable(comm, call)) != ncclSuccess) return r;
  Op op;
  op.comm = comm;
  op.send = send;
  op.peer = peer;
  op.bytes = bytes;
  if (send) {
    op.send_data = data;
  } else {
    op.recv_data = const_cast<void*>(data);
  }
  return submit({std::move(op)});
}

[[maybe_unused]] ncclResult_t all_to_all(const void* sendbuff, void* recvbuff, size_t count,
                                         ncclDataType_t type, ncclComm* comm) {
  const char* call = "ncclAlltoAll";
  ncclResult_t r = check_comm(comm, call);
  if (r != ncclSuccess) return r;
  size_t bytes = 0;
  if ((r = message_bytes(count, type, size_t(comm->size), call, &bytes)) != ncclSuccess) return r;
  if (count > 0 && (sendbuff == nullptr || recvbuff == nullptr)) {
    return fail(ncclInvalidArgument, "%s: sendbuff or recvbuff is NULL for %zu elements per peer",
                call, count);
  }
  if ((r = check_usable(comm, call)) != ncclSuccess) return r;
  if (count == 0) return ncclSuccess;  // every rank passes the same count: nothing moves
  const size_t total = bytes * size_t(comm->size);
  const auto* send = static_cast<const uint8_t*>(sendbuff);
  auto* recv = static_cast<uint8_t*>(recvbuff);
  std::shared_ptr<Stage> stage;
  if (send < recv + total && recv < send + total) {
    stage = std::make_shared<Stage>();
    stage->source = send;
    stage->bytes = total;
  }
  std::vector<Op> ops;
  for (int p = 0; p < comm->size; ++p) {
    Op receive;
    receive.comm = comm;
    receive.peer = p;
    receive.bytes = bytes;
    receive.recv_data = recv + size_t(p) * bytes;
    Op to_peer;
    to_peer.comm = comm;
    to_peer.send = true;
    to_peer.peer = p;
    to_peer.bytes = bytes;
    to_peer.send_data = send + size_t(p) * bytes;
    to_peer.stage = stage;
    to_peer.stage_offset = size_t(p) * bytes;
    ops.push_back(std::move(receive));
    ops.push_back(std::move(to_peer));
  }
  return submit(std::move(ops));
}

ncclResult_t end_group(bool perform, const char* call) {
  if (g_group.depth == 0) return fail(ncclInvalidUsage, "%s without ncclGroupStart", call);
  if (--g_group.depth > 0) return ncclSuccess;
  std::vector<Op> ops = std::move(g_group.ops);
  g_group.ops.clear();
  const ncclResult_t error = g_group.error;
  const std::string text = std::move(g_group.error_text);
  g_group.error = ncclSuccess;
  g_group.error_text.clear();
  if (error != ncclSuccess) {
    return fail(error, "%s: a call in the group failed, so none of it was performed: %s", call,
                text.c_str());
  }
  return perform ? run(ops) : ncclSuccess;
}

ncclResult_t init_rank(ncclComm_t* newcomm, int nranks, const ncclUniqueId& id, int rank,
                       const ncclConfig_t* config, const char* call) {
  if (newcomm == nullptr) return fail(ncclInvalidArgument, "%s: newcomm is NULL", call);
  *newcomm = nullptr;
  if (nranks < 1 || nranks > kMaxRanks) {
    return fail(ncclInvalidArgument, "%s: nranks %d is outside [1, %d] (the stand-in's limit)",
                call, nranks, kMaxRanks);
  }
  if (rank < 0 || rank >= nranks) {
    return fail(ncclInvalidArgument, "%s: rank %d is outside [0, %d)", call, rank, nranks);
  }
  ncclResult_t r = check_config(config, call);
  if (r != ncclSuccess) return r;
  Rendezvous rendezvous;
  if ((r = parse_unique_id(id, &rendezvous)) != ncclSuccess) {
    return fail(r, "%s: %s", call, last_error_text());
  }
  int timeout_ms = 0;
  if ((r = timeout_from_env(&timeout_ms)) != ncclSuccess) {
    return fail(r, "%s: %s", call, last_error_text());
  }
  if ((r = create_comm(rendezvous, nranks, rank, timeout_ms, newcomm)) != ncclSuccess) {
    return fail(r, "%s: %s", call, last_error_text());
  }
  return ncclSuccess;
}

ncclResult_t destroy(ncclComm_t comm, bool abort, const char* call) {
  if (comm == nullptr) return ncclSuccess;  // as NCCL
  if (const ncclResult_t r = check_comm(comm, call); r != ncclSuccess) return r;
  // This thread's group may not run operations on a communicator that is gone.
  std::vector<Op>& ops = g_group.ops;
  std::erase_if(ops, [&](const Op& op) { return op.comm == comm; });
  destroy_comm(comm, abort);
  return ncclSuccess;
}

}  // namespace

ncclResult_t fail(ncclResult_t result, const char* fmt, ...) {
  // Formatted apart first: an argument may be last_error_text() itself.
  char text[1024];
  va_list args;
  va_start(args, fmt);
  vsnprintf(text, sizeof(text), fmt, args);
  va_end(args);
  g_last_error = text;
  return result;
}

const char* last_error_text() {
  return g_last_error.c_str();
}

}  // namespace host_nccl

using host_nccl::fail;
using host_nccl::guarded;

HOST_NCCL_API ncclResult_t pncclGetVersion(int* version) {
  if (version == nullptr) return fail(ncclInvalidArgument, "ncclGetVersion: version is NULL");
#ifdef HOST_NCCL_2_27
  *version = 22709;
#else
  *version = NCCL_VERSION_CODE;
#endif
  return ncclSuccess;
}
HOST_NCCL_ALIAS(ncclGetVersion);

HOST_NCCL_API ncclResult_t pncclGetUniqueId(ncclUniqueId* uniqueId) {
  if (uniqueId == nullptr) return fail(ncclInvalidArgument, "ncclGetUniqueId: uniqueId is NULL");
  return guarded([&] { return host_nccl::make_unique_id(uniqueId); });
}
HOST_NCCL_ALIAS(ncclGetUniqueId);

HOST_NCCL_API const char* pncclGetErrorString(ncclResult_t result) {
  switch (result) {
    case ncclSuccess:
      return "no error";
    case ncclUnhandledCudaError:
      return "unhandled cuda error";
    case ncclSystemError:
      return "unhandled system error";
    case ncclInternalError:
      return "internal error";
    case ncclInvalidArgument:
      return "invalid argument";
    case ncclInvalidUsage:
      return "invalid usage";
    case ncclRemoteError:
      return "remote process exited or there was a network error";
    case ncclInProgress:
      return "operation in progress";
    default:
      return "unknown result code";
  }
}
HOST_NCCL_ALIAS(ncclGetErrorString);

HOST_NCCL_API const char* pncclGetLastError(ncclComm_t) {
  return host_nccl::last_error_text();  // per thread, as NCCL's
}
HOST_NCCL_ALIAS(ncclGetLastError);

HOST_NCCL_API ncclResult_t pncclCommInitRankConfig(ncclComm_t* comm, int nranks,
                                                   ncclUniqueId commId, int rank,
                                                   ncclConfig_t* config) {
  return guarded([&] {
    return host_nccl::init_rank(comm, nranks, commId, rank, config, "ncclCommInitRankConfig");
  });
}
HOST_NCCL_ALIAS(ncclCommInitRankConfig);

HOST_NCCL_API ncclResult_t pncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId commId,
                                             int rank) {
  return guarded([&] {
    return host_nccl::init_rank(comm, nranks, commId, rank, nullptr, "ncclCommInitRank");
  });
}
HOST_NCCL_ALIAS(ncclCommInitRank);

// Every rank has a process of its own here (one UCX worker, progressed by the
// calling thread), so a clique in one process can only be of one rank.
HOST_NCCL_API ncclResult_t pncclCommInitAll(ncclComm_t* comm, int ndev, const int*) {
  const char* call = "ncclCommInitAll";
  if (comm == nullptr) return fail(ncclInvalidArgument, "%s: comm is NULL", call);
  if (ndev < 1) return fail(ncclInvalidArgument, "%s: ndev %d is below 1", call, ndev);
  if (ndev > 1) {
    return fail(ncclInvalidUsage,
                "%s: ndev %d: the host NCCL stand-in runs one rank per process; start a process "
                "per rank and call ncclCommInitRank",
                call, ndev);
  }
  return guarded([&] {
    *comm = nullptr;
    int timeout_ms = 0;
    ncclResult_t r = host_nccl::timeout_from_env(&timeout_ms);
    if (r != ncclSuccess) return fail(r, "%s: %s", call, host_nccl::last_error_text());
    // A world of one never reaches the rendezvous.
    const host_nccl::Rendezvous none{"127.0.0.1", 1};
    if ((r = host_nccl::create_comm(none, 1, 0, timeout_ms, comm)) != ncclSuccess) {
      return fail(r, "%s: %s", call, host_nccl::last_error_text());
    }
    return ncclSuccess;
  });
}
HOST_NCCL_ALIAS(ncclCommInitAll);

// Every rank receives all nId ids; the first one is the rendezvous, the
// others are only checked to be ids of this library.
HOST_NCCL_API ncclResult_t pncclCommInitRankScalable(ncclComm_t* newcomm, int nranks, int myrank,
                                                     int nId, ncclUniqueId* commIds,
                                                     ncclConfig_t* config) {
  const char* call = "ncclCommInitRankScalable";
  if (nId < 1 || commIds == nullptr) {
    return fail(ncclInvalidArgument, "%s: %d ids at %p (at least one is needed)", call, nId,
                static_cast<void*>(commIds));
  }
  for (int i = 1; i < nId; ++i) {
    host_nccl::Rendezvous unused;
    if (const ncclResult_t r = host_nccl::parse_unique_id(commIds[i], &unused); r != ncclSuccess) {
      return fail(r, "%s: id %d: %s", call, i, host_nccl::last_error_text());
    }
  }
  return guarded(
      [&] { return host_nccl::init_rank(newcomm, nranks, commIds[0], myrank, config, call); });
}
HOST_NCCL_ALIAS(ncclCommInitRankScalable);

HOST_NCCL_API ncclResult_t pncclCommSplit(ncclComm_t comm, int color, int key, ncclComm_t* newcomm,
                                          ncclConfig_t* config) {
  const char* call = "ncclCommSplit";
  ncclResult_t r = host_nccl::check_comm(comm, call);
  if (r != ncclSuccess) return r;
  if (newcomm == nullptr) return fail(ncclInvalidArgument, "%s: newcomm is NULL", call);
  *newcomm = nullptr;
  if (color < 0 && color != NCCL_SPLIT_NOCOLOR) {
    return fail(ncclInvalidArgument, "%s: color %d is negative and not NCCL_SPLIT_NOCOLOR", call,
                color);
  }
  if ((r = host_nccl::check_config(config, call)) != ncclSuccess) return r;
  if ((r = host_nccl::check_usable(comm, call)) != ncclSuccess) return r;
  return guarded([&] { return host_nccl::split_comm(comm, color, key, newcomm); });
}
HOST_NCCL_ALIAS(ncclCommSplit);

HOST_NCCL_API ncclResult_t pncclCommShrink(ncclComm_t comm, int*, int, ncclComm_t* newcomm,
                                           ncclConfig_t*, int) {
  const char* call = "ncclCommShrink";
  if (const ncclResult_t r = host_nccl::check_comm(comm, call); r != ncclSuccess) return r;
  if (newcomm != nullptr) *newcomm = nullptr;
  return fail(ncclInvalidUsage, "%s is not supported by the host NCCL stand-in", call);
}
HOST_NCCL_ALIAS(ncclCommShrink);

HOST_NCCL_API ncclResult_t pncclCommDestroy(ncclComm_t comm) {
  return guarded([&] { return host_nccl::destroy(comm, false, "ncclCommDestroy"); });
}
HOST_NCCL_ALIAS(ncclCommDestroy);

HOST_NCCL_API ncclResult_t pncclCommAbort(ncclComm_t comm) {
  return guarded([&] { return host_nccl::destroy(comm, true, "ncclCommAbort"); });
}
HOST_NCCL_ALIAS(ncclCommAbort);

// Every operation has completed before its call returned: nothing to flush.
HOST_NCCL_API ncclResult_t pncclCommFinalize(ncclComm_t comm) {
  return host_nccl::check_comm(comm, "ncclCommFinalize");
}
HOST_NCCL_ALIAS(ncclCommFinalize);

HOST_NCCL_API ncclResult_t pncclCommCount(const ncclComm_t comm, int* count) {
  if (const ncclResult_t r = host_nccl::check_comm(comm, "ncclCommCount"); r != ncclSuccess) {
    return r;
  }
  if (count == nullptr) return fail(ncclInvalidArgument, "ncclCommCount: count is NULL");
  *count = comm->size;
  return ncclSuccess;
}
HOST_NCCL_ALIAS(ncclCommCount);

HOST_NCCL_API ncclResult_t pncclCommUserRank(const ncclComm_t comm, int* rank) {
  if (const ncclResult_t r = host_nccl::check_comm(comm, "ncclCommUserRank"); r != ncclSuccess) {
    return r;
  }
  if (rank == nullptr) return fail(ncclInvalidArgument, "ncclCommUserRank: rank is NULL");
  *rank = comm->rank;
  return ncclSuccess;
}
HOST_NCCL_ALIAS(ncclCommUserRank);

HOST_NCCL_API ncclResult_t pncclCommCuDevice(const ncclComm_t comm, int* device) {
  if (const ncclResult_t r = host_nccl::check_comm(comm, "ncclCommCuDevice"); r != ncclSuccess) {
    return r;
  }
  if (device == nullptr) return fail(ncclInvalidArgument, "ncclCommCuDevice: device is NULL");
  *device = 0;  // no device is used: host memory throughout
  return ncclSuccess;
}
HOST_NCCL_ALIAS(ncclCommCuDevice);

HOST_NCCL_API ncclResult_t pncclCommGetAsyncError(ncclComm_t comm, ncclResult_t* asyncError) {
  if (const ncclResult_t r = host_nccl::check_comm(comm, "ncclCommGetAsyncError");
      r != ncclSuccess) {
    return r;
  }
  if (asyncError == nullptr) {
    return fail(ncclInvalidArgument, "ncclCommGetAsyncError: asyncError is NULL");
  }
  *asyncError = comm->async_error;
  return ncclSuccess;
}
HOST_NCCL_ALIAS(ncclCommGetAsyncError);

HOST_NCCL_API ncclResult_t pncclSend(const void* sendbuff, size_t count, ncclDataType_t datatype,
                                     int peer, ncclComm_t comm, cudaStream_t) {
  return host_nccl::grouped(guarded([&] {
    return host_nccl::point_to_point(true, sendbuff, count, datatype, peer, comm, "ncclSend");
  }));
}
HOST_NCCL_ALIAS(ncclSend);

HOST_NCCL_API ncclResult_t pncclRecv(void* recvbuff, size_t count, ncclDataType_t datatype,
                                     int peer, ncclComm_t comm, cudaStream_t) {
  return host_nccl::grouped(guarded([&] {
    return host_nccl::point_to_point(false, recvbuff, count, datatype, peer, comm, "ncclRecv");
  }));
}
HOST_NCCL_ALIAS(ncclRecv);

// HOST_NCCL_2_27: an NCCL before 2.28, without ncclAlltoAll (the shim must
// load and pass through over it).
#ifndef HOST_NCCL_2_27
HOST_NCCL_API ncclResult_t pncclAlltoAll(const void* sendbuff, void* recvbuff, size_t count,
                                         ncclDataType_t datatype, ncclComm_t comm, cudaStream_t) {
  return host_nccl::grouped(
      guarded([&] { return host_nccl::all_to_all(sendbuff, recvbuff, count, datatype, comm); }));
}
HOST_NCCL_ALIAS(ncclAlltoAll);
#endif

HOST_NCCL_API ncclResult_t pncclGroupStart() {
  ++host_nccl::g_group.depth;
  return ncclSuccess;
}
HOST_NCCL_ALIAS(ncclGroupStart);

HOST_NCCL_API ncclResult_t pncclGroupEnd() {
  return guarded([&] { return host_nccl::end_group(true, "ncclGroupEnd"); });
}
HOST_NCCL_ALIAS(ncclGroupEnd);

HOST_NCCL_API ncclResult_t pncclGroupSimulateEnd(ncclSimInfo_t* simInfo) {
  const ncclResult_t r =
      guarded([&] { return host_nccl::end_group(false, "ncclGroupSimulateEnd"); });
  if (r == ncclSuccess && simInfo != nullptr) simInfo->estimatedTime = 0.0f;
  return r;
}
HOST_NCCL_ALIAS(ncclGroupSimulateEnd);

extern "C" HOST_NCCL_API ncclResult_t hostNcclCommBytes(ncclComm_t comm, uint64_t* bytes_sent,
                                                        uint64_t* bytes_received) {
  if (const ncclResult_t r = host_nccl::check_comm(comm, "hostNcclCommBytes"); r != ncclSuccess) {
    return r;
  }
  if (bytes_sent != nullptr) *bytes_sent = comm->bytes_sent;
  if (bytes_received != nullptr) *bytes_received = comm->bytes_received;
  return ncclSuccess;
}
