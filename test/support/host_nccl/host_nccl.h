/*
 * The host NCCL stand-in's one function beyond NCCL's API. Programs that
 * must also run against the real NCCL, where it is absent, look it up with
 * dlsym(RTLD_DEFAULT, "hostNcclCommBytes") instead of calling it by name.
 */
#ifndef HOST_NCCL_H_
#define HOST_NCCL_H_

#include <nccl.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/*
 * The payload bytes this rank has sent to, and received from, the other
 * ranks of `comm` (copies to itself excluded; the stand-in's own traffic,
 * such as a split's exchange of colors, excluded), counted as each send or
 * receive completes with its full size. Either output may be NULL.
 */
ncclResult_t hostNcclCommBytes(ncclComm_t comm, uint64_t* bytes_sent, uint64_t* bytes_received);

typedef ncclResult_t (*hostNcclCommBytes_t)(ncclComm_t comm, uint64_t* bytes_sent,
                                            uint64_t* bytes_received);

#ifdef __cplusplus
}
#endif

#endif /* HOST_NCCL_H_ */
