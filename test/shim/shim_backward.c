/*
 * The shim's exact backward (LSHMOE_BACKWARD=exact) under an ordinary NCCL
 * program: two MoE layers forward on the main thread, their backward on
 * another thread (as PyTorch's autograd thread), the layers last first,
 * each all-to-all a group of ncclSend/ncclRecv with every peer.
 *
 * usage: shim_backward MODE
 *   api      the gradients (and the forward) equal, bit for bit, those of
 *            the explicit API (lshmoe_dispatch ... lshmoe_dispatch_backward)
 *            on the same rows: run with LSHMOE_COMBINE=slots, whose
 *            combine is the explicit API's
 *   adjoint  the regrouped combine (the default), identity expert: the
 *            forward is linear in x for its groupings, so per message
 *            <y, g> = <x, dx>; and the backward moves K rows, not n
 * SHIM_EQUAL_ROWS=1: every message of 64 rows, so that only the order of
 * the kept pairs tells the layers apart.
 * SHIM_RECOMPUTE=1: each layer's forward is run again on the backward
 * thread before its backward (activation recomputation); the replay must
 * give the forward's rows back exactly, and the gradients stay the same.
 */
#include "nccl_test_util.h"
#include "test_rows.h"

#include <lshmoe/lshmoe.h>
#include <math.h>
#include <pthread.h>

enum { kHidden = 256, kLayers = 2, kMaxWorld = 8 };

static int g_rank, g_world, g_recompute, g_equal_rows, g_identity;
static ncclComm_t g_comm;

static size_t rows_of(int from, int to, int layer) {
  if (g_equal_rows) return 64;
  return 40 + 8 * (size_t)((from * 3 + to * 5 + layer) % 7);
}

static float value(int kind, int from, int to, int layer, size_t i, int h) {
  const int cluster = (int)(i % 5);
  return sinf(0.37f * (float)h + 1.3f * (float)cluster + (float)layer + 0.7f * (float)kind) +
         0.05f * noise((uint32_t)(from * 131 + to + 977 * kind), (uint32_t)(i * 7 + (size_t)layer),
                       (uint32_t)h);
}

static float expert(float v) {
  return g_identity ? v : v + 0.5f * tanhf(v);
}
static float expert_slope(float v) {
  const float t = tanhf(v);
  return g_identity ? 1.0f : 1.0f + 0.5f * (1.0f - t * t);
}

/* One layer's rows on this rank, per peer: what it sends (x, g) and gets. */
struct Layer {
  float* x[kMaxWorld];  /* tokens to peer p */
  float* xe[kMaxWorld]; /* tokens from peer p, at this rank's expert */
  float* ye[kMaxWorld];
  float* y[kMaxWorld];  /* combined outputs of x[p] */
  float* g[kMaxWorld];  /* gradient of y[p] */
  float* ge[kMaxWorld]; /* gradient of ye[p] */
  float* gxe[kMaxWorld];
  float* dx[kMaxWorld]; /* gradient of x[p] */
};
static struct Layer g_layers[kLayers];

static float* rows(size_t n) {
  float* p = calloc(n * kHidden + 1, sizeof(float));
  NCCL_TEST_REQUIRE(p != NULL, "out of memory");
  return p;
}

/* One all-to-all: out[p] (rows_out(p)) to each peer, in[p] from it. */
static ncclResult_t exchange(float* const* out, float* const* in, int layer, int forward_dir) {
  ncclResult_t r = ncclGroupStart();
  for (int p = 0; p < g_world && r == ncclSuccess; ++p) {
    const size_t n_out = forward_dir ? rows_of(g_rank, p, layer) : rows_of(p, g_rank, layer);
    const size_t n_in = forward_dir ? rows_of(p, g_rank, layer) : rows_of(g_rank, p, layer);
    r = ncclSend(out[p], n_out * kHidden, ncclFloat32, p, g_comm, NULL);
    if (r == ncclSuccess) r = ncclRecv(in[p], n_in * kHidden, ncclFloat32, p, g_comm, NULL);
  }
  const ncclResult_t end = ncclGroupEnd();
  return r != ncclSuccess ? r : end;
}

static void apply(float* const* in, float* const* out, int layer, const float* const* slope_of) {
  for (int p = 0; p < g_world; ++p) {
    const size_t n = rows_of(p, g_rank, layer) * kHidden;
    for (size_t k = 0; k < n; ++k) {
      out[p][k] = slope_of ? in[p][k] * expert_slope(slope_of[p][k]) : expert(in[p][k]);
    }
  }
}

