/*
 * lshmoe: compressed all-to-all for Mixture-of-Experts training (LSH-MoE).
 *
 * Public C API. Every function returns an lshmoe_status_t unless stated
 * otherwise; on failure, lshmoe_last_error() returns a message (per thread)
 * that names the problem, and no output buffer or object has been modified.
 *
 * A message is the n_rows x row_elems rows that one rank sends to one peer.
 * The dispatch half (tokens to the experts) is encoded by the origin and
 * decoded (expanded) by the expert side; the combine half (expert outputs
 * back) is encoded by the expert side and decoded by the origin. Each end
 * keeps a context between its two halves:
 *
 *   origin:  lshmoe_dispatch_encode(codec, x, ..., wire, origin_ctx)
 *   expert:  lshmoe_dispatch_decode(codec, wire, ..., x_hat, expert_ctx)
 *   expert:  y = E(x_hat);  lshmoe_combine_encode(codec, expert_ctx, y, wire2)
 *   origin:  lshmoe_combine_decode(codec, origin_ctx, wire2, ..., y_hat)
 *
 * Whether a message is compressed is a pure function of facts both ends know
 * (n_rows, row_elems, dtype, configuration): see lshmoe_codec_plan(). A
 * message that is not compressed travels as its raw bytes.
 *
 * Buffers (rows and wire messages) may lie at any alignment; rows are
 * row-major and contiguous. Input and output buffers must not overlap.
 * Messages of zero rows are valid (and travel as zero bytes).
 *
 * Threading: a codec, and a context, may be used by one thread at a time;
 * different codecs are independent. The codec parallelises large messages
 * over its own worker threads (LSHMOE_CPU_THREADS).
 */
#ifndef LSHMOE_LSHMOE_H_
#define LSHMOE_LSHMOE_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define LSHMOE_API __attribute__((visibility("default")))
#else
#define LSHMOE_API
#endif

#define LSHMOE_VERSION_MAJOR 0
#define LSHMOE_VERSION_MINOR 1
#define LSHMOE_VERSION_PATCH 0
#define LSHMOE_VERSION_CODE \
  (LSHMOE_VERSION_MAJOR * 10000 + LSHMOE_VERSION_MINOR * 100 + LSHMOE_VERSION_PATCH)

/** Status codes. Wire-format errors (LSHMOE_ERR_WIRE_*) each name one check. */
typedef enum lshmoe_status {
  LSHMOE_SUCCESS = 0,
  LSHMOE_ERR_INVALID_ARGUMENT = 1, /**< a NULL pointer, or sizes that cannot be addressed */
  LSHMOE_ERR_INVALID_CONFIG = 2,   /**< a configuration value out of its allowed range */
  LSHMOE_ERR_OUT_OF_MEMORY = 3,
  LSHMOE_ERR_UNSUPPORTED = 4,      /**< a dtype or option this build cannot handle */
  LSHMOE_ERR_BUFFER_TOO_SMALL = 5, /**< the output buffer is smaller than required */
  LSHMOE_ERR_CONTEXT_MISMATCH = 6, /**< a context used with the wrong message or half */
  LSHMOE_ERR_TIMEOUT = 7,          /**< a peer did not arrive or answer in time */
  LSHMOE_ERR_NETWORK = 8,          /**< a connection failed or a peer broke the protocol */
  LSHMOE_ERR_WIRE_TRUNCATED = 10,  /**< fewer bytes than the header or the sizes require */
  LSHMOE_ERR_WIRE_BAD_MAGIC = 11,
  LSHMOE_ERR_WIRE_BAD_VERSION = 12,
  LSHMOE_ERR_WIRE_BAD_KIND = 13,      /**< dispatch where combine was expected, or unknown */
  LSHMOE_ERR_WIRE_BAD_DTYPE = 14,     /**< unknown dtype, or not the expected one */
  LSHMOE_ERR_WIRE_SIZE_MISMATCH = 15, /**< n_rows, row_elems, slots or index width differ */
  LSHMOE_ERR_WIRE_BAD_SLOTS = 16,     /**< used_slots > slots, or zero for a non-empty message */
  LSHMOE_ERR_WIRE_INDEX_OUT_OF_RANGE = 17, /**< an assignment index >= used_slots */
  LSHMOE_ERR_WIRE_BAD_CHECKSUM = 18,       /**< header or payload checksum differs */
  LSHMOE_ERR_WIRE_BAD_SEQUENCE = 19,       /**< sequence number is not the expected one */
  LSHMOE_ERR_INTERNAL = 99,
  LSHMOE_STATUS_FORCE_INT = 0x7fffffff /**< not a status: keeps any int a valid value */
} lshmoe_status_t;

