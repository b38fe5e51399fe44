/*
 * Helpers for test programs that are ordinary NCCL programs in C11: they run
 * unchanged against the real NCCL and against the host stand-in
 * (test/support/host_nccl), one process per rank, started by
 * scripts/launch_local.sh (RANK, WORLD_SIZE) or by mpirun
 * (OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE).
 *
 * The ncclUniqueId travels through a file, NCCL_TEST_ID_FILE: rank 0 writes
 * it (to NAME.tmp, then renamed, so no rank reads half of it), the others
 * wait for it, and rank 0 removes it when ncclCommInitRank returns (every
 * rank has read it by then, or the job has failed), so that a later job does
 * not read a stale id. A job killed during its start may still leave one: a
 * test that reuses the path removes it first (see host_nccl/CMakeLists.txt).
 *
 * Include this header before any other: it asks for POSIX and GNU
 * declarations (RTLD_DEFAULT, clock_gettime).
 */
#ifndef NCCL_TEST_UTIL_H_
#define NCCL_TEST_UTIL_H_

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <dlfcn.h>
#include <errno.h>
#include <nccl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Exits non-zero, naming the call and NCCL's description of the failure. */
#define NCCL_TEST_CHECK(call)                                                         \
  do {                                                                                \
    ncclResult_t nccl_test_result_ = (call);                                          \
    if (nccl_test_result_ != ncclSuccess) {                                           \
      fprintf(stderr, "%s:%d: rank %s: %s failed: %s (%d): %s\n", __FILE__, __LINE__, \
              nccl_test_rank_name(), #call, ncclGetErrorString(nccl_test_result_),    \
              (int)nccl_test_result_, ncclGetLastError(NULL));                        \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)
#ifndef CHECK
#define CHECK(call) NCCL_TEST_CHECK(call)
#endif

/* Exits non-zero unless `cond`; the rest is a printf format and its arguments. */
#define NCCL_TEST_REQUIRE(cond, ...)                                                             \
  do {                                                                                           \
    if (!(cond)) {                                                                               \
      fprintf(stderr, "%s:%d: rank %s: %s: ", __FILE__, __LINE__, nccl_test_rank_name(), #cond); \
      fprintf(stderr, __VA_ARGS__);                                                              \
      fputc('\n', stderr);                                                                       \
      exit(1);                                                                                   \
    }                                                                                            \
  } while (0)

static inline const char* nccl_test_rank_name(void) {
  const char* rank = getenv("RANK");
  if (rank == NULL) rank = getenv("OMPI_COMM_WORLD_RANK");
  return rank != NULL ? rank : "0";
}

static inline double nccl_test_now_ms(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e3 + (double)t.tv_nsec / 1e6;
}

static inline int nccl_test_env_int(const char* name, long lo, long hi) {
  const char* text = getenv(name);
  char* end = NULL;
  long v;
  NCCL_TEST_REQUIRE(text != NULL && *text != '\0', "%s is not set", name);
  errno = 0;
  v = strtol(text, &end, 10);
  NCCL_TEST_REQUIRE(errno == 0 && *end == '\0' && v >= lo && v <= hi,
                    "%s=\"%s\" is invalid: expected an integer in [%ld, %ld]", name, text, lo, hi);
  return (int)v;
}

/* RANK and WORLD_SIZE, else mpirun's names; neither: rank 0 of 1. */
static inline void nccl_test_ranks(int* rank, int* world) {
  const int torchrun = getenv("RANK") != NULL || getenv("WORLD_SIZE") != NULL;
  const char* size_name = torchrun ? "WORLD_SIZE" : "OMPI_COMM_WORLD_SIZE";
  const char* rank_name = torchrun ? "RANK" : "OMPI_COMM_WORLD_RANK";
  if (!torchrun && getenv(size_name) == NULL && getenv(rank_name) == NULL) {
    *rank = 0;
    *world = 1;
    return;
  }
  *world = nccl_test_env_int(size_name, 1, 1 << 20);
  *rank = nccl_test_env_int(rank_name, 0, *world - 1);
}

/* Rank 0 makes the id and publishes it; the others wait for it, up to
   NCCL_TEST_ID_TIMEOUT_MS (default 60000). A world of one needs no file. */
static inline ncclUniqueId nccl_test_unique_id(int rank, int world) {
  ncclUniqueId id;
  const char* path = getenv("NCCL_TEST_ID_FILE");
  char tmp[4096];
  memset(&id, 0, sizeof(id));
  if (world == 1 && (path == NULL || *path == '\0')) {
    NCCL_TEST_CHECK(ncclGetUniqueId(&id));
    return id;
  }
  NCCL_TEST_REQUIRE(path != NULL && *path != '\0',
                    "NCCL_TEST_ID_FILE is not set: the ranks share the ncclUniqueId through that "
                    "file");
  if (rank == 0) {
    FILE* f;
    NCCL_TEST_CHECK(ncclGetUniqueId(&id));
    NCCL_TEST_REQUIRE(snprintf(tmp, sizeof(tmp), "%s.tmp", path) < (int)sizeof(tmp),
                      "NCCL_TEST_ID_FILE is too long");
    f = fopen(tmp, "wb");
    NCCL_TEST_REQUIRE(f != NULL, "cannot create %s: %s", tmp, strerror(errno));
    NCCL_TEST_REQUIRE(fwrite(&id, sizeof(id), 1, f) == 1 && fflush(f) == 0 && fsync(fileno(f)) == 0,
                      "cannot write %s: %s", tmp, strerror(errno));
    NCCL_TEST_REQUIRE(fclose(f) == 0, "cannot write %s: %s", tmp, strerror(errno));
    NCCL_TEST_REQUIRE(rename(tmp, path) == 0, "cannot rename %s to %s: %s", tmp, path,
                      strerror(errno));
  } else {
    const int limit_ms = getenv("NCCL_TEST_ID_TIMEOUT_MS")
                             ? nccl_test_env_int("NCCL_TEST_ID_TIMEOUT_MS", 1, 86400000)
                             : 60000;
    const double deadline = nccl_test_now_ms() + limit_ms;
    for (;;) {
      FILE* f = fopen(path, "rb");
      if (f != NULL) {
        const size_t n = fread(&id, sizeof(id), 1, f);
        fclose(f);
        if (n == 1) break;
      }
      NCCL_TEST_REQUIRE(nccl_test_now_ms() < deadline,
                        "NCCL_TEST_ID_FILE=%s did not appear within %d ms (rank 0 writes it: is "
                        "rank 0 running, with the same NCCL_TEST_ID_FILE?)",
                        path, limit_ms);
      {
        const struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
      }
    }
  }
  return id;
}

/* The usual start of a test: ranks from the environment, the id through the
   file, ncclCommInitRank. */
static inline ncclComm_t nccl_test_init(int* rank, int* world) {
  const char* path = getenv("NCCL_TEST_ID_FILE");
  ncclComm_t comm = NULL;
  ncclUniqueId id;
  ncclResult_t result;
  nccl_test_ranks(rank, world);
  id = nccl_test_unique_id(*rank, *world);
  result = ncclCommInitRank(&comm, *world, id, *rank);
  /* Gone before the check exits, so that a failed job leaves no stale id. */
  if (*rank == 0 && path != NULL && *path != '\0') unlink(path);
  if (result != ncclSuccess) {
    fprintf(stderr, "%s:%d: rank %d: ncclCommInitRank (rank %d of %d) failed: %s (%d): %s\n",
            __FILE__, __LINE__, *rank, *rank, *world, ncclGetErrorString(result), (int)result,
            ncclGetLastError(NULL));
    exit(1);
  }
  return comm;
}

/* The host stand-in's byte counts for `comm` (see host_nccl.h): 1 with them,
   0 under a NCCL that has none. Looked up at run time so that the program
   links against either. */
static inline int nccl_test_comm_bytes(ncclComm_t comm, uint64_t* sent, uint64_t* received) {
  typedef ncclResult_t (*comm_bytes_t)(ncclComm_t, uint64_t*, uint64_t*);
  void* symbol = dlsym(RTLD_DEFAULT, "hostNcclCommBytes");
  comm_bytes_t comm_bytes;
  if (symbol == NULL) return 0;
  /* ISO C converts no object pointer to a function pointer: copy the bits. */
  memcpy(&comm_bytes, &symbol, sizeof(comm_bytes));
  NCCL_TEST_CHECK(comm_bytes(comm, sent, received));
  return 1;
}

#endif /* NCCL_TEST_UTIL_H_ */
