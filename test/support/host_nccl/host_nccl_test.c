/*
 * The host NCCL stand-in's test: an ordinary NCCL program in C11, one
 * process per rank (scripts/launch_local.sh N host_nccl_test [MODE]). Its
 * buffers are host memory, which only the stand-in takes; the calls, their
 * order and their results are NCCL's, apart from the stand-in's documented
 * extras (byte counts, errors where NCCL would hang or overflow).
 *
 *   (no mode)   every operation, data checked element by element, with the
 *               byte counts of each communicator
 *   dying-peer  two ranks: rank 1 exits right after ncclCommInitRank; rank
 *               0's send and receive to it fail within LSHMOE_TIMEOUT_MS
 *               and every later call fails too
 *   silent-peer the same with rank 1 alive but posting nothing until rank 0
 *               has given up: the timeout, not UCX's failure detection
 */
#include "nccl_test_util.h"

static int g_rank, g_world;
static int g_have_bytes; /* the stand-in's byte counts are there */

/* What each communicator is expected to have sent and received so far. */
typedef struct {
  ncclComm_t comm;
  uint64_t sent, received;
} Expected;

static void check_bytes(const Expected* e, const char* after) {
  uint64_t sent = 0, received = 0;
  if (!g_have_bytes || e->comm == NULL) return;
  nccl_test_comm_bytes(e->comm, &sent, &received);
  NCCL_TEST_REQUIRE(sent == e->sent && received == e->received,
                    "after %s: %llu bytes sent and %llu received, expected %llu and %llu", after,
                    (unsigned long long)sent, (unsigned long long)received,
                    (unsigned long long)e->sent, (unsigned long long)e->received);
}

/* The value of element i from src to dst in test section `salt`. */
static uint32_t pattern(int src, int dst, size_t i, uint32_t salt) {
  uint32_t x = salt * 2654435761u;
  x ^= (uint32_t)src * 40503u + (uint32_t)dst * 65599u + (uint32_t)i * 2246822519u;
  x ^= x >> 15;
  x *= 2246822519u;
  x ^= x >> 13;
  return x;
}

static void* xmalloc(size_t bytes) {
  void* p = malloc(bytes + 1); /* never NULL for an empty message */
  NCCL_TEST_REQUIRE(p != NULL, "out of memory (%zu bytes)", bytes);
  return p;
}

/* Unequal, some empty, one large enough for UCX's rendezvous protocol. */
static size_t pair_count(int src, int dst) {
  if (src == 0 && dst == 1) return 300000;
  if ((src + 2 * dst) % 4 == 3) return 0;
  return 1 + (size_t)(3 * src + 5 * dst) % 7;
}

static int rank_of(ncclComm_t comm) {
  int r = -1;
  NCCL_TEST_CHECK(ncclCommUserRank(comm, &r));
  return r;
}

static int size_of(ncclComm_t comm) {
  int n = -1;
  NCCL_TEST_CHECK(ncclCommCount(comm, &n));
  return n;
}

/* Grouped sends and receives of unequal counts to every peer, self included. */
static void test_grouped(Expected* e, uint32_t salt) {
  const int me = rank_of(e->comm), n = size_of(e->comm);
  uint32_t** send = xmalloc(sizeof(uint32_t*) * (size_t)n);
  uint32_t** recv = xmalloc(sizeof(uint32_t*) * (size_t)n);
  int k, p;
  size_t i;
  for (p = 0; p < n; ++p) {
    const size_t out = pair_count(me, p), in = pair_count(p, me);
    send[p] = xmalloc(out * sizeof(uint32_t));
    recv[p] = xmalloc(in * sizeof(uint32_t));
    for (i = 0; i < out; ++i) send[p][i] = pattern(me, p, i, salt);
    memset(recv[p], 0xab, in * sizeof(uint32_t));
    if (p != me) {
      e->sent += out * sizeof(uint32_t);
      e->received += in * sizeof(uint32_t);
    }
  }
  NCCL_TEST_CHECK(ncclGroupStart());
  for (k = 0; k < n; ++k) {
    const int to = (me + k) % n, from = (me - k + n) % n;
    NCCL_TEST_CHECK(ncclSend(send[to], pair_count(me, to), ncclUint32, to, e->comm, NULL));
    NCCL_TEST_CHECK(ncclRecv(recv[from], pair_count(from, me), ncclUint32, from, e->comm, NULL));
  }
  NCCL_TEST_CHECK(ncclGroupEnd());
  for (p = 0; p < n; ++p) {
    for (i = 0; i < pair_count(p, me); ++i) {
      NCCL_TEST_REQUIRE(recv[p][i] == pattern(p, me, i, salt),
                        "grouped: element %zu from rank %d is 0x%08x, expected 0x%08x", i, p,
                        recv[p][i], pattern(p, me, i, salt));
    }
    free(send[p]);
    free(recv[p]);
  }
  free(send);
  free(recv);
  check_bytes(e, "grouped sends and receives");
}

