// Steps 1-3 of the codec on the GPU, for every compressed message of a batch
// at once: projection (cuBLAS), centring in projected space, cross-polytope
// keys, budgeted grouping (CUB segmented sort, first-differing-bit
// histogram), spare singletons, Lloyd refinement in projected space, empty
// slots dropped. No host synchronisation: counts stay on the device.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "codec/cuda/batch.h"
#include "codec/cuda/device_arena.h"
#include "codec/cuda/slot_index.h"
#include "codec/lsh_math.h"
#include "common/dtype.h"

namespace lshmoe::cuda {

struct AssignParams {
  int tables = 0;
  int dim = 0;
  int key_bits = 0;
  bool center = true;
  bool spare_slots = true;
  int refine = 1;
};

class SlotAssigner {
 public:
  SlotAssigner() = default;
  ~SlotAssigner();
  SlotAssigner(const SlotAssigner&) = delete;
  SlotAssigner& operator=(const SlotAssigner&) = delete;

  Status init(const AssignParams& params);

  // projection: [tables * dim][row_elems] of the message dtype (see
  // build_projection). Writes assignment[row] (the local slot of every row
  // of a compressed segment) and used[m] (slots used by segment m).
  Status run(const Segments& seg, const void* rows, const void* projection, uint32_t* assignment,
             uint32_t* used, cudaStream_t stream);
  // Step 1 alone: the bucket key of every row of a compressed segment
  // (keys_out: [rows] of device memory; non-finite rows get all ones).
  Status keys(const Segments& seg, const void* rows, const void* projection, uint64_t* keys_out,
              cudaStream_t stream);

 private:
  // Projection (cuBLAS), finiteness, centring, keys and row ids.
  Status hash_rows(const Segments& seg, const void* rows, const void* projection, float* y,
                   uint8_t* finite, double* col_mean, uint64_t* keys, uint32_t* row_ids,
                   cudaStream_t stream);
  Status compact(const Segments& seg, uint32_t* assignment, uint32_t* used, uint32_t* flags,
                 uint32_t* scan, void* temp, size_t temp_bytes, cudaStream_t stream);
  Status projected_means(const Segments& seg, const float* y, const uint32_t* assignment,
                         const uint32_t* used, float* means, uint32_t* counts, float* norms,
                         cudaStream_t stream);

  AssignParams p_;
  cublasHandle_t blas_ = nullptr;
  void* blas_workspace_ = nullptr;
  DeviceArena arena_;
  SlotIndexer indexer_;
};

// The projection matrix `spec` describes for tables x dim outputs, rounded to
// dtype as the CPU back end rounds it, dense: [tables * dim][spec.row_elems]
// (a sparse one's zeros included: cuBLAS multiplies it like any other).
Status build_projection(const ProjectionSpec& spec, int tables, int dim, DType dtype, void* out,
                        cudaStream_t stream);

}  // namespace lshmoe::cuda