static void forward(int layer, float* const* xe, float* const* ye, float* const* y) {
  struct Layer* L = &g_layers[layer];
  CHECK(exchange(L->x, xe, layer, 1));
  apply(xe, ye, layer, NULL);
  CHECK(exchange(ye, y, layer, 0));
}

static int same(const float* a, const float* b, size_t n) {
  return memcmp(a, b, n * sizeof(float)) == 0;
}

/* The backward thread's work; its result: 0, or the failed call's code. */
static ncclResult_t g_backward_result;

static void* backward(void* unused) {
  (void)unused;
  for (int i = 0; i < kLayers; ++i) {
    const int layer = kLayers - 1 - i; /* last first */
    struct Layer* L = &g_layers[layer];
    if (g_recompute) {
      float *xe[kMaxWorld], *ye[kMaxWorld], *y[kMaxWorld];
      for (int p = 0; p < g_world; ++p) {
        xe[p] = rows(rows_of(p, g_rank, layer));
        ye[p] = rows(rows_of(p, g_rank, layer));
        y[p] = rows(rows_of(g_rank, p, layer));
      }
      forward(layer, xe, ye, y);
      for (int p = 0; p < g_world; ++p) {
        NCCL_TEST_REQUIRE(same(xe[p], L->xe[p], rows_of(p, g_rank, layer) * kHidden),
                          "layer %d: the replayed dispatch from rank %d differs from the forward's",
                          layer, p);
        NCCL_TEST_REQUIRE(same(y[p], L->y[p], rows_of(g_rank, p, layer) * kHidden),
                          "layer %d: the replayed combine from rank %d differs from the forward's",
                          layer, p);
        free(xe[p]);
        free(ye[p]);
        free(y[p]);
      }
    }
    ncclResult_t r = exchange(L->g, L->ge, layer, 1);
    if (r == ncclSuccess) {
      apply(L->ge, L->gxe, layer, (const float* const*)L->xe);
      r = exchange(L->gxe, L->dx, layer, 0);
    }
    if (r != ncclSuccess) {
      g_backward_result = r;
      return NULL;
    }
  }
  return NULL;
}

static void setup(void) {
  for (int l = 0; l < kLayers; ++l) {
    struct Layer* L = &g_layers[l];
    for (int p = 0; p < g_world; ++p) {
      const size_t out = rows_of(g_rank, p, l), in = rows_of(p, g_rank, l);
      L->x[p] = rows(out);
      L->g[p] = rows(out);
      L->y[p] = rows(out);
      L->dx[p] = rows(out);
      L->xe[p] = rows(in);
      L->ye[p] = rows(in);
      L->ge[p] = rows(in);
      L->gxe[p] = rows(in);
      for (size_t i = 0; i < out; ++i) {
        for (int h = 0; h < kHidden; ++h) {
          L->x[p][i * kHidden + h] = value(0, g_rank, p, l, i, h);
          L->g[p][i * kHidden + h] = 0.1f * value(1, g_rank, p, l, i, h);
        }
      }
    }
  }
}

static uint64_t bytes_sent(void) {
  uint64_t sent = 0, received = 0;
  NCCL_TEST_REQUIRE(nccl_test_comm_bytes(g_comm, &sent, &received) == 1, "no byte counters");
  return sent;
}

static uint64_t g_backward_bytes;

static void run_step(void) {
  for (int l = 0; l < kLayers; ++l) {
    forward(l, g_layers[l].xe, g_layers[l].ye, g_layers[l].y);
  }
  const uint64_t before = bytes_sent();
  pthread_t thread;
  NCCL_TEST_REQUIRE(pthread_create(&thread, NULL, backward, NULL) == 0, "pthread_create");
  pthread_join(thread, NULL);
  g_backward_bytes = bytes_sent() - before;
}