/** Row element types. */
typedef enum lshmoe_dtype {
  LSHMOE_FLOAT32 = 1,
  LSHMOE_FLOAT16 = 2,
  LSHMOE_BFLOAT16 = 3,
  LSHMOE_DTYPE_FORCE_INT = 0x7fffffff /**< not a dtype: keeps any int a valid value */
} lshmoe_dtype_t;

/** The two halves of a pair and their gradients; also the `kind` byte of
 * the wire header. A gradient message has a combine's layout (the slots). */
typedef enum lshmoe_kind {
  LSHMOE_DISPATCH = 1,
  LSHMOE_COMBINE = 2,
  /** Backward of the combine: the gradient of its output, origin -> expert. */
  LSHMOE_COMBINE_GRAD = 3,
  /** Backward of the dispatch: the gradient of its input, expert -> origin. */
  LSHMOE_DISPATCH_GRAD = 4,
  LSHMOE_KIND_FORCE_INT = 0x7fffffff /**< not a kind: keeps any int a valid value */
} lshmoe_kind_t;

/** Library version as "MAJOR.MINOR.PATCH". */
LSHMOE_API const char* lshmoe_version(void);

/** A fixed, static description of a status code. */
LSHMOE_API const char* lshmoe_strerror(lshmoe_status_t status);

/** The detailed message of the last failure on this thread ("" if none). */
LSHMOE_API const char* lshmoe_last_error(void);

/** Size in bytes of one element of `dtype`, or 0 for an unknown dtype. */
LSHMOE_API size_t lshmoe_dtype_size(lshmoe_dtype_t dtype);

/* ------------------------------------------------------------------------ */
/* Configuration                                                             */
/* ------------------------------------------------------------------------ */

/** Every LSHMOE_* setting; see README.md or `lshmoe_info` for the list. */
typedef struct lshmoe_config lshmoe_config_t;

/** A configuration holding every variable's default. */
LSHMOE_API lshmoe_status_t lshmoe_config_create(lshmoe_config_t** config);

/**
 * Defaults overridden by the process environment. An invalid value fails with
 * LSHMOE_ERR_INVALID_CONFIG and a message naming the variable and its range.
 */
LSHMOE_API lshmoe_status_t lshmoe_config_from_env(lshmoe_config_t** config);

/** Set one variable by name ("LSHMOE_RATIO", "0.25"), validated as from the environment. */
LSHMOE_API lshmoe_status_t lshmoe_config_set(lshmoe_config_t* config, const char* name,
                                             const char* value);

/**
 * Read one variable as text into `buf` (NUL-terminated). Fails with
 * LSHMOE_ERR_BUFFER_TOO_SMALL if `buf_size` cannot hold it.
 */
LSHMOE_API lshmoe_status_t lshmoe_config_get(const lshmoe_config_t* config, const char* name,
                                             char* buf, size_t buf_size);

LSHMOE_API void lshmoe_config_destroy(lshmoe_config_t* config);

/* ------------------------------------------------------------------------ */
/* Codec                                                                     */
/* ------------------------------------------------------------------------ */

typedef struct lshmoe_codec lshmoe_codec_t;

/** A codec with a copy of `config` (NULL: defaults). Projection matrices are built here. */
LSHMOE_API lshmoe_status_t lshmoe_codec_create(const lshmoe_config_t* config,
                                               lshmoe_codec_t** codec);
