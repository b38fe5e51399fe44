// Where the ranks of a new communicator meet: the ncclUniqueId's contents
// (the address and TCP port on which rank 0 listens during
// ncclCommInitRank) and the communicator timeout.
#pragma once

#include <nccl.h>

#include <string>

namespace host_nccl {

struct Rendezvous {
  std::string address;
  int port = 0;
};

// MASTER_ADDR and MASTER_PORT when the environment gives both (a launcher
// already chose them for the job), else 127.0.0.1 and a free port.
ncclResult_t make_unique_id(ncclUniqueId* id);

// ncclInvalidArgument for an id that this stand-in did not make (a real
// NCCL's id, an uninitialised one).
ncclResult_t parse_unique_id(const ncclUniqueId& id, Rendezvous* out);

// LSHMOE_TIMEOUT_MS, the library's own variable, so that one setting bounds
// both the stand-in and the engine under test.
ncclResult_t timeout_from_env(int* timeout_ms);

}  // namespace host_nccl
