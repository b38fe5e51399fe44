/*
 * Rows for the C test programs: bf16 conversions (round to nearest even, as
 * the codec rounds) and a deterministic noise in [-0.5, 0.5) from three
 * integers, so that every rank can rebuild any rank's rows.
 */
#ifndef TEST_ROWS_H_
#define TEST_ROWS_H_

#include <stdint.h>
#include <string.h>

static inline uint16_t to_bf16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

static inline float from_bf16(uint16_t b) {
  uint32_t u = (uint32_t)b << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static inline float noise(uint32_t a, uint32_t b, uint32_t c) {
  uint32_t h = a * 2654435761u ^ (b + 0x9e3779b9u) * 2246822519u ^ (c + 7u) * 3266489917u;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return (float)(h & 0xffffu) / 65536.0f - 0.5f;
}

#endif /* TEST_ROWS_H_ */