static void test_alltoall(Expected* e, size_t count, uint32_t salt) {
  const int me = rank_of(e->comm), n = size_of(e->comm);
  double* send = xmalloc(sizeof(double) * count * (size_t)n);
  double* recv = xmalloc(sizeof(double) * count * (size_t)n);
  int p;
  size_t i;
  for (p = 0; p < n; ++p) {
    for (i = 0; i < count; ++i) send[(size_t)p * count + i] = (double)pattern(me, p, i, salt) / 7.0;
  }
  memset(recv, 0, sizeof(double) * count * (size_t)n);
  NCCL_TEST_CHECK(ncclAlltoAll(send, recv, count, ncclFloat64, e->comm, NULL));
  for (p = 0; p < n; ++p) {
    for (i = 0; i < count; ++i) {
      const double want = (double)pattern(p, me, i, salt) / 7.0;
      NCCL_TEST_REQUIRE(recv[(size_t)p * count + i] == want,
                        "all-to-all: element %zu from rank %d is %.17g, expected %.17g", i, p,
                        recv[(size_t)p * count + i], want);
    }
  }
  e->sent += sizeof(double) * count * (size_t)(n - 1);
  e->received += sizeof(double) * count * (size_t)(n - 1);
  free(send);
  free(recv);
  check_bytes(e, "ncclAlltoAll");
}

/* Only the outermost ncclGroupEnd performs: an inner one returns with the
   sends to self still unmatched and the receives not yet filled. */
static void test_nested_groups(Expected* e) {
  enum { kCount = 1000 };
  const int me = rank_of(e->comm), n = size_of(e->comm);
  uint16_t* send = xmalloc(sizeof(uint16_t) * kCount * (size_t)n);
  uint16_t* recv = xmalloc(sizeof(uint16_t) * kCount * (size_t)n);
  int p;
  size_t i;
  for (p = 0; p < n; ++p) {
    for (i = 0; i < kCount; ++i) send[(size_t)p * kCount + i] = (uint16_t)pattern(me, p, i, 3);
  }
  memset(recv, 0xcd, sizeof(uint16_t) * kCount * (size_t)n);
  NCCL_TEST_CHECK(ncclGroupStart());
  NCCL_TEST_CHECK(ncclGroupStart());
  for (p = 0; p < n; ++p) {
    NCCL_TEST_CHECK(ncclSend(send + (size_t)p * kCount, kCount, ncclFloat16, p, e->comm, NULL));
  }
  NCCL_TEST_CHECK(ncclGroupEnd());
  NCCL_TEST_CHECK(ncclGroupStart());
  for (p = 0; p < n; ++p) {
    NCCL_TEST_CHECK(ncclRecv(recv + (size_t)p * kCount, kCount, ncclFloat16, p, e->comm, NULL));
  }
  NCCL_TEST_CHECK(ncclGroupEnd());
  for (i = 0; i < kCount * (size_t)n; ++i) {
    NCCL_TEST_REQUIRE(recv[i] == 0xcdcd, "nested groups: element %zu arrived before the outer end",
                      i);
  }
  NCCL_TEST_CHECK(ncclGroupEnd());
  for (p = 0; p < n; ++p) {
    for (i = 0; i < kCount; ++i) {
      NCCL_TEST_REQUIRE(recv[(size_t)p * kCount + i] == (uint16_t)pattern(p, me, i, 3),
                        "nested groups: element %zu from rank %d differs", i, p);
    }
  }
  e->sent += sizeof(uint16_t) * kCount * (size_t)(n - 1);
  e->received += sizeof(uint16_t) * kCount * (size_t)(n - 1);
  free(send);
  free(recv);
  check_bytes(e, "nested groups");
}

