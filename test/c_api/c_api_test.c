/*
 * The public header compiled as C11: a C program creates a configuration and
 * a codec, runs one dispatch/combine pair, and checks the result. Exit
 * status 0 on success.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lshmoe/lshmoe.h"

#define N_ROWS 256
#define ROW_ELEMS 32

static int failures = 0;

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      fprintf(stderr, "%s:%d: check failed: %s (%s)\n", __FILE__, __LINE__, #cond, \
              lshmoe_last_error());                                                \
      ++failures;                                                                  \
    }                                                                              \
  } while (0)

#define CHECK_OK(call) CHECK((call) == LSHMOE_SUCCESS)

int main(void) {
  static float rows[N_ROWS * ROW_ELEMS], expanded[N_ROWS * ROW_ELEMS], out[N_ROWS * ROW_ELEMS];
  lshmoe_config_t* config = NULL;
  lshmoe_codec_t* codec = NULL;
  lshmoe_origin_ctx_t* origin = NULL;
  lshmoe_expert_ctx_t* expert = NULL;
  lshmoe_plan_t plan;
  lshmoe_stats_t stats;
  unsigned char *wire = NULL, *wire2 = NULL;
  char value[32];
  double err = 0, norm = 0;
  size_t i;

  CHECK(LSHMOE_VERSION_CODE ==
        LSHMOE_VERSION_MAJOR * 10000 + LSHMOE_VERSION_MINOR * 100 + LSHMOE_VERSION_PATCH);
  CHECK(strlen(lshmoe_version()) > 0);
  CHECK(strcmp(lshmoe_strerror(LSHMOE_SUCCESS), "") != 0);
  CHECK(lshmoe_dtype_size(LSHMOE_BFLOAT16) == 2);
  /* C lets a caller pass any int where an enum is expected. */
  CHECK(lshmoe_dtype_size((lshmoe_dtype_t)7) == 0);
  CHECK(lshmoe_wire_bytes((lshmoe_kind_t)9, 10, 4, LSHMOE_FLOAT32, 2) == 0);

  /* Eight clusters, so that slots hold real groups. */
  for (i = 0; i < N_ROWS * ROW_ELEMS; ++i) {
    const size_t row = i / ROW_ELEMS, col = i % ROW_ELEMS;
    rows[i] = (float)sin((double)((row % 8) * 37 + col)) + 0.01f * (float)((row * 7 + col) % 5);
  }

  CHECK_OK(lshmoe_config_create(&config));
  CHECK_OK(lshmoe_config_set(config, "LSHMOE_RATIO", "0.25"));
  CHECK(lshmoe_config_set(config, "LSHMOE_RATIO", "2") == LSHMOE_ERR_INVALID_CONFIG);
  CHECK(strstr(lshmoe_last_error(), "LSHMOE_RATIO") != NULL);
  CHECK_OK(lshmoe_config_get(config, "LSHMOE_RATIO", value, sizeof(value)));
  CHECK(strcmp(value, "0.25") == 0);
  CHECK_OK(lshmoe_codec_create(config, &codec));
  if (codec == NULL) return 1;

  CHECK_OK(lshmoe_codec_plan(codec, N_ROWS, ROW_ELEMS, LSHMOE_FLOAT32, &plan));
  CHECK(plan.compressed == 1);
  CHECK(plan.slots == N_ROWS / 4);
  CHECK(plan.dispatch_bytes ==
        lshmoe_wire_bytes(LSHMOE_DISPATCH, N_ROWS, ROW_ELEMS, LSHMOE_FLOAT32, plan.slots));
  CHECK(plan.dispatch_bytes < plan.logical_bytes);
  CHECK(lshmoe_codec_plan(codec, N_ROWS, ROW_ELEMS, (lshmoe_dtype_t)7, &plan) ==
        LSHMOE_ERR_INVALID_ARGUMENT);

  CHECK_OK(lshmoe_origin_ctx_create(&origin));
  CHECK_OK(lshmoe_expert_ctx_create(&expert));
  wire = malloc(plan.dispatch_bytes);
  wire2 = malloc(plan.combine_bytes);
  if (wire == NULL || wire2 == NULL) return 1;

  CHECK_OK(lshmoe_dispatch_encode(codec, rows, N_ROWS, ROW_ELEMS, LSHMOE_FLOAT32, 3, wire,
                                  plan.dispatch_bytes, origin));
  CHECK_OK(lshmoe_dispatch_decode(codec, wire, plan.dispatch_bytes, N_ROWS, ROW_ELEMS,
                                  LSHMOE_FLOAT32, 3, expanded, expert));
  CHECK(lshmoe_dispatch_decode(codec, wire, plan.dispatch_bytes, N_ROWS, ROW_ELEMS, LSHMOE_FLOAT32,
                               4, expanded, expert) == LSHMOE_ERR_WIRE_BAD_SEQUENCE);
  /* Identity expert: the combine brings the rows back through compensation. */
  CHECK_OK(lshmoe_combine_encode(codec, expert, expanded, 3, wire2, plan.combine_bytes));
  CHECK_OK(lshmoe_combine_decode(codec, origin, wire2, plan.combine_bytes, LSHMOE_SEQ_ANY, out));
  for (i = 0; i < N_ROWS * ROW_ELEMS; ++i) {
    err += fabs((double)out[i] - rows[i]);
    norm += fabs((double)rows[i]);
  }
  CHECK(err <= 1e-5 * norm);

  CHECK_OK(lshmoe_codec_stats(codec, &stats));
  CHECK(stats.messages_compressed == 1);
  CHECK(stats.residual_energy > 0 && stats.residual_energy < stats.input_energy);
  lshmoe_codec_reset_stats(codec);
  CHECK_OK(lshmoe_codec_stats(codec, &stats));
  CHECK(stats.messages_compressed == 0);

  /* The CUDA codec: a device, or a clear "unsupported" and no object. */
  {
    lshmoe_cuda_codec_t* cuda = NULL;
    lshmoe_status_t st = lshmoe_cuda_codec_create(config, &cuda);
    if (st == LSHMOE_SUCCESS) {
      CHECK(cuda != NULL);
      lshmoe_cuda_codec_destroy(cuda);
    } else {
      CHECK(st == LSHMOE_ERR_UNSUPPORTED && cuda == NULL);
      CHECK(strlen(lshmoe_last_error()) > 0);
    }
  }

  /* Communicator calls without a communicator: an error that says so. */
  {
    size_t counts[2] = {0, 0};
    lshmoe_handle_t* handle = NULL;
    CHECK(lshmoe_dispatch_experts(NULL, NULL, counts, NULL, counts, 2, 64, LSHMOE_BFLOAT16,
                                  LSHMOE_DISPATCH_ROWS, &handle) == LSHMOE_ERR_INVALID_ARGUMENT);
    CHECK(strstr(lshmoe_last_error(), "NULL") != NULL);
    CHECK(lshmoe_comm_expert_rows_experts(NULL, counts, 2, 64, LSHMOE_BFLOAT16,
                                          LSHMOE_DISPATCH_ROWS,
                                          counts) == LSHMOE_ERR_INVALID_ARGUMENT);
  }

  free(wire);
  free(wire2);
  lshmoe_origin_ctx_destroy(origin);
  lshmoe_expert_ctx_destroy(expert);
  lshmoe_codec_destroy(codec);
  lshmoe_config_destroy(config);
  if (failures == 0) printf("c_api_test: ok\n");
  return failures == 0 ? 0 : 1;
}
