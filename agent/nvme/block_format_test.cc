#include "nvme/block_format.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "tokenmem/common/crc32c.h"

namespace tokenmem::nvme {
namespace {

constexpr uint64_t kBlockSize = 65536;
constexpr uint32_t kSlot = 1234;

SlotEntry SampleEntry() {
  SlotEntry e;
  e.flags = SlotFlags::kLive;
  e.slot = kSlot;
  e.key = {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull};
  e.generation = 42;
  e.stored_unix_ms = 1764000000123ull;
  e.data_length = 12345;
  e.data_crc32c = 0xDEADBEEF;
  return e;
}

std::vector<std::byte> Encoded(const SlotEntry& e) {
  std::vector<std::byte> buf(kTableEntrySize, std::byte{0xAA});
  EXPECT_TRUE(EncodeSlotEntry(e, buf).ok());
  return buf;
}

uint32_t Le32(const std::vector<std::byte>& b, size_t off) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<uint32_t>(b[off + i]) << (8 * i);
  return v;
}
uint64_t Le64(const std::vector<std::byte>& b, size_t off) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<uint64_t>(b[off + i]) << (8 * i);
  return v;
}
void PutLe32(std::vector<std::byte>& b, size_t off, uint32_t v) {
  for (int i = 0; i < 4; ++i) b[off + i] = static_cast<std::byte>(v >> (8 * i));
}
void PutLe64(std::vector<std::byte>& b, size_t off, uint64_t v) {
  for (int i = 0; i < 8; ++i) b[off + i] = static_cast<std::byte>(v >> (8 * i));
}
// Re-seals the checksum of the 64 field bytes after a test edits a field.
void Reseal(std::vector<std::byte>& b) { PutLe32(b, 60, Crc32c({b.data(), 60})); }

TEST(BlockFormatTest, SlotEntryRoundTrip) {
  const SlotEntry e = SampleEntry();
  Result<SlotEntry> back = DecodeSlotEntry(Encoded(e), kBlockSize, kSlot);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, e);

  SlotEntry tomb;
  tomb.flags = SlotFlags::kTombstone;
  tomb.slot = 9;
  Result<SlotEntry> tomb_back = DecodeSlotEntry(Encoded(tomb), kBlockSize, 9);
  ASSERT_TRUE(tomb_back.ok());
  EXPECT_EQ(*tomb_back, tomb);
}

// A whole table page of entries, each decoded from its own offset.
TEST(BlockFormatTest, TablePageRoundTrip) {
  std::vector<std::byte> page(kTablePageSize);
  std::vector<SlotEntry> entries;
  for (uint32_t i = 0; i < kEntriesPerTablePage; ++i) {
    SlotEntry e = SampleEntry();
    e.slot = 640 + i;
    e.key = {i, ~uint64_t{i}};
    e.generation = 1000 + i;
    e.data_length = i * 1000;
    e.data_crc32c = i * 0x01010101u;
    entries.push_back(e);
    ASSERT_TRUE(EncodeSlotEntry(e, {page.data() + i * kTableEntrySize, kTableEntrySize}).ok());
  }
  for (uint32_t i = 0; i < kEntriesPerTablePage; ++i) {
    Result<SlotEntry> back =
        DecodeSlotEntry({page.data() + i * kTableEntrySize, kTableEntrySize}, kBlockSize, 640 + i);
    ASSERT_TRUE(back.ok()) << i << ": " << back.status().ToString();
    EXPECT_EQ(*back, entries[i]);
  }
}

// The byte layout is frozen: these offsets are the documented format.
TEST(BlockFormatTest, SlotEntryLayoutIsFrozen) {
  const SlotEntry e = SampleEntry();
  const auto b = Encoded(e);
  ASSERT_EQ(b.size(), 64u);
  EXPECT_EQ(Le32(b, 0), 1u);
  EXPECT_EQ(Le32(b, 4), e.data_length);
  EXPECT_EQ(Le64(b, 8), e.key.hi);
  EXPECT_EQ(Le64(b, 16), e.key.lo);
  EXPECT_EQ(Le64(b, 24), e.generation);
  EXPECT_EQ(Le64(b, 32), e.stored_unix_ms);
  EXPECT_EQ(Le32(b, 40), e.data_crc32c);
  EXPECT_EQ(Le32(b, 44), kSlot);
  for (size_t i = 48; i < 60; ++i) ASSERT_EQ(b[i], std::byte{0}) << i;
  EXPECT_EQ(Le32(b, 60), Crc32c({b.data(), 60}));
  EXPECT_EQ(TableBytes(1), 4096u);
  EXPECT_EQ(TableBytes(64), 4096u);
  EXPECT_EQ(TableBytes(65), 8192u);
  EXPECT_EQ(DataOffset(255), 4096u + 16384u);
}