/* Each call completes on its own: every pair in one global order, the lower
   rank sending first, so that no rank waits on one that waits on it. */
static void test_blocking(Expected* e) {
  const int me = rank_of(e->comm), n = size_of(e->comm);
  int a, b, dir;
  size_t i;
  for (a = 0; a < n; ++a) {
    for (b = a + 1; b < n; ++b) {
      if (me != a && me != b) continue;
      for (dir = 0; dir < 2; ++dir) {
        const int src = dir == 0 ? a : b, dst = dir == 0 ? b : a;
        const size_t count = (a == 0 && b == 1) ? 200000 : (size_t)(17 + a + b);
        uint64_t* buf = xmalloc(sizeof(uint64_t) * count);
        if (me == src) {
          for (i = 0; i < count; ++i) buf[i] = ((uint64_t)pattern(src, dst, i, 4) << 20) | i;
          NCCL_TEST_CHECK(ncclSend(buf, count, ncclInt64, dst, e->comm, NULL));
          e->sent += sizeof(uint64_t) * count;
        } else {
          memset(buf, 0, sizeof(uint64_t) * count);
          NCCL_TEST_CHECK(ncclRecv(buf, count, ncclInt64, src, e->comm, NULL));
          for (i = 0; i < count; ++i) {
            NCCL_TEST_REQUIRE(buf[i] == (((uint64_t)pattern(src, dst, i, 4) << 20) | i),
                              "blocking: element %zu from rank %d differs", i, src);
          }
          e->received += sizeof(uint64_t) * count;
        }
        free(buf);
      }
    }
  }
  check_bytes(e, "sends and receives outside a group");
}

/* Sends to self match the receives from self in posting order; they are
   copies, not traffic. */
static void test_self(Expected* e) {
  enum { kFirst = 333, kSecond = 77 };
  const int me = rank_of(e->comm);
  uint8_t first[kFirst], second[kSecond], got_first[kFirst], got_second[kSecond];
  size_t i;
  for (i = 0; i < kFirst; ++i) first[i] = (uint8_t)pattern(me, me, i, 5);
  for (i = 0; i < kSecond; ++i) second[i] = (uint8_t)pattern(me, me, i, 55);
  memset(got_first, 0, sizeof(got_first));
  memset(got_second, 0, sizeof(got_second));
  NCCL_TEST_CHECK(ncclGroupStart());
  NCCL_TEST_CHECK(ncclSend(first, kFirst, ncclUint8, me, e->comm, NULL));
  NCCL_TEST_CHECK(ncclSend(second, kSecond, ncclFloat8e4m3, me, e->comm, NULL));
  NCCL_TEST_CHECK(ncclRecv(got_first, kFirst, ncclUint8, me, e->comm, NULL));
  NCCL_TEST_CHECK(ncclRecv(got_second, kSecond, ncclFloat8e4m3, me, e->comm, NULL));
  NCCL_TEST_CHECK(ncclGroupEnd());
  NCCL_TEST_REQUIRE(memcmp(first, got_first, kFirst) == 0, "self: the first message differs");
  NCCL_TEST_REQUIRE(memcmp(second, got_second, kSecond) == 0, "self: the second message differs");
  /* An empty message may have NULL buffers. */
  NCCL_TEST_CHECK(ncclGroupStart());
  NCCL_TEST_CHECK(ncclSend(NULL, 0, ncclInt32, me, e->comm, NULL));
  NCCL_TEST_CHECK(ncclRecv(NULL, 0, ncclInt32, me, e->comm, NULL));
  NCCL_TEST_CHECK(ncclGroupEnd());
  check_bytes(e, "sends to self");
}