/* The explicit API on the same rows: forward both layers, backward last first. */
static void check_against_api(void) {
  lshmoe_comm_t* comm = NULL;
  NCCL_TEST_REQUIRE(lshmoe_comm_create(NULL, &comm) == LSHMOE_SUCCESS, "lshmoe_comm_create: %s",
                    lshmoe_last_error());
  lshmoe_handle_t* handles[kLayers];
  float *send[kLayers], *recv[kLayers], *ye[kLayers], *out[kLayers];
  size_t send_rows[kLayers][kMaxWorld], recv_rows[kLayers][kMaxWorld], n_send[kLayers],
      n_recv[kLayers];
  for (int l = 0; l < kLayers; ++l) {
    n_send[l] = n_recv[l] = 0;
    for (int p = 0; p < g_world; ++p) {
      send_rows[l][p] = rows_of(g_rank, p, l);
      recv_rows[l][p] = rows_of(p, g_rank, l);
      n_send[l] += send_rows[l][p];
      n_recv[l] += recv_rows[l][p];
    }
    send[l] = rows(n_send[l]);
    out[l] = rows(n_send[l]);
    recv[l] = rows(n_recv[l]);
    ye[l] = rows(n_recv[l]);
    size_t at = 0;
    for (int p = 0; p < g_world; ++p) {
      memcpy(send[l] + at * kHidden, g_layers[l].x[p], send_rows[l][p] * kHidden * sizeof(float));
      at += send_rows[l][p];
    }
    NCCL_TEST_REQUIRE(
        lshmoe_dispatch(comm, send[l], send_rows[l], recv[l], recv_rows[l], kHidden, LSHMOE_FLOAT32,
                        LSHMOE_DISPATCH_ROWS, &handles[l]) == LSHMOE_SUCCESS,
        "lshmoe_dispatch: %s", lshmoe_last_error());
    for (size_t k = 0; k < n_recv[l] * kHidden; ++k) ye[l][k] = expert(recv[l][k]);
    NCCL_TEST_REQUIRE(lshmoe_combine(comm, handles[l], ye[l], out[l]) == LSHMOE_SUCCESS,
                      "lshmoe_combine: %s", lshmoe_last_error());
  }
  for (int l = kLayers - 1; l >= 0; --l) {
    float *g = rows(n_send[l]), *ge = rows(n_recv[l]), *dx = rows(n_send[l]);
    size_t at = 0;
    for (int p = 0; p < g_world; ++p) {
      memcpy(g + at * kHidden, g_layers[l].g[p], send_rows[l][p] * kHidden * sizeof(float));
      at += send_rows[l][p];
    }
    NCCL_TEST_REQUIRE(lshmoe_combine_backward(comm, handles[l], g, ge) == LSHMOE_SUCCESS,
                      "lshmoe_combine_backward: %s", lshmoe_last_error());
    for (size_t k = 0; k < n_recv[l] * kHidden; ++k) ge[k] *= expert_slope(recv[l][k]);
    NCCL_TEST_REQUIRE(lshmoe_dispatch_backward(comm, handles[l], ge, dx) == LSHMOE_SUCCESS,
                      "lshmoe_dispatch_backward: %s", lshmoe_last_error());
    at = 0;
    for (int p = 0; p < g_world; ++p) {
      const size_t n = send_rows[l][p] * kHidden;
      NCCL_TEST_REQUIRE(same(out[l] + at * kHidden, g_layers[l].y[p], n),
                        "layer %d: the combined rows of rank %d differ from the explicit API's", l,
                        p);
      NCCL_TEST_REQUIRE(same(dx + at * kHidden, g_layers[l].dx[p], n),
                        "layer %d: the gradient of the rows sent to rank %d differs from the "
                        "explicit API's",
                        l, p);
      at += send_rows[l][p];
    }
    free(g);
    free(ge);
    free(dx);
    lshmoe_handle_free(handles[l]);
  }
  lshmoe_comm_destroy(comm);
}

static void check_adjoint(void) {
  for (int l = 0; l < kLayers; ++l) {
    for (int p = 0; p < g_world; ++p) {
      double yg = 0.0, xdx = 0.0, scale = 0.0, moved = 0.0;
      const size_t n = rows_of(g_rank, p, l) * kHidden;
      for (size_t k = 0; k < n; ++k) {
        const struct Layer* L = &g_layers[l];
        yg += (double)L->y[p][k] * L->g[p][k];
        xdx += (double)L->x[p][k] * L->dx[p][k];
        scale += fabs((double)L->y[p][k] * L->g[p][k]);
        moved += fabs((double)L->dx[p][k] - L->g[p][k]);
      }
      NCCL_TEST_REQUIRE(fabs(yg - xdx) <= 1e-4 * scale,
                        "layer %d, rows to rank %d: <y, g> = %.6g but <x, dx> = %.6g", l, p, yg,
                        xdx);
      /* Uncompressed (the rank itself), an identity expert gives dx = g. */
      NCCL_TEST_REQUIRE((p == g_rank) == (moved == 0.0), "layer %d, rows to rank %d: dx %s g", l, p,
                        moved == 0.0 ? "equals" : "differs from");
    }
  }
}

