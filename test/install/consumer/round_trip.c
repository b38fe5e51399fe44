/*
 * A program of another project, built against an installed lshmoe (through
 * find_package or pkg-config): one message through dispatch, an identity
 * expert and combine. With compensation 1 the combine gives the rows back
 * within rounding, and the dispatch travels in about ratio of the bytes.
 */
#include <lshmoe/lshmoe.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

enum { kRows = 256, kElems = 64 };

static int check(lshmoe_status_t s, const char* what) {
  if (s == LSHMOE_SUCCESS) return 1;
  fprintf(stderr, "round_trip: %s: %s\n", what, lshmoe_last_error());
  return 0;
}

int main(void) {
  static float x[kRows * kElems], x_hat[kRows * kElems], y[kRows * kElems];
  for (int i = 0; i < kRows; ++i) {
    for (int j = 0; j < kElems; ++j)
      x[i * kElems + j] = sinf(0.3f * j + (float)(i % 7)) + 0.01f * (float)(i % 13);
  }
  lshmoe_codec_t* codec = NULL;
  lshmoe_origin_ctx_t* origin = NULL;
  lshmoe_expert_ctx_t* expert = NULL;
  lshmoe_plan_t plan;
  if (!check(lshmoe_codec_create(NULL, &codec), "codec_create") ||
      !check(lshmoe_origin_ctx_create(&origin), "origin_ctx_create") ||
      !check(lshmoe_expert_ctx_create(&expert), "expert_ctx_create") ||
      !check(lshmoe_codec_plan(codec, kRows, kElems, LSHMOE_FLOAT32, &plan), "codec_plan")) {
    return 1;
  }
  if (!plan.compressed) {
    fprintf(stderr, "round_trip: the message was planned raw\n");
    return 1;
  }
  unsigned char* dispatch = malloc(plan.dispatch_bytes);
  unsigned char* combine = malloc(plan.combine_bytes);
  if (dispatch == NULL || combine == NULL) return 1;
  if (!check(lshmoe_dispatch_encode(codec, x, kRows, kElems, LSHMOE_FLOAT32, 1, dispatch,
                                    plan.dispatch_bytes, origin),
             "dispatch_encode") ||
      !check(lshmoe_dispatch_decode(codec, dispatch, plan.dispatch_bytes, kRows, kElems,
                                    LSHMOE_FLOAT32, 1, x_hat, expert),
             "dispatch_decode") ||
      !check(lshmoe_combine_encode(codec, expert, x_hat, 2, combine, plan.combine_bytes),
             "combine_encode") ||
      !check(lshmoe_combine_decode(codec, origin, combine, plan.combine_bytes, 2, y),
             "combine_decode")) {
    return 1;
  }
  double err = 0.0, norm = 0.0;
  for (int k = 0; k < kRows * kElems; ++k) {
    err += (double)(y[k] - x[k]) * (y[k] - x[k]);
    norm += (double)x[k] * x[k];
  }
  const double ratio = (double)plan.dispatch_bytes / (double)plan.logical_bytes;
  printf("lshmoe %s: dispatch at %.3f of the bytes, combine error %.2g\n", lshmoe_version(), ratio,
         sqrt(err / norm));
  free(dispatch);
  free(combine);
  lshmoe_origin_ctx_destroy(origin);
  lshmoe_expert_ctx_destroy(expert);
  lshmoe_codec_destroy(codec);
  return ratio < 0.5 && sqrt(err / norm) < 1e-5 ? 0 : 1;
}