/* One group over a parent and its child: their messages between the same
   two processes, with the same sequence numbers, must not cross. */
static void test_parent_and_child(Expected* parent, Expected* child) {
  enum { kCount = 64 };
  const int pm = rank_of(parent->comm), pn = size_of(parent->comm);
  const int cm = rank_of(child->comm), cn = size_of(child->comm);
  const int pto = (pm + 1) % pn, pfrom = (pm - 1 + pn) % pn;
  const int cto = (cm + 1) % cn, cfrom = (cm - 1 + cn) % cn;
  int32_t psend[kCount], precv[kCount], csend[kCount], crecv[kCount];
  size_t i;
  for (i = 0; i < kCount; ++i) {
    psend[i] = (int32_t)(pattern(pm, pto, i, 7) & 0x7fffffff);
    csend[i] = -(int32_t)(pattern(cm, cto, i, 8) & 0x7fffffff);
  }
  NCCL_TEST_CHECK(ncclGroupStart());
  NCCL_TEST_CHECK(ncclRecv(crecv, kCount, ncclInt32, cfrom, child->comm, NULL));
  NCCL_TEST_CHECK(ncclRecv(precv, kCount, ncclInt32, pfrom, parent->comm, NULL));
  NCCL_TEST_CHECK(ncclSend(psend, kCount, ncclInt32, pto, parent->comm, NULL));
  NCCL_TEST_CHECK(ncclSend(csend, kCount, ncclInt32, cto, child->comm, NULL));
  NCCL_TEST_CHECK(ncclGroupEnd());
  for (i = 0; i < kCount; ++i) {
    NCCL_TEST_REQUIRE(precv[i] == (int32_t)(pattern(pfrom, pm, i, 7) & 0x7fffffff),
                      "parent and child: parent element %zu differs", i);
    NCCL_TEST_REQUIRE(crecv[i] == -(int32_t)(pattern(cfrom, cm, i, 8) & 0x7fffffff),
                      "parent and child: child element %zu differs", i);
  }
  if (pto != pm) parent->sent += sizeof(psend);
  if (pfrom != pm) parent->received += sizeof(precv);
  if (cto != cm) child->sent += sizeof(csend);
  if (cfrom != cm) child->received += sizeof(crecv);
  check_bytes(parent, "a group over parent and child (parent)");
  check_bytes(child, "a group over parent and child (child)");
}

static void test_split(Expected* parent) {
  const int me = g_rank, n = g_world;
  const int color = me >= n / 2 ? 1 : 0;
  const int low = color == 1 ? n / 2 : 0, high = color == 1 ? n : n / 2;
  Expected child = {NULL, 0, 0}, rest = {NULL, 0, 0};
  /* Keys reverse the parent's order within each half. */
  NCCL_TEST_CHECK(ncclCommSplit(parent->comm, color, n - me, &child.comm, NULL));
  NCCL_TEST_REQUIRE(child.comm != NULL, "split: no communicator for color %d", color);
  NCCL_TEST_REQUIRE(size_of(child.comm) == high - low, "split: %d ranks, expected %d",
                    size_of(child.comm), high - low);
  NCCL_TEST_REQUIRE(rank_of(child.comm) == high - 1 - me, "split: rank %d, expected %d",
                    rank_of(child.comm), high - 1 - me);
  check_bytes(parent, "ncclCommSplit (its own exchange is not counted)");
  check_bytes(&child, "ncclCommSplit");
  test_grouped(&child, 60);
  test_alltoall(&child, 333, 61);
  test_parent_and_child(parent, &child);
  test_self(&child);

  /* The last rank takes no part: it gets no communicator. */
  NCCL_TEST_CHECK(
      ncclCommSplit(parent->comm, me == n - 1 ? NCCL_SPLIT_NOCOLOR : 0, me, &rest.comm, NULL));
  if (me == n - 1) {
    NCCL_TEST_REQUIRE(rest.comm == NULL, "split: NCCL_SPLIT_NOCOLOR gave a communicator");
  } else {
    NCCL_TEST_REQUIRE(rest.comm != NULL && size_of(rest.comm) == n - 1 && rank_of(rest.comm) == me,
                      "split: the communicator without the last rank is wrong");
    test_alltoall(&rest, 5, 62);
  }
  test_grouped(&child, 63);                    /* still apart from the newer one */
  NCCL_TEST_CHECK(ncclCommDestroy(rest.comm)); /* NULL: nothing to do, as NCCL */
  NCCL_TEST_CHECK(ncclCommDestroy(child.comm));
}