/* The statistics line that ncclCommDestroy wrote (LSHMOE_STATS=1 into a
   file of this rank's): every pair with another rank was kept, then
   differentiated once, and replayed once with recomputation. */
static char g_stats_path[512];

static void use_stats_file(void) {
  const char* id = getenv("NCCL_TEST_ID_FILE");
  const char* rank = getenv("RANK");
  if (id == NULL || rank == NULL) return;
  snprintf(g_stats_path, sizeof(g_stats_path), "%s.stats.%s", id, rank);
  unlink(g_stats_path);
  setenv("LSHMOE_STATS", "1", 1);
  setenv("LSHMOE_STATS_FILE", g_stats_path, 1);
}

static void check_stats(void) {
  if (g_stats_path[0] == 0) return;
  FILE* f = fopen(g_stats_path, "r");
  NCCL_TEST_REQUIRE(f != NULL, "no statistics in %s", g_stats_path);
  char line[1024];
  int found = 0;
  while (fgets(line, sizeof(line), f) != NULL) {
    const char* at = strstr(line, "; backward pairs ");
    if (at == NULL) continue;
    unsigned long long kept, differentiated, replayed, dropped;
    NCCL_TEST_REQUIRE(sscanf(at,
                             "; backward pairs %llu kept, %llu differentiated, %llu replayed, "
                             "%llu dropped",
                             &kept, &differentiated, &replayed, &dropped) == 4,
                      "unreadable statistics: %s", line);
    const unsigned long long pairs = 2ull * kLayers * (unsigned long long)(g_world - 1);
    NCCL_TEST_REQUIRE(kept == pairs && differentiated == pairs && dropped == 0 &&
                          replayed == (g_recompute ? pairs : 0),
                      "statistics: %s (expected %llu kept and differentiated)", line, pairs);
    found = 1;
  }
  fclose(f);
  NCCL_TEST_REQUIRE(found, "no backward counters in %s", g_stats_path);
}

int main(int argc, char** argv) {
  NCCL_TEST_REQUIRE(argc == 2 && (strcmp(argv[1], "api") == 0 || strcmp(argv[1], "adjoint") == 0),
                    "usage: shim_backward api|adjoint");
  const char* mode = argv[1];
  g_recompute = getenv("SHIM_RECOMPUTE") != NULL && strcmp(getenv("SHIM_RECOMPUTE"), "1") == 0;
  g_equal_rows = getenv("SHIM_EQUAL_ROWS") != NULL;
  g_identity = strcmp(mode, "adjoint") == 0;
  use_stats_file();
  g_comm = nccl_test_init(&g_rank, &g_world);
  NCCL_TEST_REQUIRE(g_world <= kMaxWorld, "at most %d ranks", kMaxWorld);
  setup();
  /* The first call with each peer travels raw (the settings are compared
     then): one float each way first, which is no candidate. */
  {
    float out[kMaxWorld], in[kMaxWorld];
    CHECK(ncclGroupStart());
    for (int p = 0; p < g_world; ++p) {
      out[p] = (float)p;
      CHECK(ncclSend(&out[p], 1, ncclFloat32, p, g_comm, NULL));
      CHECK(ncclRecv(&in[p], 1, ncclFloat32, p, g_comm, NULL));
    }
    CHECK(ncclGroupEnd());
  }
  run_step();
  CHECK(g_backward_result);
  if (strcmp(mode, "api") == 0) check_against_api();
  if (strcmp(mode, "adjoint") == 0) check_adjoint();
  /* Raw, the backward sends each peer (itself included) 2 n rows a layer,
     4 n with recomputation; compressed, the other peers' are K rows. */
  uint64_t raw = 0, self = 0;
  for (int l = 0; l < kLayers; ++l) {
    for (int p = 0; p < g_world; ++p) {
      const uint64_t bytes = (g_recompute ? 4 : 2) * rows_of(g_rank, p, l) * kHidden * 4;
      raw += bytes;
      if (p == g_rank) self += bytes;
    }
  }
  /* The stand-in counts no message to the rank itself. */
  const double ratio = (double)g_backward_bytes / (double)(raw - self);
  NCCL_TEST_REQUIRE(ratio < 0.5, "the backward sent %llu bytes, %llu raw: not compressed",
                    (unsigned long long)g_backward_bytes, (unsigned long long)raw);
  printf("rank %d: %s%s: ok, the backward sent %.3f of the raw bytes to other ranks\n", g_rank,
         mode, g_recompute ? " with recomputation" : "", ratio);
  ncclCommDestroy(g_comm);
  check_stats();
  return 0;
}
