// The channel by which device decoders report a rejected message to the
// host without a device-to-host copy: one 64-bit word in mapped, pinned host
// memory. A decoder writes the first rejection once (compare-and-swap from
// zero: status and message in one store, never torn); the host reads the
// word when it likes, without waiting for the device, and takes it (swap to
// zero). What the host reads is what finished work found, so a poll on the
// next call reports the rejections of the calls before it.
//
// Host-side atomics on the word are atomic for the host only (a device that
// lacks host-native atomics writes it over the bus): a second rejection that
// lands while the host takes the first may be lost; the first never is.
#pragma once

#include <cstdint>

#include "common/host_device.h"

namespace lshmoe::cuda {

struct DecodeError {
  int status = 0;   // an lshmoe_status_t; 0: none
  int message = 0;  // the message's index in its batch
};

LSHMOE_HD uint64_t pack_decode_error(int status, int message) {
  return (uint64_t(uint32_t(status)) << 32) | uint32_t(message);
}

LSHMOE_HD DecodeError unpack_decode_error(uint64_t word) {
  DecodeError e;
  e.status = int(int32_t(uint32_t(word >> 32)));
  e.message = int(int32_t(uint32_t(word)));
  return e;
}

#if defined(__CUDACC__)
// The first rejection since the host last took the word; later ones are dropped.
__device__ __forceinline__ void record_decode_error(uint64_t* word, int status, int message) {
  atomicCAS(reinterpret_cast<unsigned long long*>(word), 0ull,
            static_cast<unsigned long long>(pack_decode_error(status, message)));
  __threadfence_system();
}
#endif

// Host: the rejection the word holds (status 0 when none), and the word
// cleared for the next one. Never waits for the device.
inline DecodeError take_decode_error(uint64_t* word) {
  return unpack_decode_error(__atomic_exchange_n(word, uint64_t(0), __ATOMIC_ACQ_REL));
}

}  // namespace lshmoe::cuda
