// Memory hints of the row passes. Non-temporal copies for outputs that are
// not read back soon: such stores neither read the destination's lines
// first nor evict what the caller is still gathering from (glibc's memcpy
// switches to them past a fraction of the last-level cache, for the same
// reason). Prefetches for rows gathered out of order, which the hardware
// prefetcher does not follow.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace lshmoe::cpu {

// Outputs larger than this are written with non-temporal stores.
inline constexpr size_t kStreamBytes = size_t(4) << 20;

// dst = src with non-temporal stores where the processor has them; a
// thread's stores are fenced by stream_fence() before others may read them.
inline void stream_bytes(char* dst, const char* src, size_t bytes) {
#if defined(__SSE2__)
  size_t head = (16 - (reinterpret_cast<uintptr_t>(dst) & 15)) & 15;
  if (head > bytes) head = bytes;
  memcpy(dst, src, head);
  dst += head;
  src += head;
  bytes -= head;
  for (; bytes >= 64; bytes -= 64, dst += 64, src += 64) {
    const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
    const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 16));
    const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 32));
    const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 48));
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst), a);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 16), b);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 32), c);
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst + 48), d);
  }
  for (; bytes >= 16; bytes -= 16, dst += 16, src += 16)
    _mm_stream_si128(reinterpret_cast<__m128i*>(dst),
                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(src)));
#endif
  memcpy(dst, src, bytes);
}

// dst = src, streamed or not.
inline void copy_row(char* dst, const char* src, size_t bytes, bool stream) {
  if (stream) {
    stream_bytes(dst, src, bytes);
  } else {
    memcpy(dst, src, bytes);
  }
}

// Fetches [p, p + bytes) towards the cache, a line at a time.
inline void prefetch_bytes(const char* p, size_t bytes) {
  for (size_t off = 0; off < bytes; off += 64) __builtin_prefetch(p + off);
}

inline void stream_fence() {
#if defined(__SSE2__)
  _mm_sfence();
#endif
}

}  // namespace lshmoe::cpu