#define EXPECT_RESULT(call, want)                                                                \
  do {                                                                                           \
    const ncclResult_t got_ = (call);                                                            \
    NCCL_TEST_REQUIRE(got_ == (want), "%s returned %s (%d), expected %s; last error: %s", #call, \
                      ncclGetErrorString(got_), (int)got_, #want, ncclGetLastError(NULL));       \
    NCCL_TEST_REQUIRE(got_ == ncclSuccess || ncclGetLastError(NULL)[0] != '\0',                  \
                      "%s left no text for ncclGetLastError", #call);                            \
  } while (0)

static void test_invalid(Expected* e) {
  int32_t buf[4] = {0, 0, 0, 0};
  int n = 0, version = 0, device = -1;
  ncclComm_t other = NULL;
  ncclUniqueId zero;
  ncclSimInfo_t sim = NCCL_SIM_INFO_INITIALIZER;
  ncclResult_t async = ncclInternalError;
  ncclComm_t comm = e->comm;
  const int me = g_rank;

  EXPECT_RESULT(ncclSend(buf, 4, ncclInt32, 0, NULL, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclRecv(buf, 4, ncclInt32, 0, NULL, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclSend(buf, 4, ncclInt32, -1, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclRecv(buf, 4, ncclInt32, g_world, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclSend(NULL, 4, ncclInt32, 0, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclRecv(NULL, 1, ncclInt32, 0, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclSend(buf, 4, ncclNumTypes, 0, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclRecv(buf, 4, (ncclDataType_t)99, 0, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclAlltoAll(buf, buf, 1, ncclInt32, NULL, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclAlltoAll(buf, NULL, 1, ncclInt32, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclAlltoAll(buf, buf, 1, ncclNumTypes, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclGroupEnd(), ncclInvalidUsage);
  EXPECT_RESULT(ncclGroupSimulateEnd(NULL), ncclInvalidUsage);
  EXPECT_RESULT(ncclCommCount(NULL, &n), ncclInvalidArgument);
  EXPECT_RESULT(ncclCommUserRank(NULL, &n), ncclInvalidArgument);
  EXPECT_RESULT(ncclCommGetAsyncError(NULL, &async), ncclInvalidArgument);
  EXPECT_RESULT(ncclCommSplit(NULL, 0, 0, &other, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclCommSplit(comm, -5, 0, &other, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclCommInitAll(&other, 2, NULL), ncclInvalidUsage);
  EXPECT_RESULT(ncclCommShrink(comm, NULL, 0, &other, NULL, NCCL_SHRINK_DEFAULT), ncclInvalidUsage);
  /* An id this library did not make (the stand-in's check of its magic). */
  memset(&zero, 0, sizeof(zero));
  EXPECT_RESULT(ncclCommInitRank(&other, 2, zero, 1), ncclInvalidArgument);
  EXPECT_RESULT(ncclCommInitRank(&other, 2, zero, 2), ncclInvalidArgument);
  /* A send to self outside a group has no receive to match: an error here
     (NCCL would wait for ever). */
  EXPECT_RESULT(ncclSend(buf, 4, ncclInt32, me, comm, NULL), ncclInvalidUsage);

  /* A failed call inside a group fails the group, which is dropped whole. */
  NCCL_TEST_CHECK(ncclGroupStart());
  NCCL_TEST_CHECK(ncclSend(buf, 4, ncclInt32, me, comm, NULL));
  EXPECT_RESULT(ncclRecv(buf, 4, ncclInt32, -3, comm, NULL), ncclInvalidArgument);
  EXPECT_RESULT(ncclGroupEnd(), ncclInvalidArgument);
  /* A simulated group performs nothing (an unmatched send to self would
     fail) and estimates no time. */
  NCCL_TEST_CHECK(ncclGroupStart());
  NCCL_TEST_CHECK(ncclSend(buf, 4, ncclInt32, me, comm, NULL));
  NCCL_TEST_CHECK(ncclGroupSimulateEnd(&sim));
  NCCL_TEST_REQUIRE(sim.estimatedTime == 0.0f, "ncclGroupSimulateEnd estimated %g",
                    (double)sim.estimatedTime);

  NCCL_TEST_CHECK(ncclGetVersion(&version));
  NCCL_TEST_REQUIRE(version == NCCL_VERSION_CODE, "ncclGetVersion: %d, the header says %d", version,
                    NCCL_VERSION_CODE);
  NCCL_TEST_CHECK(ncclCommCuDevice(comm, &device));
  NCCL_TEST_CHECK(ncclCommGetAsyncError(comm, &async));
  NCCL_TEST_REQUIRE(async == ncclSuccess, "the communicator reports %s", ncclGetErrorString(async));
  NCCL_TEST_CHECK(ncclCommFinalize(comm));
  NCCL_TEST_CHECK(ncclCommAbort(NULL));

  /* A clique of one device in this process. */
  NCCL_TEST_CHECK(ncclCommInitAll(&other, 1, NULL));
  NCCL_TEST_REQUIRE(size_of(other) == 1 && rank_of(other) == 0, "ncclCommInitAll: a wrong clique");
  {
    Expected one = {NULL, 0, 0};
    one.comm = other;
    test_self(&one);
    test_alltoall(&one, 9, 70);
  }
  NCCL_TEST_CHECK(ncclCommDestroy(other));
  /* The communicator is still in step with its peers after all of that. */
  test_alltoall(e, 11, 71);
}

/* A receive smaller than its message fails without writing past it; one
   larger fails too. Both ends stay in step. */
static void test_size_mismatch(Expected* e) {
  enum { kLong = 16, kShort = 8, kGuard = 0x5a5a5a5a };
  uint32_t buf[kLong];
  ncclResult_t async = ncclInternalError;
  size_t i;
  if (g_world < 2 || g_rank > 1) return;
  for (i = 0; i < kLong; ++i) buf[i] = kGuard;
  if (g_rank == 0) {
    for (i = 0; i < kLong; ++i) buf[i] = pattern(0, 1, i, 9);
    NCCL_TEST_CHECK(ncclSend(buf, kLong, ncclUint32, 1, e->comm, NULL));
    e->sent += sizeof(uint32_t) * kLong;
    for (i = 0; i < kLong; ++i) buf[i] = kGuard;
    EXPECT_RESULT(ncclRecv(buf, kLong, ncclUint32, 1, e->comm, NULL), ncclInvalidUsage);
  } else {
    EXPECT_RESULT(ncclRecv(buf, kShort, ncclUint32, 0, e->comm, NULL), ncclInvalidUsage);
    for (i = kShort; i < kLong; ++i) {
      NCCL_TEST_REQUIRE(buf[i] == kGuard, "size mismatch: element %zu past the buffer was written",
                        i);
    }
    NCCL_TEST_CHECK(ncclSend(buf, kShort, ncclUint32, 0, e->comm, NULL));
    e->sent += sizeof(uint32_t) * kShort;
  }
  NCCL_TEST_CHECK(ncclCommGetAsyncError(e->comm, &async));
  NCCL_TEST_REQUIRE(async == ncclSuccess, "a size mismatch broke the communicator: %s",
                    ncclGetErrorString(async));
  check_bytes(e, "mismatched sizes (only complete messages count)");
}

static int run_all(void) {
  Expected world = {NULL, 0, 0};
  world.comm = nccl_test_init(&g_rank, &g_world);
  g_have_bytes = nccl_test_comm_bytes(world.comm, NULL, NULL);
  NCCL_TEST_REQUIRE(size_of(world.comm) == g_world && rank_of(world.comm) == g_rank,
                    "the communicator has rank %d of %d", rank_of(world.comm), size_of(world.comm));
  test_grouped(&world, 1);
  test_alltoall(&world, 1000, 2);
  test_nested_groups(&world);
  test_blocking(&world);
  test_self(&world);
  test_split(&world);
  test_alltoall(&world, 100, 10); /* the parent, after its children are gone */
  test_invalid(&world);
  test_size_mismatch(&world);
  test_grouped(&world, 11);
  NCCL_TEST_CHECK(ncclCommFinalize(world.comm));
  NCCL_TEST_CHECK(ncclCommDestroy(world.comm));
  printf("rank %d of %d: every check passed (%llu bytes sent, %llu received%s)\n", g_rank, g_world,
         (unsigned long long)world.sent, (unsigned long long)world.received,
         g_have_bytes ? ", as counted by the stand-in" : "");
  return 0;
}

static int run_unanswered(int silent) {
  enum { kBytes = 1 << 20 };
  const char* limit = getenv("LSHMOE_TIMEOUT_MS");
  const double limit_ms = limit != NULL ? atof(limit) : 300000.0;
  ncclComm_t comm = nccl_test_init(&g_rank, &g_world);
  ncclResult_t r, async = ncclSuccess;
  uint8_t *out, *in;
  double start, elapsed;
  NCCL_TEST_REQUIRE(g_world == 2, "this mode runs on two ranks, not %d", g_world);
  if (g_rank == 1 && !silent) _exit(0); /* no goodbye: as a crash looks to the peer */
  if (g_rank == 1) {
    const double wake = nccl_test_now_ms() + limit_ms + 2000.0;
    const struct timespec pause = {0, 50 * 1000 * 1000};
    while (nccl_test_now_ms() < wake) nanosleep(&pause, NULL);
    NCCL_TEST_CHECK(ncclCommAbort(comm));
    return 0;
  }
  out = xmalloc(kBytes);
  in = xmalloc(kBytes);
  memset(out, 1, kBytes);
  start = nccl_test_now_ms();
  NCCL_TEST_CHECK(ncclGroupStart());
  NCCL_TEST_CHECK(ncclSend(out, kBytes, ncclUint8, 1, comm, NULL));
  NCCL_TEST_CHECK(ncclRecv(in, kBytes, ncclUint8, 1, comm, NULL));
  r = ncclGroupEnd();
  elapsed = nccl_test_now_ms() - start;
  NCCL_TEST_REQUIRE(r != ncclSuccess, "a send and receive to a %s rank succeeded",
                    silent ? "silent" : "dead");
  printf("rank 0: the %s peer gave %s after %.0f ms: %s\n", silent ? "silent" : "dead",
         ncclGetErrorString(r), elapsed, ncclGetLastError(NULL));
  /* The timeout, and the bounded cancel that follows it. */
  NCCL_TEST_REQUIRE(elapsed < limit_ms + 3000.0, "the failure took %.0f ms (LSHMOE_TIMEOUT_MS=%s)",
                    elapsed, limit != NULL ? limit : "unset");
  NCCL_TEST_CHECK(ncclCommGetAsyncError(comm, &async));
  NCCL_TEST_REQUIRE(async != ncclSuccess, "the broken communicator reports no error");
  start = nccl_test_now_ms();
  r = ncclSend(out, 16, ncclUint8, 1, comm, NULL);
  NCCL_TEST_REQUIRE(r != ncclSuccess && nccl_test_now_ms() - start < 1000.0,
                    "a later send on the broken communicator gave %s", ncclGetErrorString(r));
  NCCL_TEST_CHECK(ncclCommAbort(comm));
  free(out);
  free(in);
  printf("rank 0: the failure was reported and the communicator aborted\n");
  return 0;
}

int main(int argc, char** argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && strcmp(argv[1], "dying-peer") == 0) return run_unanswered(0);
  if (argc > 1 && strcmp(argv[1], "silent-peer") == 0) return run_unanswered(1);
  if (argc > 1) {
    fprintf(stderr, "usage: %s [dying-peer | silent-peer]\n", argv[0]);
    return 2;
  }
  return run_all();
}