LSHMOE_API void lshmoe_codec_destroy(lshmoe_codec_t* codec);

/**
 * Bytes of a compressed message of `kind` with `n_rows` rows of `row_elems`
 * elements and `slots` slots, in wire format v1. Pure; 0 when no such
 * message exists (unknown kind or dtype, no rows, slots of 0 or more than
 * n_rows, n_rows or row_elems beyond 32 bits, or a size overflowing size_t).
 */
LSHMOE_API size_t lshmoe_wire_bytes(lshmoe_kind_t kind, size_t n_rows, size_t row_elems,
                                    lshmoe_dtype_t dtype, size_t slots);

/** How a message of the given shape travels under a codec's configuration. */
typedef struct lshmoe_plan {
  int compressed;        /**< 1: wire format v1; 0: the raw rows */
  size_t slots;          /**< K = ceil(ratio * n_rows) when compressed, else 0 */
  size_t dispatch_bytes; /**< bytes of the dispatch message */
  size_t combine_bytes;  /**< bytes of the combine message */
  size_t logical_bytes;  /**< n_rows * row_elems * dtype size */
} lshmoe_plan_t;

/**
 * The plan of a message: compressed iff LSHMOE_ENABLE, the dtype is listed in
 * LSHMOE_DTYPES, row_elems matches LSHMOE_HIDDEN (when set), n_rows >=
 * LSHMOE_MIN_ROWS, n_rows and row_elems fit the header's 32-bit fields, and
 * the wire is smaller than the raw rows. Both ends of a message compute the
 * same plan from the same facts (so they must share the configuration).
 * Fails with LSHMOE_ERR_INVALID_ARGUMENT when the message's byte size
 * overflows size_t.
 */
LSHMOE_API lshmoe_status_t lshmoe_codec_plan(const lshmoe_codec_t* codec, size_t n_rows,
                                             size_t row_elems, lshmoe_dtype_t dtype,
                                             lshmoe_plan_t* plan);

/* Contexts keep what a pair needs between its halves. They are reusable: a
 * context keeps its memory across messages, so a steady stream of messages
 * of similar size allocates nothing. A context is tied to its message's
 * shape and plan: the other half must use a codec of the same configuration
 * (otherwise LSHMOE_ERR_CONTEXT_MISMATCH). An encoder that fails leaves its
 * context empty (LSHMOE_ERR_CONTEXT_MISMATCH until the next success). */

/** Origin side: the assignment and the residuals x - c. */
typedef struct lshmoe_origin_ctx lshmoe_origin_ctx_t;
/** Expert side: the assignment of the received rows. */
typedef struct lshmoe_expert_ctx lshmoe_expert_ctx_t;

LSHMOE_API lshmoe_status_t lshmoe_origin_ctx_create(lshmoe_origin_ctx_t** ctx);
LSHMOE_API void lshmoe_origin_ctx_destroy(lshmoe_origin_ctx_t* ctx);
LSHMOE_API lshmoe_status_t lshmoe_expert_ctx_create(lshmoe_expert_ctx_t** ctx);
LSHMOE_API void lshmoe_expert_ctx_destroy(lshmoe_expert_ctx_t* ctx);

/**
 * Origin: encode `rows` ([n_rows, row_elems] of `dtype`, host memory) into
 * `wire` (at least plan.dispatch_bytes). Stores the pair's state in `ctx`.
 * `seq` is written into the header (decoders may check it).
 */
LSHMOE_API lshmoe_status_t lshmoe_dispatch_encode(lshmoe_codec_t* codec, const void* rows,
                                                  size_t n_rows, size_t row_elems,
                                                  lshmoe_dtype_t dtype, uint64_t seq, void* wire,
                                                  size_t wire_capacity, lshmoe_origin_ctx_t* ctx);

