#include "nvme/block_format.h"

#include <cstring>
#include <string>

#include "tokenmem/common/crc32c.h"

namespace tokenmem::nvme {
namespace {

constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 4;
constexpr size_t kOffHeaderLength = 8;
constexpr size_t kOffHeaderCrc = 60;

constexpr size_t kSegOffIndex = 12;
constexpr size_t kSegOffBlockSize = 16;
constexpr size_t kSegOffSlotsPerSegment = 24;
constexpr size_t kSegOffEntrySize = 28;
constexpr size_t kSegOffCreatedMs = 32;
constexpr size_t kSegOffDataOffset = 40;

constexpr size_t kEntOffFlags = 0;
constexpr size_t kEntOffDataLength = 4;
constexpr size_t kEntOffKeyHi = 8;
constexpr size_t kEntOffKeyLo = 16;
constexpr size_t kEntOffGeneration = 24;
constexpr size_t kEntOffStoredMs = 32;
constexpr size_t kEntOffDataCrc = 40;
constexpr size_t kEntOffSlot = 44;
constexpr size_t kEntOffCrc = 60;

static_assert(kOffHeaderCrc + 4 == kHeaderFieldBytes);
static_assert(kEntOffCrc + 4 == kTableEntrySize);

void Put32(std::byte* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
void Put64(std::byte* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<std::byte>(v >> (8 * i));
}
uint32_t Get32(const std::byte* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(p[i]) << (8 * i);
  return v;
}
uint64_t Get64(const std::byte* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(p[i]) << (8 * i);
  return v;
}

// Both the segment header and a table entry end their 64 field bytes with
// the CRC32C of the first 60.
uint32_t FieldsCrc(const std::byte* p) { return Crc32c({p, kOffHeaderCrc}); }

}  // namespace

Status EncodeSlotEntry(const SlotEntry& entry, std::span<std::byte> out) {
  if (out.size() < kTableEntrySize) {
    return InvalidArgument("slot table entry needs " + std::to_string(kTableEntrySize) +
                           " bytes, got " + std::to_string(out.size()));
  }
  std::byte* p = out.data();
  std::memset(p, 0, kTableEntrySize);
  Put32(p + kEntOffFlags, static_cast<uint32_t>(entry.flags));
  Put32(p + kEntOffDataLength, entry.data_length);
  Put64(p + kEntOffKeyHi, entry.key.hi);
  Put64(p + kEntOffKeyLo, entry.key.lo);
  Put64(p + kEntOffGeneration, entry.generation);
  Put64(p + kEntOffStoredMs, entry.stored_unix_ms);
  Put32(p + kEntOffDataCrc, entry.data_crc32c);
  Put32(p + kEntOffSlot, entry.slot);
  Put32(p + kEntOffCrc, FieldsCrc(p));
  return Status::Ok();
}

Result<SlotEntry> DecodeSlotEntry(std::span<const std::byte> in, uint64_t max_data_length,
                                  uint32_t expected_slot) {
  if (in.size() < kTableEntrySize) {
    return InvalidArgument("slot table entry needs " + std::to_string(kTableEntrySize) +
                           " bytes, got " + std::to_string(in.size()));
  }
  const std::byte* p = in.data();
  const uint32_t want_crc = Get32(p + kEntOffCrc);
  const uint32_t got_crc = FieldsCrc(p);
  if (want_crc != got_crc) {
    return Corruption("slot table entry " + std::to_string(expected_slot) +
                      ": checksum mismatch (stored " + std::to_string(want_crc) + ", computed " +
                      std::to_string(got_crc) + ")");
  }
  SlotEntry e;
  const uint32_t flags = Get32(p + kEntOffFlags);
  if (flags != static_cast<uint32_t>(SlotFlags::kLive) &&
      flags != static_cast<uint32_t>(SlotFlags::kTombstone)) {
    return Corruption("slot table entry " + std::to_string(expected_slot) + ": unknown flags " +
                      std::to_string(flags));
  }
  e.flags = static_cast<SlotFlags>(flags);
  e.data_length = Get32(p + kEntOffDataLength);
  e.key.hi = Get64(p + kEntOffKeyHi);
  e.key.lo = Get64(p + kEntOffKeyLo);
  e.generation = Get64(p + kEntOffGeneration);
  e.stored_unix_ms = Get64(p + kEntOffStoredMs);
  e.data_crc32c = Get32(p + kEntOffDataCrc);
  e.slot = Get32(p + kEntOffSlot);
  if (e.slot != expected_slot) {
    return Corruption("slot table entry " + std::to_string(expected_slot) + ": describes slot " +
                      std::to_string(e.slot));
  }
  if (e.data_length > max_data_length) {
    return Corruption("slot table entry " + std::to_string(expected_slot) + ": data length " +
                      std::to_string(e.data_length) + " exceeds the block size " +
                      std::to_string(max_data_length));
  }
  return e;
}

bool IsBlankSlotEntry(std::span<const std::byte> in) {
  if (in.size() < kTableEntrySize) return false;
  for (size_t i = 0; i < kTableEntrySize; ++i) {
    if (in[i] != std::byte{0}) return false;
  }
  return true;
}

Status EncodeSegmentHeader(const SegmentHeader& header, std::span<std::byte> out) {
  if (out.size() < kSegmentHeaderSize) {
    return InvalidArgument("segment header needs " + std::to_string(kSegmentHeaderSize) +
                           " bytes, got " + std::to_string(out.size()));
  }
  std::byte* p = out.data();
  std::memset(p, 0, kSegmentHeaderSize);
  Put32(p + kOffMagic, kSegmentMagic);
  Put32(p + kOffVersion, kFormatVersion);
  Put32(p + kOffHeaderLength, kSegmentHeaderSize);
  Put32(p + kSegOffIndex, header.segment_index);
  Put64(p + kSegOffBlockSize, header.block_size);
  Put32(p + kSegOffSlotsPerSegment, header.slots_per_segment);
  Put32(p + kSegOffEntrySize, kTableEntrySize);
  Put64(p + kSegOffCreatedMs, header.created_unix_ms);
  Put64(p + kSegOffDataOffset, DataOffset(header.slots_per_segment));
  Put32(p + kOffHeaderCrc, FieldsCrc(p));
  return Status::Ok();
}

std::optional<uint32_t> SegmentFormatVersion(std::span<const std::byte> in) {
  if (in.size() < kSegmentHeaderSize) return std::nullopt;
  const std::byte* p = in.data();
  if (Get32(p + kOffMagic) != kSegmentMagic) return std::nullopt;
  if (Get32(p + kOffHeaderCrc) != FieldsCrc(p)) return std::nullopt;
  return Get32(p + kOffVersion);
}

Result<SegmentHeader> DecodeSegmentHeader(std::span<const std::byte> in) {
  if (in.size() < kSegmentHeaderSize) {
    return InvalidArgument("segment header needs " + std::to_string(kSegmentHeaderSize) +
                           " bytes, got " + std::to_string(in.size()));
  }
  const std::byte* p = in.data();
  const uint32_t magic = Get32(p + kOffMagic);
  if (magic != kSegmentMagic) {
    return Corruption("segment header: bad magic " + std::to_string(magic));
  }
  const uint32_t want_crc = Get32(p + kOffHeaderCrc);
  const uint32_t got_crc = FieldsCrc(p);
  if (want_crc != got_crc) {
    return Corruption("segment header: checksum mismatch (stored " + std::to_string(want_crc) +
                      ", computed " + std::to_string(got_crc) + ")");
  }
  // The magic, version and checksum sit where they did in every version, so
  // a sound header of another version is told apart from a damaged one.
  const uint32_t version = Get32(p + kOffVersion);
  if (version != kFormatVersion) {
    return FailedPrecondition(
        "segment file has on-disk format version " + std::to_string(version) +
        " but this agent reads only version " + std::to_string(kFormatVersion) +
        (version < kFormatVersion
             ? " (version 1 kept a 4096-byte header per slot; version 2 keeps a compact slot "
               "table); there is no in-place migration: the NVMe tier is a cache, so remove the "
               "seg-*.tmd files to start afresh, or drain them with the agent that wrote them"
             : "; it was written by a newer agent"));
  }
  const uint32_t length = Get32(p + kOffHeaderLength);
  if (length != kSegmentHeaderSize) {
    return Corruption("segment header: unexpected header length " + std::to_string(length));
  }
  SegmentHeader h;
  h.segment_index = Get32(p + kSegOffIndex);
  h.block_size = Get64(p + kSegOffBlockSize);
  h.slots_per_segment = Get32(p + kSegOffSlotsPerSegment);
  h.created_unix_ms = Get64(p + kSegOffCreatedMs);
  const uint32_t entry_size = Get32(p + kSegOffEntrySize);
  if (entry_size != kTableEntrySize) {
    return Corruption("segment header: unexpected table entry size " + std::to_string(entry_size));
  }
  if (h.block_size == 0 || h.block_size % 4096 != 0) {
    return Corruption("segment header: impossible block size " + std::to_string(h.block_size));
  }
  if (h.slots_per_segment == 0) {
    return Corruption("segment header: zero slots per segment");
  }
  const uint64_t data_offset = Get64(p + kSegOffDataOffset);
  if (data_offset != DataOffset(h.slots_per_segment)) {
    return Corruption("segment header: data offset " + std::to_string(data_offset) +
                      " does not match " + std::to_string(h.slots_per_segment) +
                      " slots per segment");
  }
  return h;
}

}  // namespace tokenmem::nvme
