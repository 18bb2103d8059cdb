#include "nvme/block_format.h"

#include <cstring>
#include <string>

#include "tokenmem/common/crc32c.h"

namespace tokenmem::nvme {
namespace {

// Field offsets, shared by both header kinds where they agree.
constexpr size_t kOffMagic = 0;
constexpr size_t kOffVersion = 4;
constexpr size_t kOffHeaderLength = 8;
constexpr size_t kOffHeaderCrc = 60;

constexpr size_t kSlotOffFlags = 12;
constexpr size_t kSlotOffKeyHi = 16;
constexpr size_t kSlotOffKeyLo = 24;
constexpr size_t kSlotOffGeneration = 32;
constexpr size_t kSlotOffStoredMs = 40;
constexpr size_t kSlotOffDataLength = 48;
constexpr size_t kSlotOffDataCrc = 52;

constexpr size_t kSegOffIndex = 12;
constexpr size_t kSegOffBlockSize = 16;
constexpr size_t kSegOffSlotsPerSegment = 24;
constexpr size_t kSegOffSlotHeaderLength = 28;
constexpr size_t kSegOffCreatedMs = 32;

static_assert(kOffHeaderCrc + 4 == kHeaderFieldBytes);

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

uint32_t FieldsCrc(const std::byte* p) { return Crc32c({p, kOffHeaderCrc}); }

// Checks what both header kinds share: magic, checksum, version, length.
Status CheckCommon(const std::byte* p, uint32_t magic, uint32_t header_length, const char* what) {
  const uint32_t got_magic = Get32(p + kOffMagic);
  if (got_magic != magic) {
    return Corruption(std::string(what) + ": bad magic " + std::to_string(got_magic));
  }
  const uint32_t want_crc = Get32(p + kOffHeaderCrc);
  const uint32_t got_crc = FieldsCrc(p);
  if (want_crc != got_crc) {
    return Corruption(std::string(what) + ": header checksum mismatch (stored " +
                      std::to_string(want_crc) + ", computed " + std::to_string(got_crc) + ")");
  }
  const uint32_t version = Get32(p + kOffVersion);
  if (version != kFormatVersion) {
    return Corruption(std::string(what) + ": unknown format version " + std::to_string(version));
  }
  const uint32_t length = Get32(p + kOffHeaderLength);
  if (length != header_length) {
    return Corruption(std::string(what) + ": unexpected header length " + std::to_string(length));
  }
  return Status::Ok();
}

}  // namespace

Status EncodeSlotHeader(const SlotHeader& header, std::span<std::byte> out) {
  if (out.size() < kSlotHeaderSize) {
    return InvalidArgument("slot header needs " + std::to_string(kSlotHeaderSize) + " bytes, got " +
                           std::to_string(out.size()));
  }
  std::byte* p = out.data();
  std::memset(p, 0, kSlotHeaderSize);
  Put32(p + kOffMagic, kSlotMagic);
  Put32(p + kOffVersion, kFormatVersion);
  Put32(p + kOffHeaderLength, kSlotHeaderSize);
  Put32(p + kSlotOffFlags, static_cast<uint32_t>(header.flags));
  Put64(p + kSlotOffKeyHi, header.key.hi);
  Put64(p + kSlotOffKeyLo, header.key.lo);
  Put64(p + kSlotOffGeneration, header.generation);
  Put64(p + kSlotOffStoredMs, header.stored_unix_ms);
  Put32(p + kSlotOffDataLength, header.data_length);
  Put32(p + kSlotOffDataCrc, header.data_crc32c);
  Put32(p + kOffHeaderCrc, FieldsCrc(p));
  return Status::Ok();
}

Result<SlotHeader> DecodeSlotHeader(std::span<const std::byte> in, uint64_t max_data_length) {
  if (in.size() < kSlotHeaderSize) {
    return InvalidArgument("slot header needs " + std::to_string(kSlotHeaderSize) + " bytes, got " +
                           std::to_string(in.size()));
  }
  const std::byte* p = in.data();
  TM_RETURN_IF_ERROR(CheckCommon(p, kSlotMagic, kSlotHeaderSize, "slot header"));
  SlotHeader h;
  const uint32_t flags = Get32(p + kSlotOffFlags);
  if (flags != static_cast<uint32_t>(SlotFlags::kLive) &&
      flags != static_cast<uint32_t>(SlotFlags::kTombstone)) {
    return Corruption("slot header: unknown flags " + std::to_string(flags));
  }
  h.flags = static_cast<SlotFlags>(flags);
  h.key.hi = Get64(p + kSlotOffKeyHi);
  h.key.lo = Get64(p + kSlotOffKeyLo);
  h.generation = Get64(p + kSlotOffGeneration);
  h.stored_unix_ms = Get64(p + kSlotOffStoredMs);
  h.data_length = Get32(p + kSlotOffDataLength);
  h.data_crc32c = Get32(p + kSlotOffDataCrc);
  if (h.data_length > max_data_length) {
    return Corruption("slot header: data length " + std::to_string(h.data_length) +
                      " exceeds the block size " + std::to_string(max_data_length));
  }
  return h;
}

bool IsBlankSlotHeader(std::span<const std::byte> in) {
  if (in.size() < kHeaderFieldBytes) return false;
  for (size_t i = 0; i < kHeaderFieldBytes; ++i) {
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
  Put32(p + kSegOffSlotHeaderLength, kSlotHeaderSize);
  Put64(p + kSegOffCreatedMs, header.created_unix_ms);
  Put32(p + kOffHeaderCrc, FieldsCrc(p));
  return Status::Ok();
}

Result<SegmentHeader> DecodeSegmentHeader(std::span<const std::byte> in) {
  if (in.size() < kSegmentHeaderSize) {
    return InvalidArgument("segment header needs " + std::to_string(kSegmentHeaderSize) +
                           " bytes, got " + std::to_string(in.size()));
  }
  const std::byte* p = in.data();
  TM_RETURN_IF_ERROR(CheckCommon(p, kSegmentMagic, kSegmentHeaderSize, "segment header"));
  SegmentHeader h;
  h.segment_index = Get32(p + kSegOffIndex);
  h.block_size = Get64(p + kSegOffBlockSize);
  h.slots_per_segment = Get32(p + kSegOffSlotsPerSegment);
  h.created_unix_ms = Get64(p + kSegOffCreatedMs);
  const uint32_t slot_header_length = Get32(p + kSegOffSlotHeaderLength);
  if (slot_header_length != kSlotHeaderSize) {
    return Corruption("segment header: unexpected slot header length " +
                      std::to_string(slot_header_length));
  }
  if (h.block_size == 0 || h.block_size % 4096 != 0) {
    return Corruption("segment header: impossible block size " + std::to_string(h.block_size));
  }
  if (h.slots_per_segment == 0) {
    return Corruption("segment header: zero slots per segment");
  }
  return h;
}

}  // namespace tokenmem::nvme