TEST(BlockFormatTest, RejectsEntryChecksumMismatch) {
  for (size_t off : {0u, 4u, 12u, 20u, 33u, 41u, 45u, 50u, 59u, 61u}) {
    auto b = Encoded(SampleEntry());
    b[off] ^= std::byte{0x01};
    Result<SlotEntry> r = DecodeSlotEntry(b, kBlockSize, kSlot);
    ASSERT_FALSE(r.ok()) << "flipped byte " << off;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    EXPECT_NE(r.status().message().find("checksum"), std::string::npos) << r.status().ToString();
  }
}

// A page torn between an old and a new write: each entry is whole (old or
// new) or fails its checksum, never a mix that decodes.
TEST(BlockFormatTest, EntryTornBetweenTwoVersionsIsRejected) {
  SlotEntry older = SampleEntry();
  SlotEntry newer = SampleEntry();
  newer.key = {5, 6};
  newer.generation = 43;
  newer.data_length = 999;
  newer.data_crc32c = 0x12345678;
  const auto a = Encoded(older);
  const auto b = Encoded(newer);
  for (size_t cut = 1; cut < kTableEntrySize; ++cut) {
    std::vector<std::byte> torn(a.begin(), a.begin() + cut);
    torn.insert(torn.end(), b.begin() + cut, b.end());
    Result<SlotEntry> r = DecodeSlotEntry(torn, kBlockSize, kSlot);
    if (r.ok()) {
      EXPECT_TRUE(*r == older || *r == newer) << "cut " << cut;
    } else {
      EXPECT_EQ(r.status().code(), StatusCode::kCorruption) << "cut " << cut;
    }
  }
}

TEST(BlockFormatTest, RejectsImpossibleLength) {
  SlotEntry e = SampleEntry();
  e.data_length = kBlockSize + 1;
  Result<SlotEntry> r = DecodeSlotEntry(Encoded(e), kBlockSize, kSlot);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("length"), std::string::npos);
  e.data_length = kBlockSize;  // exactly full is fine
  EXPECT_TRUE(DecodeSlotEntry(Encoded(e), kBlockSize, kSlot).ok());
}

TEST(BlockFormatTest, RejectsUnknownFlagsAndMisplacedEntries) {
  for (uint32_t flags : {0u, 3u, 0x100u}) {
    auto b = Encoded(SampleEntry());
    PutLe32(b, 0, flags);
    Reseal(b);
    EXPECT_EQ(DecodeSlotEntry(b, kBlockSize, kSlot).status().code(), StatusCode::kCorruption)
        << flags;
  }
  // An entry that names another slot was written to the wrong place.
  Result<SlotEntry> r = DecodeSlotEntry(Encoded(SampleEntry()), kBlockSize, kSlot + 1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("describes slot"), std::string::npos);
}

TEST(BlockFormatTest, ShortBuffersAreInvalidArguments) {
  std::vector<std::byte> small(kTableEntrySize - 1);
  EXPECT_EQ(EncodeSlotEntry(SampleEntry(), small).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeSlotEntry(small, kBlockSize, 0).status().code(), StatusCode::kInvalidArgument);
  std::vector<std::byte> short_header(kSegmentHeaderSize - 1);
  EXPECT_EQ(EncodeSegmentHeader({}, short_header).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeSegmentHeader(short_header).status().code(), StatusCode::kInvalidArgument);
}

TEST(BlockFormatTest, BlankEntryIsRecognised) {
  std::vector<std::byte> zeros(kTableEntrySize);
  EXPECT_TRUE(IsBlankSlotEntry(zeros));
  EXPECT_EQ(DecodeSlotEntry(zeros, kBlockSize, 0).status().code(), StatusCode::kCorruption);
  EXPECT_FALSE(IsBlankSlotEntry(Encoded(SampleEntry())));
  SlotEntry tomb;
  tomb.flags = SlotFlags::kTombstone;
  EXPECT_FALSE(IsBlankSlotEntry(Encoded(tomb)));  // a tombstone of slot 0 is not blank
}

SegmentHeader SampleSegment() {
  SegmentHeader h;
  h.segment_index = 7;
  h.block_size = 1 << 20;
  h.slots_per_segment = 255;
  h.created_unix_ms = 1764000000000ull;
  return h;
}