/**
 * Expert side: check `wire` (exactly plan.dispatch_bytes) against the expected
 * shape and write the expanded rows to `rows_out` ([n_rows, row_elems]).
 * Stores the assignment in `ctx` for the combine. `expected_seq` is checked
 * unless it is LSHMOE_SEQ_ANY. With LSHMOE_VERIFY=1 compressed messages must
 * carry a payload checksum (raw messages are the caller's bytes and carry
 * none). On error nothing is written.
 */
#define LSHMOE_SEQ_ANY UINT64_MAX
LSHMOE_API lshmoe_status_t lshmoe_dispatch_decode(lshmoe_codec_t* codec, const void* wire,
                                                  size_t wire_size, size_t n_rows, size_t row_elems,
                                                  lshmoe_dtype_t dtype, uint64_t expected_seq,
                                                  void* rows_out, lshmoe_expert_ctx_t* ctx);

/**
 * Expert side: encode the expert outputs `rows` ([n_rows, row_elems], same
 * shape and dtype as the dispatch) into `wire` (at least plan.combine_bytes):
 * one mean row per slot.
 */
LSHMOE_API lshmoe_status_t lshmoe_combine_encode(lshmoe_codec_t* codec,
                                                 const lshmoe_expert_ctx_t* ctx, const void* rows,
                                                 uint64_t seq, void* wire, size_t wire_capacity);

/**
 * Origin: check `wire` (exactly plan.combine_bytes) and rebuild every row as
 * slot[a(i)] + alpha * residual[i] (alpha = LSHMOE_COMPENSATE) into
 * `rows_out`. On error nothing is written.
 */
LSHMOE_API lshmoe_status_t lshmoe_combine_decode(lshmoe_codec_t* codec,
                                                 const lshmoe_origin_ctx_t* ctx, const void* wire,
                                                 size_t wire_size, uint64_t expected_seq,
                                                 void* rows_out);

/** Counters accumulated by a codec since creation or the last reset. */
typedef struct lshmoe_stats {
  uint64_t messages_compressed; /**< dispatch messages encoded in wire format */
  uint64_t messages_raw;        /**< dispatch messages sent as raw rows */
  uint64_t logical_bytes;       /**< bytes of the rows given to dispatch/combine encode */
  uint64_t wire_bytes;          /**< bytes those encodes produced */
  double input_energy;          /**< sum of ||x||^2 over finite compressed dispatch rows */
  double residual_energy;       /**< sum of ||x - c||^2 over the same rows (as sent: rounded) */
} lshmoe_stats_t;

/** Copy the codec's counters. residual_energy / input_energy is the squared dispatch error. */
LSHMOE_API lshmoe_status_t lshmoe_codec_stats(const lshmoe_codec_t* codec, lshmoe_stats_t* stats);
LSHMOE_API void lshmoe_codec_reset_stats(lshmoe_codec_t* codec);

/* ------------------------------------------------------------------------
 * The CUDA codec: the same messages, from and to device memory, enqueued on
 * the caller's stream (cudaStream_t passed as void*). A batch is the
 * messages of one all-to-all: message m is n_rows[m] rows, consecutive in
 * `rows`, its wire message at wire + wire_offsets[m] (multiples of 16;
 * plan.dispatch_bytes / plan.combine_bytes each; raw messages are copied).
 * At most 64 messages per call. Nothing synchronises the stream and nothing
 * is copied to the host, so a warmed-up codec (one batch of each shape run
 * before) can be captured in a CUDA graph. The decoders check every message
 * on the device first and leave the rows of a bad one untouched;
 * lshmoe_cuda_codec_check() synchronises the stream and returns the first
 * such error. Builds without CUDA, or machines without a device, get
 * LSHMOE_ERR_UNSUPPORTED from lshmoe_cuda_codec_create().
 * Destroying a codec or a context waits for the device, as cudaFree does
 * (queued work may still use its memory). A batch larger than any before,
 * during a graph capture, is refused (LSHMOE_ERR_INVALID_ARGUMENT): run it
 * once before capturing. Row buffers must be aligned to their dtype, wire
 * buffers to 16 bytes. Messages decode on either back end. The GPU's Lloyd
 * step searches every slot where the CPU's searches the likeliest
 * (LSHMOE_REFINE_PROBES), so a dispatch's assignment may differ; under the
 * same assignment the bytes match the CPU encoder's except in the payload
 * bits of NaNs, and decoded rows match the CPU's, except that a compensation
 * other than 0 or 1 is one fused multiply-add here and may differ in the
 * last bit where the CPU's scalar code computes it unfused.
 * ---------------------------------------------------------------------- */

