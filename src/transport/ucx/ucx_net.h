// The point-to-point network behind the NCCL net plugin, over UCX: devices
// (network interfaces), connections by socket address (a UCP listener per
// listen comm), tagged sends and receives with at most kRequestsPerComm in
// flight per comm, polled by test(). It moves bytes: nothing here is
// NCCL-typed or knows rows (plugin/net adapts it to the ncclNet tables and
// compresses), and its limits are its own (the plugin checks them against
// NCCL's).
//
// Threading: calls on comms of one device are serialised by that device's
// lock (NCCL's proxy thread tests while another thread may listen).
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/status.h"
#include "transport/net_devices.h"

namespace lshmoe::transport::net {

inline constexpr size_t kListenHandleBytes = 64;  // what listen() writes for the peer
inline constexpr int kRequestsPerComm = 32;       // sends or receives in flight on one comm

struct ListenComm;
struct SendComm;
struct RecvComm;
struct Request;

// Once per process (later calls return the first result): reads the LSHMOE_*
// configuration and finds the devices: the interfaces named by LSHMOE_NET_IF
// (names or prefixes, comma-separated), else by UCX_NET_DEVICES, else every
// interface that is up except loopback and docker bridges (loopback when
// nothing else is up).
Status init();
int device_count();
const DeviceInfo& device(int dev);
bool supports_cuda_memory();  // the UCX in use handles CUDA pointers

// `handle` is kListenHandleBytes of caller memory carried to the peer.
Status listen(int dev, void* handle, ListenComm** out);
// Non-blocking: *out is NULL until the connection is up; call again with
// the same handle (it keeps the connection's state meanwhile).
Status connect(int dev, void* handle, SendComm** out);
// Non-blocking: *out is NULL until a peer's connection is up.
Status accept(ListenComm* listen, RecvComm** out);

// *out is NULL when kRequestsPerComm are already in flight (try again
// later). Messages match in posting order per tag. A send may be `marked`
// (one bit the receiver learns: the plugin marks compressed messages).
Status isend(SendComm* comm, const void* data, size_t size, int tag, bool marked, Request** out);
// Whether isend would take a request now (kRequestsPerComm not all in
// flight): a caller with work to do before posting checks first.
bool can_send(SendComm* comm);
Status irecv(RecvComm* comm, void* data, size_t capacity, int tag, Request** out);
// Non-blocking; once *done, *size is the bytes sent or received, *marked
// (may be NULL) whether the sender marked a received message, and the
// request is released. A dead peer or broken connection is LSHMOE_ERR_NETWORK.
Status test(Request* request, bool* done, size_t* size, bool* marked);

// Abandon what is in flight (no buffer is touched afterwards) and free.
Status close_send(SendComm* comm);
Status close_recv(RecvComm* comm);
Status close_listen(ListenComm* comm);

Status register_memory(bool cuda, void** mhandle);
Status deregister_memory(void* mhandle);
bool is_device_memory(const void* mhandle);  // false for NULL

}  // namespace lshmoe::transport::net
