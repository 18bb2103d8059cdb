// The on-disk format of the NVMe tier: segment files made of fixed-size slots.
//
// This header is the format's specification; docs/nvme-format.md says the
// same in prose. Every value below is frozen: changing one makes existing
// directories unreadable, so a change needs a new format version.
//
// A pool's NVMe directory holds segment files named seg-NNNNNN.tmd (six
// decimal digits, from 000000). Slot s of the store lives in segment
// s / slots_per_segment, at slot index i = s % slots_per_segment, and a
// segment file is laid out as
//
//   offset 0                       segment header, 4096 bytes
//   offset 4096 + i * slot_size    slot i: slot header (4096 bytes), then the
//                                  data area (block_size bytes)
//
// with slot_size = 4096 + block_size and block_size a multiple of 4096, so
// every header and data area starts on a 4096-byte boundary (O_DIRECT).
// The last segment of a store may hold fewer than slots_per_segment slots;
// its file size says how many: (size - 4096) / slot_size.
//
// All integers are little-endian at fixed offsets. Checksums are CRC32C
// (common/crc32c.h) with initial value 0.
//
// Segment header (offset 0 of each segment file):
//   off size field
//     0    4 magic               0x47534D54 (bytes "TMSG")
//     4    4 format_version      1
//     8    4 header_length       4096
//    12    4 segment_index       NNNNNN of the file name
//    16    8 block_size          data area bytes per slot
//    24    4 slots_per_segment   slot stride between segments (same in all files)
//    28    4 slot_header_length  4096
//    32    8 created_unix_ms     informational
//    40   20 reserved            zero
//    60    4 header_crc32c       CRC32C of bytes [0, 60)
//    64 4032 zero
//
// Slot header (first 4096 bytes of each slot):
//   off size field
//     0    4 magic               0x4B424D54 (bytes "TMBK")
//     4    4 format_version      1
//     8    4 header_length       4096
//    12    4 flags               1 = live block, 2 = tombstone
//    16    8 key_hi              BlockKey::hi
//    24    8 key_lo              BlockKey::lo
//    32    8 generation          higher wins when one key is in several slots
//    40    8 stored_unix_ms      when the block was written
//    48    4 data_length         bytes of data, <= block_size
//    52    4 data_crc32c         CRC32C of the data_length data bytes
//    56    4 reserved            zero
//    60    4 header_crc32c       CRC32C of bytes [0, 60)
//    64 4032 zero (not covered by the checksum; readers ignore it)
//
// A slot whose first 64 header bytes are all zero was never written (a
// preallocated file reads as zeros) and is free. Data bytes after
// data_length up to the next 4096 boundary are written as zero; the rest of
// the data area is undefined.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::nvme {

inline constexpr uint32_t kFormatVersion = 1;
inline constexpr uint32_t kSlotHeaderSize = 4096;
inline constexpr uint32_t kSegmentHeaderSize = 4096;
// Bytes at the start of a header that carry fields (the checksum is the last 4).
inline constexpr uint32_t kHeaderFieldBytes = 64;

inline constexpr uint32_t kSlotMagic = 0x4B424D54;     // "TMBK"
inline constexpr uint32_t kSegmentMagic = 0x47534D54;  // "TMSG"

enum class SlotFlags : uint32_t {
  kLive = 1,
  kTombstone = 2,
};

struct SlotHeader {
  SlotFlags flags = SlotFlags::kLive;
  BlockKey key;
  uint64_t generation = 0;
  uint64_t stored_unix_ms = 0;
  uint32_t data_length = 0;
  uint32_t data_crc32c = 0;

  friend bool operator==(const SlotHeader&, const SlotHeader&) = default;
};

struct SegmentHeader {
  uint32_t segment_index = 0;
  uint64_t block_size = 0;
  uint32_t slots_per_segment = 0;
  uint64_t created_unix_ms = 0;

  friend bool operator==(const SegmentHeader&, const SegmentHeader&) = default;
};

// Writes `header` as kSlotHeaderSize bytes (fields, checksum, zeros) into
// the start of `out`. kInvalidArgument when out is shorter than that.
Status EncodeSlotHeader(const SlotHeader& header, std::span<std::byte> out);

// Parses a slot header from the first kSlotHeaderSize bytes of `in`.
// kCorruption on a wrong magic, a header checksum mismatch, an unknown
// version, header length or flags, or data_length > max_data_length (the
// store's block_size); kInvalidArgument when `in` is too short. The data
// checksum is not verified here (the data is not part of the header).
Result<SlotHeader> DecodeSlotHeader(std::span<const std::byte> in, uint64_t max_data_length);

// True when the header's field bytes are all zero: a slot never written.
// Such a slot is free, not corrupt. False when `in` is too short.
bool IsBlankSlotHeader(std::span<const std::byte> in);

// Same as the slot functions, for the segment header at offset 0 of a file.
// DecodeSegmentHeader: kCorruption on a wrong magic, checksum, version or
// lengths, or a zero block_size / slots_per_segment, or a block_size that
// is not a multiple of 4096.
Status EncodeSegmentHeader(const SegmentHeader& header, std::span<std::byte> out);
Result<SegmentHeader> DecodeSegmentHeader(std::span<const std::byte> in);

}  // namespace tokenmem::nvme