typedef struct lshmoe_cuda_codec lshmoe_cuda_codec_t;
/** Device-side state of one end of a batch of pairs (dispatch to combine). */
typedef struct lshmoe_cuda_ctx lshmoe_cuda_ctx_t;

LSHMOE_API lshmoe_status_t lshmoe_cuda_codec_create(const lshmoe_config_t* config,
                                                    lshmoe_cuda_codec_t** codec);
LSHMOE_API void lshmoe_cuda_codec_destroy(lshmoe_cuda_codec_t* codec);
LSHMOE_API lshmoe_status_t lshmoe_cuda_ctx_create(lshmoe_cuda_ctx_t** ctx);
LSHMOE_API void lshmoe_cuda_ctx_destroy(lshmoe_cuda_ctx_t* ctx);

LSHMOE_API lshmoe_status_t lshmoe_dispatch_encode_async(
    lshmoe_cuda_codec_t* codec, const void* rows, const size_t* n_rows, size_t messages,
    size_t row_elems, lshmoe_dtype_t dtype, uint64_t seq, void* wire, const size_t* wire_offsets,
    lshmoe_cuda_ctx_t* origin_ctx, void* stream);
LSHMOE_API lshmoe_status_t lshmoe_dispatch_decode_async(
    lshmoe_cuda_codec_t* codec, const void* wire, const size_t* wire_offsets, const size_t* n_rows,
    size_t messages, size_t row_elems, lshmoe_dtype_t dtype, uint64_t expected_seq, void* rows_out,
    lshmoe_cuda_ctx_t* expert_ctx, void* stream);
LSHMOE_API lshmoe_status_t lshmoe_combine_encode_async(lshmoe_cuda_codec_t* codec,
                                                       const lshmoe_cuda_ctx_t* expert_ctx,
                                                       const void* rows, uint64_t seq, void* wire,
                                                       const size_t* wire_offsets, void* stream);
LSHMOE_API lshmoe_status_t lshmoe_combine_decode_async(lshmoe_cuda_codec_t* codec,
                                                       const lshmoe_cuda_ctx_t* origin_ctx,
                                                       const void* wire, const size_t* wire_offsets,
                                                       uint64_t expected_seq, void* rows_out,
                                                       void* stream);
/** Synchronises `stream`; the first decode error since the last check. */
LSHMOE_API lshmoe_status_t lshmoe_cuda_codec_check(lshmoe_cuda_codec_t* codec, void* stream);

/* ------------------------------------------------------------------------
 * Communicators: the compressed all-to-all between the ranks of a job.
 *
 *   lshmoe_comm_create(NULL, &comm);               every rank, collectively
 *   lshmoe_dispatch(comm, x, send_rows, x_e, recv_rows, H, dtype, mode, &h);
 *   y_e = E(x_e);                                  the expert, on its rows
 *   lshmoe_combine(comm, h, y_e, y);               y[i] ~ E(x[i])
 *   lshmoe_handle_free(h);
 *
 * Row counts are per peer: send_rows[p] rows go to rank p, recv_rows[p]
 * come from it (what p sends this rank; zeros allowed). Buffers hold the
 * per-peer blocks back to back in rank order, in host memory. dispatch and
 * combine are collective: every rank calls them in the same order, and a
 * rank's recv_rows[p] must equal rank p's send_rows[rank]. Each message is
 * compressed or raw by lshmoe_codec_plan(); messages to self are copied.
 *
 * A transport failure (a peer that died, LSHMOE_TIMEOUT_MS passed) returns
 * LSHMOE_ERR_NETWORK or LSHMOE_ERR_TIMEOUT naming the peer; the
 * communicator then fails every later call and should be destroyed. A
 * corrupt message fails the call (naming the peer) but leaves the
 * communicator usable.
 *
 * Threading: a communicator is used by one thread at a time.
 * ---------------------------------------------------------------------- */

