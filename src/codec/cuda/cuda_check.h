// CUDA and cuBLAS results as lshmoe statuses with messages that name the call.
#pragma once

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "common/status.h"

#define LSHMOE_CUDA_RETURN(call)                                                                   \
  do {                                                                                             \
    const cudaError_t lshmoe_e_ = (call);                                                          \
    if (lshmoe_e_ != cudaSuccess) {                                                                \
      return ::lshmoe::fail(                                                                       \
          lshmoe_e_ == cudaErrorMemoryAllocation ? LSHMOE_ERR_OUT_OF_MEMORY : LSHMOE_ERR_INTERNAL, \
          "cuda: %s: %s", #call, cudaGetErrorString(lshmoe_e_));                                   \
    }                                                                                              \
  } while (0)

#define LSHMOE_CUBLAS_RETURN(call)                                                                \
  do {                                                                                            \
    const cublasStatus_t lshmoe_b_ = (call);                                                      \
    if (lshmoe_b_ != CUBLAS_STATUS_SUCCESS) {                                                     \
      return ::lshmoe::fail(LSHMOE_ERR_INTERNAL, "cublas: %s: status %d", #call, int(lshmoe_b_)); \
    }                                                                                             \
  } while (0)

// After a kernel launch: a bad configuration is reported at once.
#define LSHMOE_CUDA_LAUNCHED() LSHMOE_CUDA_RETURN(cudaGetLastError())
