// Wire format v1 (docs/design.md "Wire format"): a 64-byte header, then
// for a dispatch the assignment (n_rows indices of 2 or 4 bytes), then K
// slots of row_elems values; every part starts 16-byte aligned.
// Little-endian only.
#pragma once

#include <cstddef>
#include <cstdint>

#include "common/dtype.h"
#include "common/host_device.h"
#include "lshmoe/lshmoe.h"

namespace lshmoe::wire {

inline constexpr uint32_t kMagic = 0x314d534cu;  // "LSM1" as bytes in memory
inline constexpr uint16_t kVersion = 1;
inline constexpr size_t kHeaderBytes = 64;
inline constexpr size_t kAlign = 16;
inline constexpr uint8_t kFlagPayloadChecksum = 1u << 0;
// A dispatch-kind message without its assignment (the shim's replay of a
// kept pair's forward step: the slots of the grouping both ends kept), laid
// out as a combine: the header, then K slots.
inline constexpr uint8_t kFlagKeptGrouping = 1u << 1;
// Largest K whose slot indices fit 2 bytes.
inline constexpr uint64_t kMaxSlotsForShortIndex = 65536;

struct Header {
  uint32_t magic;
  uint16_t version;
  uint8_t kind;
  uint8_t dtype;
  uint8_t index_width;
  uint8_t flags;
  uint16_t reserved0;
  uint32_t n_rows;
  uint32_t row_elems;
  uint32_t slots;
  uint32_t used_slots;
  uint32_t reserved1;
  uint64_t seq;
  uint32_t payload_checksum;
  uint32_t reserved2[4];
  uint32_t header_checksum;  // CRC-32C of the 60 bytes before it
};
static_assert(sizeof(Header) == kHeaderBytes, "wire header must be 64 bytes");
static_assert(offsetof(Header, seq) == 32 && offsetof(Header, header_checksum) == 60,
              "wire header layout");
static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "wire format v1 is little-endian");

LSHMOE_HD size_t align_up(size_t x) {
  return (x + kAlign - 1) & ~(kAlign - 1);
}

LSHMOE_HD uint32_t index_width(uint64_t slots) {
  return slots <= kMaxSlotsForShortIndex ? 2u : 4u;
}

// Where the parts of a message lie.
struct Layout {
  size_t assignment_offset;
  size_t slots_offset;
  size_t total_bytes;
};

LSHMOE_HD Layout layout(lshmoe_kind_t kind, uint64_t n_rows, uint64_t row_elems, DType dtype,
                        uint64_t slots) {
  Layout l;
  l.assignment_offset = kHeaderBytes;
  const size_t assignment =
      kind == LSHMOE_DISPATCH ? align_up(size_t(n_rows) * index_width(slots)) : 0;
  l.slots_offset = kHeaderBytes + assignment;
  l.total_bytes = l.slots_offset + align_up(size_t(slots) * size_t(row_elems) * dtype_size(dtype));
  return l;
}

// a * b * c without overflow, or false.
inline bool checked_product(size_t a, size_t b, size_t c, size_t* out) {
  size_t ab;
  return !__builtin_mul_overflow(a, b, &ab) && !__builtin_mul_overflow(ab, c, out);
}

// Bytes of a message of wire format v1, or 0 when no such message can exist:
// sizes beyond the header's 32-bit fields, no rows, no slots, or more slots
// than rows.
inline size_t checked_wire_bytes(lshmoe_kind_t kind, uint64_t n_rows, uint64_t row_elems,
                                 DType dtype, uint64_t slots) {
  size_t slot_bytes;
  if (n_rows == 0 || row_elems == 0 || slots == 0 || slots > n_rows || n_rows > UINT32_MAX ||
      row_elems > UINT32_MAX ||
      !checked_product(slots, row_elems, dtype_size(dtype), &slot_bytes) ||
      slot_bytes > SIZE_MAX / 2) {
    return 0;
  }
  return layout(kind, n_rows, row_elems, dtype, slots).total_bytes;
}

// CRC-32C (Castagnoli), bitwise: small and identical on host and device;
// used for the header only. Payload checksums use crc32c() below.
LSHMOE_HD uint32_t crc32c_bitwise(uint32_t crc, const uint8_t* p, size_t n) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= p[i];
    for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
  }
  return ~crc;
}

LSHMOE_HD void seal_header(Header* h) {
  h->header_checksum =
      crc32c_bitwise(0, reinterpret_cast<const uint8_t*>(h), offsetof(Header, header_checksum));
}

// A header for a message; the caller seals it once the payload is written.
LSHMOE_HD Header make_header(lshmoe_kind_t kind, DType dtype, uint64_t n_rows, uint64_t row_elems,
                             uint64_t slots, uint32_t used_slots, uint64_t seq) {
  Header h{};
  h.magic = kMagic;
  h.version = kVersion;
  h.kind = uint8_t(kind);
  h.dtype = uint8_t(dtype);
  h.index_width = uint8_t(index_width(slots));
  h.n_rows = uint32_t(n_rows);
  h.row_elems = uint32_t(row_elems);
  h.slots = uint32_t(slots);
  h.used_slots = used_slots;
  h.seq = seq;
  return h;
}