typedef struct lshmoe_comm lshmoe_comm_t;
/** A dispatch awaiting its combine; owns the pair contexts of every peer. */
typedef struct lshmoe_handle lshmoe_handle_t;

typedef enum lshmoe_dispatch_mode {
  /** The expert gets every row, rebuilt from its centroid. */
  LSHMOE_DISPATCH_ROWS = 0,
  /** The paper's mode: from a compressed message the expert gets the slots
   * (centroids) only, so it computes on fewer rows; the combine then takes
   * one output per slot. See lshmoe_comm_expert_rows(). */
  LSHMOE_DISPATCH_CENTROIDS = 1,
  LSHMOE_DISPATCH_FORCE_INT = 0x7fffffff
} lshmoe_dispatch_mode_t;

/**
 * Collective: joins the job described by the environment (torchrun's
 * MASTER_ADDR, MASTER_PORT, RANK, WORLD_SIZE, or mpirun's
 * OMPI_COMM_WORLD_RANK/SIZE), exchanges UCX worker addresses and connects
 * every pair of ranks. `config` NULL: lshmoe_config_from_env(). Fails with
 * LSHMOE_ERR_TIMEOUT naming the ranks that never arrived.
 */
LSHMOE_API lshmoe_status_t lshmoe_comm_create(const lshmoe_config_t* config, lshmoe_comm_t** comm);
/** Frees the communicator and every handle it still owns. */
LSHMOE_API void lshmoe_comm_destroy(lshmoe_comm_t* comm);
LSHMOE_API lshmoe_status_t lshmoe_comm_rank(const lshmoe_comm_t* comm, int* rank);
LSHMOE_API lshmoe_status_t lshmoe_comm_size(const lshmoe_comm_t* comm, int* size);

/**
 * Rows per peer that a dispatch with these recv_rows writes to its recv
 * buffer: recv_rows[p] in LSHMOE_DISPATCH_ROWS mode; in
 * LSHMOE_DISPATCH_CENTROIDS mode, plan.slots for a compressed message.
 * `expert_rows` has one entry per rank. Pure: no communication.
 */
LSHMOE_API lshmoe_status_t lshmoe_comm_expert_rows(const lshmoe_comm_t* comm,
                                                   const size_t* recv_rows, size_t row_elems,
                                                   lshmoe_dtype_t dtype,
                                                   lshmoe_dispatch_mode_t mode,
                                                   size_t* expert_rows);

/**
 * Collective dispatch. `send`: sum(send_rows) rows of row_elems elements;
 * `recv`: sum(expert_rows) rows (see lshmoe_comm_expert_rows). On success
 * *handle holds the pair contexts for lshmoe_combine().
 */
LSHMOE_API lshmoe_status_t lshmoe_dispatch(lshmoe_comm_t* comm, const void* send,
                                           const size_t* send_rows, void* recv,
                                           const size_t* recv_rows, size_t row_elems,
                                           lshmoe_dtype_t dtype, lshmoe_dispatch_mode_t mode,
                                           lshmoe_handle_t** handle);

/**
 * Several experts per rank: the message to each peer is made of one part per
 * expert of that peer, and each part is compressed on its own, so that no
 * slot mixes rows of two experts (a token routed top-2 to two experts of one
 * rank is in two parts) and the combine's slot means stay exact for any
 * expert. `send_rows` and `recv_rows` hold world_size * experts_per_rank
 * counts, peer-major: send_rows[p * E + e] rows of `send` (back to back in
 * that order) go to expert e of rank p; recv_rows[p * E + e] come from rank
 * p for this rank's expert e, and `recv` gets them in the same order. With
 * experts_per_rank = 1 this is lshmoe_dispatch(). lshmoe_combine() and
 * lshmoe_handle_used_rows() (one entry per part) take the handle as for
 * lshmoe_dispatch(); lshmoe_dispatch_experts_async() is the same on a device
 * communicator (at most 64 parts, ranks x experts, for now).
 */
