// The on-disk format of the NVMe tier, version 2: segment files that hold a
// compact slot table followed by the slots' data areas.
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
//   offset 0                         segment header, 4096 bytes
//   offset 4096                      slot table: slots_per_segment entries
//                                    of 64 bytes, padded to a multiple of 4096
//   offset data_offset + i * block_size   slot i's data area (block_size bytes)
//
// with data_offset = 4096 + TableBytes(slots_per_segment), the same in every
// file of a store. block_size is a multiple of 4096, so every data area
// starts on a 4096-byte boundary (O_DIRECT). The last segment may hold fewer
// slots; its file size says how many: (size - data_offset) / block_size.
// Table entries at or past a file's slot count are ignored.
//
// All integers are little-endian at fixed offsets. Checksums are CRC32C
// (common/crc32c.h) with initial value 0.
//
// Segment header (offset 0 of each segment file):
//   off size field
//     0    4 magic               0x47534D54 (bytes "TMSG")
//     4    4 format_version      2 (version 1 had a 4096-byte header per slot)
//     8    4 header_length       4096
//    12    4 segment_index       NNNNNN of the file name
//    16    8 block_size          data area bytes per slot
//    24    4 slots_per_segment   slot stride between segments (same in all files)
//    28    4 table_entry_size    64
//    32    8 created_unix_ms     informational
//    40    8 data_offset         4096 + TableBytes(slots_per_segment)
//    48   12 reserved            zero
//    60    4 header_crc32c       CRC32C of bytes [0, 60)
//    64 4032 zero
//
// Slot table entry (64 bytes, entry i at offset 4096 + 64 * i):
//   off size field
//     0    4 flags               1 = live block, 2 = tombstone
//     4    4 data_length         bytes of data, <= block_size
//     8    8 key_hi              BlockKey::hi
//    16    8 key_lo              BlockKey::lo
//    24    8 generation          higher wins when one key is in several slots
//    32    8 stored_unix_ms      when the block was written
//    40    4 data_crc32c         CRC32C of the data_length data bytes
//    44    4 slot                the store-wide slot number the entry describes
//    48   12 reserved            zero
//    60    4 entry_crc32c        CRC32C of bytes [0, 60)
//
// An entry of 64 zero bytes was never written (a preallocated file reads as
// zeros) and its slot is free. Data bytes after data_length up to the next
// 4096 boundary are written as zero; the rest of the data area is undefined.
// The entry is the only record of what a data area holds: the data's CRC is
// checked against it on every read.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::nvme {

inline constexpr uint32_t kFormatVersion = 2;
inline constexpr uint32_t kSegmentHeaderSize = 4096;
inline constexpr uint32_t kTableEntrySize = 64;
inline constexpr uint32_t kTablePageSize = 4096;  // the unit the table is written in
inline constexpr uint32_t kEntriesPerTablePage = kTablePageSize / kTableEntrySize;
// Bytes at the start of the segment header that carry fields (the checksum
// is the last 4).
inline constexpr uint32_t kHeaderFieldBytes = 64;

inline constexpr uint32_t kSegmentMagic = 0x47534D54;  // "TMSG"

// Bytes of a slot table for `slots` entries: whole 4096-byte pages.
constexpr uint64_t TableBytes(uint64_t slots) {
  return (slots * kTableEntrySize + kTablePageSize - 1) / kTablePageSize * kTablePageSize;
}
// Where the first data area of every segment file starts.
constexpr uint64_t DataOffset(uint64_t slots_per_segment) {
  return kSegmentHeaderSize + TableBytes(slots_per_segment);
}

enum class SlotFlags : uint32_t {
  kLive = 1,
  kTombstone = 2,
};

struct SlotEntry {
  SlotFlags flags = SlotFlags::kLive;
  uint32_t slot = 0;
  BlockKey key;
  uint64_t generation = 0;
  uint64_t stored_unix_ms = 0;
  uint32_t data_length = 0;
  uint32_t data_crc32c = 0;

  friend bool operator==(const SlotEntry&, const SlotEntry&) = default;
};

struct SegmentHeader {
  uint32_t segment_index = 0;
  uint64_t block_size = 0;
  uint32_t slots_per_segment = 0;
  uint64_t created_unix_ms = 0;

  friend bool operator==(const SegmentHeader&, const SegmentHeader&) = default;
};

// Writes `entry` as kTableEntrySize bytes (fields, reserved zeros, checksum)
// into the start of `out`. kInvalidArgument when out is shorter than that.
Status EncodeSlotEntry(const SlotEntry& entry, std::span<std::byte> out);

// Parses the table entry in the first kTableEntrySize bytes of `in`.
// kCorruption on an entry checksum mismatch, unknown flags,
// data_length > max_data_length (the store's block_size) or a slot number
// other than `expected_slot` (an entry written to the wrong place);
// kInvalidArgument when `in` is too short. The data checksum is not
// verified here (the data is not part of the entry).
Result<SlotEntry> DecodeSlotEntry(std::span<const std::byte> in, uint64_t max_data_length,
                                  uint32_t expected_slot);

// True when the entry's bytes are all zero: a slot never written. Such a
// slot is free, not corrupt. False when `in` is too short.
bool IsBlankSlotEntry(std::span<const std::byte> in);

// The segment header at offset 0 of a file, as kSegmentHeaderSize bytes.
// DecodeSegmentHeader: kFailedPrecondition for a valid header of another
// format version (the message names both versions and what to do);
// kCorruption on a wrong magic, checksum or lengths, a zero block_size or
// slots_per_segment, a block_size that is not a multiple of 4096, or a
// data_offset that does not match slots_per_segment.
Status EncodeSegmentHeader(const SegmentHeader& header, std::span<std::byte> out);
Result<SegmentHeader> DecodeSegmentHeader(std::span<const std::byte> in);
// The format version of a segment header whose magic and checksum are
// sound (they sit where they did in every version); nullopt otherwise.
std::optional<uint32_t> SegmentFormatVersion(std::span<const std::byte> in);

}  // namespace tokenmem::nvme
