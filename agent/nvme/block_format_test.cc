#include "nvme/block_format.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <vector>

#include "tokenmem/common/crc32c.h"

namespace tokenmem::nvme {
namespace {

constexpr uint64_t kBlockSize = 65536;

SlotHeader SampleSlot() {
  SlotHeader h;
  h.flags = SlotFlags::kLive;
  h.key = {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull};
  h.generation = 42;
  h.stored_unix_ms = 1764000000123ull;
  h.data_length = 12345;
  h.data_crc32c = 0xDEADBEEF;
  return h;
}

std::vector<std::byte> Encoded(const SlotHeader& h) {
  std::vector<std::byte> buf(kSlotHeaderSize, std::byte{0xAA});
  EXPECT_TRUE(EncodeSlotHeader(h, buf).ok());
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
// Re-seals the header checksum after a test edits a field on purpose.
void Reseal(std::vector<std::byte>& b) { PutLe32(b, 60, Crc32c({b.data(), 60})); }

TEST(BlockFormatTest, SlotHeaderRoundTrip) {
  const SlotHeader h = SampleSlot();
  const auto buf = Encoded(h);
  Result<SlotHeader> back = DecodeSlotHeader(buf, kBlockSize);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, h);

  SlotHeader tomb;
  tomb.flags = SlotFlags::kTombstone;
  Result<SlotHeader> tomb_back = DecodeSlotHeader(Encoded(tomb), kBlockSize);
  ASSERT_TRUE(tomb_back.ok());
  EXPECT_EQ(tomb_back->flags, SlotFlags::kTombstone);
}

// The byte layout is frozen: these offsets are the documented format.
TEST(BlockFormatTest, SlotHeaderLayoutIsFrozen) {
  const SlotHeader h = SampleSlot();
  const auto b = Encoded(h);
  EXPECT_EQ(std::memcmp(b.data(), "TMBK", 4), 0);
  EXPECT_EQ(Le32(b, 4), 1u);
  EXPECT_EQ(Le32(b, 8), 4096u);
  EXPECT_EQ(Le32(b, 12), 1u);
  EXPECT_EQ(Le64(b, 16), h.key.hi);
  EXPECT_EQ(Le64(b, 24), h.key.lo);
  EXPECT_EQ(Le64(b, 32), h.generation);
  EXPECT_EQ(Le64(b, 40), h.stored_unix_ms);
  EXPECT_EQ(Le32(b, 48), h.data_length);
  EXPECT_EQ(Le32(b, 52), h.data_crc32c);
  EXPECT_EQ(Le32(b, 56), 0u);
  EXPECT_EQ(Le32(b, 60), Crc32c({b.data(), 60}));
  for (size_t i = 64; i < kSlotHeaderSize; ++i) ASSERT_EQ(b[i], std::byte{0}) << i;
}

TEST(BlockFormatTest, RejectsBadMagic) {
  auto b = Encoded(SampleSlot());
  b[0] = std::byte{'X'};
  Result<SlotHeader> r = DecodeSlotHeader(b, kBlockSize);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("magic"), std::string::npos);
}

TEST(BlockFormatTest, RejectsHeaderChecksumMismatch) {
  for (size_t off : {4u, 12u, 20u, 33u, 47u, 50u, 55u, 58u, 61u}) {
    auto b = Encoded(SampleSlot());
    b[off] ^= std::byte{0x01};
    Result<SlotHeader> r = DecodeSlotHeader(b, kBlockSize);
    ASSERT_FALSE(r.ok()) << "flipped byte " << off;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
    EXPECT_NE(r.status().message().find("checksum"), std::string::npos) << r.status().ToString();
  }
}

TEST(BlockFormatTest, RejectsImpossibleLength) {
  SlotHeader h = SampleSlot();
  h.data_length = kBlockSize + 1;
  Result<SlotHeader> r = DecodeSlotHeader(Encoded(h), kBlockSize);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_NE(r.status().message().find("length"), std::string::npos);
  h.data_length = kBlockSize;  // exactly full is fine
  EXPECT_TRUE(DecodeSlotHeader(Encoded(h), kBlockSize).ok());
}

TEST(BlockFormatTest, RejectsUnknownVersionHeaderLengthAndFlags) {
  for (auto [off, value] : {std::pair<size_t, uint32_t>{4, 2}, {8, 512}, {12, 0}, {12, 3}}) {
    auto b = Encoded(SampleSlot());
    PutLe32(b, off, value);
    Reseal(b);
    Result<SlotHeader> r = DecodeSlotHeader(b, kBlockSize);
    ASSERT_FALSE(r.ok()) << "offset " << off;
    EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  }
}

TEST(BlockFormatTest, IgnoresBytesAfterTheFields) {
  auto b = Encoded(SampleSlot());
  b[100] = std::byte{7};
  b[4095] = std::byte{9};
  EXPECT_TRUE(DecodeSlotHeader(b, kBlockSize).ok());
}

TEST(BlockFormatTest, ShortBuffersAreInvalidArguments) {
  std::vector<std::byte> small(kSlotHeaderSize - 1);
  EXPECT_EQ(EncodeSlotHeader(SampleSlot(), small).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeSlotHeader(small, kBlockSize).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(EncodeSegmentHeader({}, small).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(DecodeSegmentHeader(small).status().code(), StatusCode::kInvalidArgument);
}

TEST(BlockFormatTest, BlankHeaderIsRecognised) {
  std::vector<std::byte> zeros(kSlotHeaderSize);
  EXPECT_TRUE(IsBlankSlotHeader(zeros));
  Result<SlotHeader> r = DecodeSlotHeader(zeros, kBlockSize);
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);  // blank is not a header
  EXPECT_FALSE(IsBlankSlotHeader(Encoded(SampleSlot())));
  SlotHeader tomb;
  tomb.flags = SlotFlags::kTombstone;
  EXPECT_FALSE(IsBlankSlotHeader(Encoded(tomb)));  // a tombstone of key 0 is not blank
}

TEST(BlockFormatTest, SegmentHeaderRoundTripAndLayout) {
  SegmentHeader h;
  h.segment_index = 7;
  h.block_size = 1 << 20;
  h.slots_per_segment = 255;
  h.created_unix_ms = 1764000000000ull;
  std::vector<std::byte> b(kSegmentHeaderSize, std::byte{0x55});
  ASSERT_TRUE(EncodeSegmentHeader(h, b).ok());
  EXPECT_EQ(std::memcmp(b.data(), "TMSG", 4), 0);
  EXPECT_EQ(Le32(b, 12), 7u);
  EXPECT_EQ(Le64(b, 16), uint64_t{1} << 20);
  EXPECT_EQ(Le32(b, 24), 255u);
  EXPECT_EQ(Le32(b, 28), 4096u);
  EXPECT_EQ(Le32(b, 60), Crc32c({b.data(), 60}));
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

  std::vector<std::byte> slot(kSlotHeaderSize);
  ASSERT_TRUE(EncodeSlotHeader(SampleSlot(), slot).ok());
  EXPECT_EQ(DecodeSegmentHeader(slot).status().code(), StatusCode::kCorruption);  // wrong magic

  for (auto [bs, sps] : {std::pair<uint64_t, uint32_t>{0, 4}, {1000, 4}, {8192, 0}}) {
    SegmentHeader bad = good;
    bad.block_size = bs;
    bad.slots_per_segment = sps;
    ASSERT_TRUE(EncodeSegmentHeader(bad, b).ok());
    EXPECT_EQ(DecodeSegmentHeader(b).status().code(), StatusCode::kCorruption) << bs << " " << sps;
  }
}

}  // namespace
}  // namespace tokenmem::nvme
