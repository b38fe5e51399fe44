// The shim's device back end, in a library of its own
// (liblshmoe_preload_cuda.so, beside liblshmoe_preload.so) that the shim
// loads at the first device buffer it would compress: the CUDA codec,
// cuBLAS and cudart stay out of the processes that never use them. A C
// table, one message per call, device memory and the caller's stream; no
// call synchronises but `copy` and `check`.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" {

struct LshmoeShimDeviceApi {
  uint32_t version;  // kShimDeviceApiVersion
  // A CUDA codec configured from the environment; NULL when none can be
  // made (no device, LSHMOE_VERIFY=1, ...): last_error() says why.
  void* (*codec_create)();
  void (*codec_destroy)(void* codec);
  // One end's context of one message (the CUDA codec's BatchContext).
  void* (*context_create)();
  void (*context_destroy)(void* context);
  // lshmoe_status_t of the CUDA codec's calls, on one message at offset 0.
  int (*dispatch_encode)(void* codec, const void* rows, size_t n_rows, size_t row_elems, int dtype,
                         uint64_t seq, void* wire, void* context, void* stream);
  int (*dispatch_decode)(void* codec, const void* wire, size_t n_rows, size_t row_elems, int dtype,
                         uint64_t seq, void* rows, void* context, void* stream);
  int (*combine_encode)(void* codec, const void* context, const void* rows, uint64_t seq,
                        void* wire, int regrouped, void* stream);
  int (*combine_decode)(void* codec, const void* context, const void* wire, uint64_t seq,
                        void* rows, int regrouped, void* stream);
  // Device buffers kept per pool, grown in stream order (never during a
  // graph capture: run each shape once first).
  void* (*pool_create)();
  void (*pool_destroy)(void* pool);
  void* (*buffer)(void* pool, size_t index, size_t bytes, void* stream);
  // Copies and waits for the stream (records only: a first contact, or
  // LSHMOE_VERIFY=1); refused while the stream is being captured.
  int (*copy)(void* dst, const void* src, size_t bytes, void* stream);
  // 1 while `stream` is being captured into a CUDA graph, else 0.
  int (*capturing)(void* stream);
  // Waits for the stream; the first message a decoder rejected since the
  // last check or poll.
  int (*check)(void* codec, void* stream);
  // The same without waiting, of the work the device has finished (a mapped
  // host word: no copy, no synchronisation; the shim polls on every call).
  int (*poll)(void* codec);
  const char* (*last_error)();
};

// Exported by the back end library.
const LshmoeShimDeviceApi* lshmoe_shim_device_api(void);

}  // extern "C"

namespace lshmoe::interpose {

inline constexpr uint32_t kShimDeviceApiVersion = 2;

// The back end beside the shim, loaded once; NULL when it is absent (device
// buffers then pass through, said once at LSHMOE_DEBUG=INFO).
const LshmoeShimDeviceApi* device_api();

}  // namespace lshmoe::interpose
