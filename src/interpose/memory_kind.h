// Whether a buffer lives on a GPU, asked of the CUDA driver the process
// already has (libcuda.so.1, one per process whatever cudart each library
// links): where no driver is loaded, no device buffer can exist.
#pragma once

namespace lshmoe::interpose {

bool is_device_memory(const void* p);

}  // namespace lshmoe::interpose