LSHMOE_API lshmoe_status_t lshmoe_dispatch_experts(lshmoe_comm_t* comm, const void* send,
                                                   const size_t* send_rows, void* recv,
                                                   const size_t* recv_rows, int experts_per_rank,
                                                   size_t row_elems, lshmoe_dtype_t dtype,
                                                   lshmoe_dispatch_mode_t mode,
                                                   lshmoe_handle_t** handle);
/** lshmoe_comm_expert_rows() for lshmoe_dispatch_experts(): one entry per part. */
LSHMOE_API lshmoe_status_t lshmoe_comm_expert_rows_experts(
    const lshmoe_comm_t* comm, const size_t* recv_rows, int experts_per_rank, size_t row_elems,
    lshmoe_dtype_t dtype, lshmoe_dispatch_mode_t mode, size_t* expert_rows);

/**
 * Per peer (per part, for lshmoe_dispatch_experts), how many of the rows the
 * dispatch wrote hold data: the used slots of a compressed message in
 * centroid mode (the rest are zero padding the expert may skip), all rows
 * otherwise.
 */
LSHMOE_API lshmoe_status_t lshmoe_handle_used_rows(const lshmoe_handle_t* handle,
                                                   size_t* used_rows);

/**
 * Collective combine: `expert_out` has the layout of the dispatch's recv
 * buffer (one output per row, or per slot in centroid mode); `out` gets
 * sum(send_rows) rows, y_i = E(c_a(i)) + alpha * (x_i - c_a(i)) for
 * compressed messages. A handle combines once.
 */
LSHMOE_API lshmoe_status_t lshmoe_combine(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                          const void* expert_out, void* out);

/**
 * The backward of a pair (training): the exact gradient of the compressed
 * forward, K rows each way and no hashing (docs/training.md). Collective,
 * on the pair's handle, after its combine and in this order, each once:
 *
 * lshmoe_combine_backward(): `grad_out` is the gradient of the combine's
 * `out` (sum(send_rows) rows); `grad_expert_out` gets the gradient of the
 * expert's output, laid out as the dispatch's recv: for a row of slot k,
 * M_k, the mean of grad_out over the rows of k (the combine's slot mean);
 * in centroid mode each slot gets the sum, |k| M_k (padding slots zero).
 *
 * lshmoe_dispatch_backward(): `grad_expert_in` is the gradient of the
 * expert's input (laid out as recv); `grad_in` gets the gradient of the
 * dispatch's `send`: dx_i = S_k + alpha * (g_i - M_k), S_k the mean of the
 * expert-input gradients of slot k's rows (in centroid mode, the slot's
 * gradient over |k|) and the last term the residual path.
 *
 * Messages sent raw get the plain all-to-all gradient (the rows move back
 * unchanged); with LSHMOE_ENABLE=0 both are exactly the transposed
 * all-to-all. Out of order or repeated: LSHMOE_ERR_CONTEXT_MISMATCH. The
 * handle keeps what the dispatch's gradient needs, so `grad_out` may be
 * freed after the first call. The _async forms are the same on a device
 * communicator, on its stream.
 */
LSHMOE_API lshmoe_status_t lshmoe_combine_backward(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                                   const void* grad_out, void* grad_expert_out);
LSHMOE_API lshmoe_status_t lshmoe_dispatch_backward(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                                    const void* grad_expert_in, void* grad_in);
LSHMOE_API lshmoe_status_t lshmoe_combine_backward_async(lshmoe_comm_t* comm,
                                                         lshmoe_handle_t* handle,
                                                         const void* grad_out,
                                                         void* grad_expert_out, void* stream);