TEST(BlockFormatTest, SegmentHeaderRoundTripAndLayout) {
  const SegmentHeader h = SampleSegment();
  std::vector<std::byte> b(kSegmentHeaderSize, std::byte{0x55});
  ASSERT_TRUE(EncodeSegmentHeader(h, b).ok());
  EXPECT_EQ(std::memcmp(b.data(), "TMSG", 4), 0);
  EXPECT_EQ(Le32(b, 4), 2u);
  EXPECT_EQ(Le32(b, 8), 4096u);
  EXPECT_EQ(Le32(b, 12), 7u);
  EXPECT_EQ(Le64(b, 16), uint64_t{1} << 20);
  EXPECT_EQ(Le32(b, 24), 255u);
  EXPECT_EQ(Le32(b, 28), 64u);
  EXPECT_EQ(Le64(b, 32), h.created_unix_ms);
  EXPECT_EQ(Le64(b, 40), DataOffset(255));
  EXPECT_EQ(Le32(b, 60), Crc32c({b.data(), 60}));
  for (size_t i = 64; i < kSegmentHeaderSize; ++i) ASSERT_EQ(b[i], std::byte{0}) << i;
  Result<SegmentHeader> back = DecodeSegmentHeader(b);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, h);
}

TEST(BlockFormatTest, SegmentHeaderRejections) {
  SegmentHeader good;
  good.block_size = 8192;
  good.slots_per_segment = 4;
  std::vector<std::byte> b(kSegmentHeaderSize);
  ASSERT_TRUE(EncodeSegmentHeader(good, b).ok());

  auto flipped = b;
  flipped[17] ^= std::byte{1};
  EXPECT_EQ(DecodeSegmentHeader(flipped).status().code(), StatusCode::kCorruption);

  auto magic = b;
  magic[0] = std::byte{'X'};
  Reseal(magic);
  EXPECT_EQ(DecodeSegmentHeader(magic).status().code(), StatusCode::kCorruption);

  for (auto [bs, sps] : {std::pair<uint64_t, uint32_t>{0, 4}, {1000, 4}, {8192, 0}}) {
    SegmentHeader bad = good;
    bad.block_size = bs;
    bad.slots_per_segment = sps;
    ASSERT_TRUE(EncodeSegmentHeader(bad, b).ok());
    EXPECT_EQ(DecodeSegmentHeader(b).status().code(), StatusCode::kCorruption) << bs << " " << sps;
  }
  for (auto [off, value] : {std::pair<size_t, uint64_t>{8, 512}, {28, 4096}, {40, 12288}}) {
    ASSERT_TRUE(EncodeSegmentHeader(good, b).ok());
    if (off == 40) {
      PutLe64(b, off, value);
    } else {
      PutLe32(b, off, static_cast<uint32_t>(value));
    }
    Reseal(b);
    EXPECT_EQ(DecodeSegmentHeader(b).status().code(), StatusCode::kCorruption) << off;
  }
}

// A sound segment header of format version 1 (a 4096-byte header per slot)
// is refused with a message that says what it is and what to do.
TEST(BlockFormatTest, OlderFormatVersionIsRefusedClearly) {
  std::vector<std::byte> v1(kSegmentHeaderSize);
  std::memcpy(v1.data(), "TMSG", 4);
  PutLe32(v1, 4, 1);
  PutLe32(v1, 8, 4096);
  PutLe32(v1, 12, 0);
  PutLe64(v1, 16, 8192);
  PutLe32(v1, 24, 10);
  PutLe32(v1, 28, 4096);  // v1's slot header length
  Reseal(v1);
  Result<SegmentHeader> r = DecodeSegmentHeader(v1);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("version 1"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("remove the seg-*.tmd files"), std::string::npos);

  auto future = v1;
  PutLe32(future, 4, 3);
  Reseal(future);
  r = DecodeSegmentHeader(future);
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("newer"), std::string::npos) << r.status().ToString();

  // The version is readable from any sound header, and from no damaged one.
  EXPECT_EQ(SegmentFormatVersion(v1), 1u);
  EXPECT_EQ(SegmentFormatVersion(future), 3u);
  auto torn = v1;
  torn[20] ^= std::byte{1};
  EXPECT_FALSE(SegmentFormatVersion(torn).has_value());
  auto foreign = v1;
  std::memcpy(foreign.data(), "XXXX", 4);
  Reseal(foreign);
  EXPECT_FALSE(SegmentFormatVersion(foreign).has_value());
  EXPECT_FALSE(SegmentFormatVersion(std::span(v1).first(16)).has_value());
}

}  // namespace
}  // namespace tokenmem::nvme