// Zeroes the alignment padding after `slot_bytes` of slots, so that equal
// messages are equal bytes (and checksums reproducible).
inline void zero_tail(char* out, const Layout& layout, size_t slot_bytes) {
  memset(out + layout.slots_offset + slot_bytes, 0,
         layout.total_bytes - layout.slots_offset - slot_bytes);
}

// Writes the assignment (2- or 4-byte indices) and zeroes its padding.
inline void write_assignment(const uint32_t* assignment, size_t n_rows, uint64_t slots, char* out,
                             const Layout& layout) {
  const uint32_t width = index_width(slots);
  char* dst = out + layout.assignment_offset;
  for (size_t i = 0; i < n_rows; ++i) {
    if (width == 2) {
      const uint16_t v = uint16_t(assignment[i]);
      memcpy(dst + 2 * i, &v, 2);
    } else {
      memcpy(dst + 4 * i, &assignment[i], 4);
    }
  }
  memset(dst + width * n_rows, 0, layout.slots_offset - layout.assignment_offset - width * n_rows);
}

// What a decoder knows before it looks at the bytes.
struct Expected {
  lshmoe_kind_t kind;
  uint64_t n_rows;
  uint64_t row_elems;
  DType dtype;
  uint64_t slots;
  uint64_t seq;                // LSHMOE_SEQ_ANY: not checked
  bool kept_grouping = false;  // a dispatch-kind message flagged kFlagKeptGrouping
};

// The kind whose layout a message has.
LSHMOE_HD lshmoe_kind_t layout_kind(const Expected& want) {
  return want.kept_grouping ? LSHMOE_COMBINE : want.kind;
}

// Checks everything in the header against `want` and `size`; writes nothing.
// Assignment indices and the payload checksum are checked by the caller.
LSHMOE_HD lshmoe_status_t check_header(const void* data, size_t size, const Expected& want,
                                       Header* out) {
  if (size < kHeaderBytes) return LSHMOE_ERR_WIRE_TRUNCATED;
  Header h;
  memcpy(&h, data, sizeof(h));
  if (h.magic != kMagic) return LSHMOE_ERR_WIRE_BAD_MAGIC;
  if (h.version != kVersion) return LSHMOE_ERR_WIRE_BAD_VERSION;
  if (crc32c_bitwise(0, static_cast<const uint8_t*>(data), offsetof(Header, header_checksum)) !=
      h.header_checksum) {
    return LSHMOE_ERR_WIRE_BAD_CHECKSUM;
  }
  // Unknown flags or reserved fields would be a format this decoder does not know.
  if ((h.flags & ~(kFlagPayloadChecksum | kFlagKeptGrouping)) != 0 || h.reserved0 != 0 ||
      h.reserved1 != 0 ||
      (h.reserved2[0] | h.reserved2[1] | h.reserved2[2] | h.reserved2[3]) != 0) {
    return LSHMOE_ERR_WIRE_BAD_VERSION;
  }
  if (h.kind < LSHMOE_DISPATCH || h.kind > LSHMOE_DISPATCH_GRAD) return LSHMOE_ERR_WIRE_BAD_KIND;
  if (h.kind != uint8_t(want.kind)) return LSHMOE_ERR_WIRE_BAD_KIND;
  if (((h.flags & kFlagKeptGrouping) != 0) != want.kept_grouping ||
      (want.kept_grouping && want.kind != LSHMOE_DISPATCH)) {
    return LSHMOE_ERR_WIRE_BAD_KIND;
  }
  if (!dtype_valid(h.dtype) || h.dtype != uint8_t(want.dtype)) return LSHMOE_ERR_WIRE_BAD_DTYPE;
  if (h.n_rows != want.n_rows || h.row_elems != want.row_elems || h.slots != want.slots ||
      h.index_width != index_width(want.slots)) {
    return LSHMOE_ERR_WIRE_SIZE_MISMATCH;
  }
  if (h.used_slots > h.slots || (h.n_rows > 0 && h.used_slots == 0)) {
    return LSHMOE_ERR_WIRE_BAD_SLOTS;
  }
  const size_t expected_bytes =
      layout(layout_kind(want), want.n_rows, want.row_elems, want.dtype, want.slots).total_bytes;
  if (size < expected_bytes) return LSHMOE_ERR_WIRE_TRUNCATED;
  if (size != expected_bytes) return LSHMOE_ERR_WIRE_SIZE_MISMATCH;
  if (want.seq != LSHMOE_SEQ_ANY && h.seq != want.seq) return LSHMOE_ERR_WIRE_BAD_SEQUENCE;
  *out = h;
  return LSHMOE_SUCCESS;
}

// CRC-32C of a payload on the host (hardware instruction when available).
uint32_t crc32c(uint32_t crc, const void* data, size_t n);

}  // namespace lshmoe::wire