LSHMOE_API lshmoe_status_t lshmoe_dispatch_backward_async(lshmoe_comm_t* comm,
                                                          lshmoe_handle_t* handle,
                                                          const void* grad_expert_in, void* grad_in,
                                                          void* stream);

/**
 * For the rows this rank sent to `part` (a peer, or peer * experts + expert
 * for lshmoe_dispatch_experts), the slot each travelled in: `slots` gets
 * send_rows[part] indices (row i of a raw message: i). Rows sharing a slot
 * reached the expert as one centroid. For analysis and for checking
 * gradients against a reference; host communicators only.
 */
LSHMOE_API lshmoe_status_t lshmoe_handle_assignment(const lshmoe_handle_t* handle, size_t part,
                                                    uint32_t* slots);

/** Releases a handle (combined or not). NULL is ignored. */
LSHMOE_API void lshmoe_handle_free(lshmoe_handle_t* handle);

/**
 * A device communicator over an existing NCCL communicator (`nccl_comm` is
 * an ncclComm_t; it stays the caller's and must outlive this one). Its
 * dispatch and combine take device buffers and a cudaStream_t and are
 * enqueued on that stream: the CUDA codec encodes every outgoing message,
 * a group of ncclSend/ncclRecv moves the wire bytes, the codec decodes; no
 * host synchronisation. Calls of one communicator must be ordered on one
 * stream. A freed handle's device memory serves later dispatches (ordered
 * after the handle's work on that stream), so steady training allocates
 * none; a handle used in a captured graph must live as long as
 * the graph. LSHMOE_ERR_UNSUPPORTED in builds without CUDA and NCCL, or
 * without a device; at most 64 ranks for now. lshmoe_comm_expert_rows()
 * works for these too; lshmoe_handle_used_rows() does not (the counts stay
 * on the device).
 */
LSHMOE_API lshmoe_status_t lshmoe_comm_create_from_nccl(void* nccl_comm,
                                                        const lshmoe_config_t* config,
                                                        lshmoe_comm_t** comm);
LSHMOE_API lshmoe_status_t lshmoe_dispatch_async(lshmoe_comm_t* comm, const void* send,
                                                 const size_t* send_rows, void* recv,
                                                 const size_t* recv_rows, size_t row_elems,
                                                 lshmoe_dtype_t dtype, lshmoe_dispatch_mode_t mode,
                                                 void* stream, lshmoe_handle_t** handle);
LSHMOE_API lshmoe_status_t lshmoe_combine_async(lshmoe_comm_t* comm, lshmoe_handle_t* handle,
                                                const void* expert_out, void* out, void* stream);
LSHMOE_API lshmoe_status_t lshmoe_dispatch_experts_async(
    lshmoe_comm_t* comm, const void* send, const size_t* send_rows, void* recv,
    const size_t* recv_rows, int experts_per_rank, size_t row_elems, lshmoe_dtype_t dtype,
    lshmoe_dispatch_mode_t mode, void* stream, lshmoe_handle_t** handle);
/** Synchronises `stream`; the first corrupt message a device communicator's
 * decoders found since the last check (the rows of such a message are left
 * as they were). On a host communicator (whose calls complete before they
 * return) it says whether a transport failure has broken it. */
LSHMOE_API lshmoe_status_t lshmoe_comm_check(lshmoe_comm_t* comm, void* stream);

/** Counters of the messages this rank sent to other ranks: dispatch messages
 * compressed/raw; logical vs wire bytes of dispatches and combines; energy of
 * the compressed dispatch rows. On a device communicator this waits for the
 * device (the energies are summed there): call it outside graph captures,
 * once the peers' work is posted. Its messages and bytes are counted when a
 * call is enqueued (once for a captured graph), its energies each time the
 * work runs. */
LSHMOE_API lshmoe_status_t lshmoe_comm_stats(const lshmoe_comm_t* comm, lshmoe_stats_t* stats);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* LSHMOE_LSHMOE_H_ */
