#include "nvme/nvme_store.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <tuple>
#include <vector>

#include "nvme/block_format.h"
#include "nvme/test_temp_dir.h"
#include "tokenmem/common/crc32c.h"

namespace tokenmem::nvme {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kBlockSize = 16384;
constexpr uint32_t kCapacity = 24;
constexpr uint32_t kSlotsPerSegment = 10;  // three segment files: 10 + 10 + 4 slots
constexpr uint64_t kDataOffset = DataOffset(kSlotsPerSegment);  // header + one table page

BlockKey KeyOf(uint64_t i) { return {0xABCD000000000000ull + i, ~i}; }

std::vector<std::byte> Payload(uint64_t seed, size_t length) {
  std::vector<std::byte> v(length);
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& b : v) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<std::byte>(x);
  }
  return v;
}

// Overwrites `bytes` at `offset` of `path` (through the page cache; the
// store reads with O_DIRECT, which sees the written bytes).
void Poke(const fs::path& path, uint64_t offset, std::span<const std::byte> bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)),
            static_cast<ssize_t>(bytes.size()));
  ASSERT_EQ(::fsync(fd), 0);
  ::close(fd);
}

std::byte PeekByte(const fs::path& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  std::byte b{0};
  EXPECT_EQ(::pread(fd, &b, 1, static_cast<off_t>(offset)), 1);
  ::close(fd);
  return b;
}

class NvmeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::SupportsDirectIo(dir_.path())) {
      GTEST_SKIP() << dir_.path() << " does not support O_DIRECT";
    }
    options_.directory = dir_.path() / "pool";
    options_.block_size = kBlockSize;
    options_.capacity_bytes = kCapacity * kBlockSize;
    options_.segment_bytes = kDataOffset + kSlotsPerSegment * kBlockSize + 100;
    options_.queue_depth = 8;
  }

  std::unique_ptr<NvmeStore> OpenStore(std::vector<RecoveredBlock>* recovered = nullptr) {
    Result<std::unique_ptr<NvmeStore>> s = NvmeStore::Open(options_, recovered);
    EXPECT_TRUE(s.ok()) << s.status().ToString();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  // Allocates a slot and stores block i (length `length`, generation gen).
  uint32_t Put(NvmeStore& store, uint64_t i, size_t length, uint64_t gen = 1) {
    Result<uint32_t> slot = store.Allocate();
    EXPECT_TRUE(slot.ok()) << slot.status().ToString();
    const auto data = Payload(i, length);
    EXPECT_TRUE(store.Write(*slot, KeyOf(i), gen, 1000 + i, data).ok());
    return *slot;
  }

  void ExpectBlock(NvmeStore& store, uint32_t slot, uint64_t i, size_t length) {
    std::vector<std::byte> out(kBlockSize);
    Result<uint32_t> n = store.Read(slot, KeyOf(i), out);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_EQ(*n, length);
    const auto want = Payload(i, length);
    EXPECT_TRUE(std::equal(want.begin(), want.end(), out.begin())) << "block " << i;
  }

  tokenmem::testing::TempDir dir_;
  NvmeStoreOptions options_;
};

TEST_F(NvmeStoreTest, CreatesPreallocatedSegmentFiles) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->capacity_slots(), kCapacity);
  EXPECT_EQ(store->used_slots(), 0u);
  EXPECT_EQ(store->free_slots(), kCapacity);
  EXPECT_EQ(store->block_size(), kBlockSize);
  EXPECT_EQ(store->directory(), options_.directory);
  const fs::path d = options_.directory;
  EXPECT_EQ(fs::file_size(d / "seg-000000.tmd"), kDataOffset + 10 * kBlockSize);
  EXPECT_EQ(fs::file_size(d / "seg-000001.tmd"), kDataOffset + 10 * kBlockSize);
  EXPECT_EQ(fs::file_size(d / "seg-000002.tmd"), kDataOffset + 4 * kBlockSize);
  EXPECT_FALSE(fs::exists(d / "seg-000003.tmd"));
  auto [path, offset] = store->SlotLocation(13);
  EXPECT_EQ(path, d / "seg-000001.tmd");
  EXPECT_EQ(offset, kDataOffset + 3 * kBlockSize);
  auto [entry_path, entry_offset] = store->SlotEntryLocation(13);
  EXPECT_EQ(entry_path, d / "seg-000001.tmd");
  EXPECT_EQ(entry_offset, kSegmentHeaderSize + 3 * kTableEntrySize);
}

TEST_F(NvmeStoreTest, WriteReadIsByteExactForRandomLengths) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  std::mt19937_64 rng(7);
  std::vector<size_t> lengths = {1, kBlockSize, 4096, 4097, 4095};
  while (lengths.size() < kCapacity) lengths.push_back(1 + rng() % kBlockSize);
  std::vector<uint32_t> slots;
  for (size_t i = 0; i < lengths.size(); ++i) slots.push_back(Put(*store, i, lengths[i]));
  for (size_t i = 0; i < lengths.size(); ++i) ExpectBlock(*store, slots[i], i, lengths[i]);

  // A buffer of exactly the block's length is enough (the store reads only
  // what fits, rounded up).
  std::vector<std::byte> exact(lengths[3]);
  Result<uint32_t> n = store->Read(slots[3], KeyOf(3), exact);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(exact, Payload(3, lengths[3]));

  const NvmeIoStats st = store->stats();
  EXPECT_EQ(st.writes, kCapacity);
  EXPECT_EQ(st.reads, kCapacity + 1);
  EXPECT_EQ(st.checksum_failures, 0u);
  EXPECT_EQ(st.io_errors, 0u);
  EXPECT_GT(st.bytes_written, 0u);
  EXPECT_GT(st.write_ns_total, 0u);
}

TEST_F(NvmeStoreTest, AlignedBuffersAreReadInPlaceWhateverTheirSize) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const std::vector<size_t> lengths = {1, 4096, 5000, kBlockSize};
  std::vector<uint32_t> slots;
  for (size_t i = 0; i < lengths.size(); ++i) slots.push_back(Put(*store, i, lengths[i]));
  auto* raw = static_cast<std::byte*>(std::aligned_alloc(4096, kBlockSize + 4096));
  std::unique_ptr<std::byte, decltype(&std::free)> holder(raw, &std::free);
  for (size_t i = 0; i < lengths.size(); ++i) {
    // Whole pages, and a size that is not (the block then runs past the
    // aligned part: the store falls back to its bounce buffer).
    for (size_t size : {size_t{kBlockSize}, lengths[i], lengths[i] + 1}) {
      std::memset(raw, 0, kBlockSize + 4096);
      Result<uint32_t> n = store->Read(slots[i], KeyOf(i), {raw, size});
      ASSERT_TRUE(n.ok()) << "block " << i << " size " << size << ": " << n.status().ToString();
      ASSERT_EQ(*n, lengths[i]);
      const auto want = Payload(i, lengths[i]);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), raw)) << "block " << i << " size " << size;
    }
  }
}

TEST_F(NvmeStoreTest, AlignedWholePageWritesRoundTripAndRecover) {
  auto* raw = static_cast<std::byte*>(std::aligned_alloc(4096, kBlockSize));
  std::unique_ptr<std::byte, decltype(&std::free)> holder(raw, &std::free);
  const auto want = Payload(77, kBlockSize);
  std::memcpy(raw, want.data(), kBlockSize);
  uint32_t slot = 0;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    auto s = store->Allocate();
    ASSERT_TRUE(s.ok());
    slot = *s;
    ASSERT_TRUE(store->Write(slot, KeyOf(77), 5, 1, {raw, size_t{kBlockSize}}).ok());
    ExpectBlock(*store, slot, 77, kBlockSize);
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].key, KeyOf(77));
  EXPECT_EQ(recovered[0].length, kBlockSize);
  ExpectBlock(*store, slot, 77, kBlockSize);
}

TEST_F(NvmeStoreTest, EmptyBlockRoundTrips) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const uint32_t slot = store->Allocate().value();
  ASSERT_TRUE(store->Write(slot, KeyOf(1), 1, 1, {}).ok());
  Result<uint32_t> n = store->Read(slot, KeyOf(1), {});
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, 0u);
}

TEST_F(NvmeStoreTest, ReadIntoTooSmallBufferIsInvalidArgument) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const uint32_t slot = Put(*store, 1, 5000);
  std::vector<std::byte> small(4999);
  Result<uint32_t> n = store->Read(slot, KeyOf(1), small);
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(n.status().message().find("5000"), std::string::npos) << n.status().ToString();
}

TEST_F(NvmeStoreTest, BadArgumentsAreRefused) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  std::vector<std::byte> big(kBlockSize + 1);
  EXPECT_EQ(store->Write(0, KeyOf(1), 1, 1, big).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Write(kCapacity, KeyOf(1), 1, 1, {}).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Read(kCapacity, KeyOf(1), big).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(store->Invalidate(kCapacity).code(), StatusCode::kInvalidArgument);
}

TEST_F(NvmeStoreTest, OtherKeyTombstoneAndBlankSlotAreNotFound) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const uint32_t slot = Put(*store, 1, 100);
  std::vector<std::byte> out(kBlockSize);
  EXPECT_EQ(store->Read(slot, KeyOf(2), out).status().code(), StatusCode::kNotFound);
  ASSERT_TRUE(store->Invalidate(slot).ok());
  EXPECT_EQ(store->Read(slot, KeyOf(1), out).status().code(), StatusCode::kNotFound);
  const uint32_t blank = store->Allocate().value();
  EXPECT_EQ(store->Read(blank, KeyOf(1), out).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->stats().checksum_failures, 0u);
}

TEST_F(NvmeStoreTest, FlippedDataByteIsCorruption) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  const uint32_t slot = Put(*store, 1, 9000);
  const uint32_t other = Put(*store, 2, 9000);
  auto [path, offset] = store->SlotLocation(slot);
  const uint64_t k = 8191;
  const std::byte flipped = PeekByte(path, offset + k) ^ std::byte{0x10};
  Poke(path, offset + k, {&flipped, 1});

  std::vector<std::byte> out(kBlockSize);
  Result<uint32_t> n = store->Read(slot, KeyOf(1), out);
  EXPECT_EQ(n.status().code(), StatusCode::kCorruption) << n.status().ToString();
  EXPECT_EQ(store->stats().checksum_failures, 1u);
  ExpectBlock(*store, other, 2, 9000);  // the neighbour is untouched
  EXPECT_EQ(store->stats().checksum_failures, 1u);
}

// The table on disk is read at Open only: a damaged entry loses its block
// at the next Open (the slot is free), never its neighbours'.
TEST_F(NvmeStoreTest, DamagedTableEntryIsNotRecovered) {
  uint32_t slot, other;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    slot = Put(*store, 1, 100);
    other = Put(*store, 2, 100);
    auto [path, offset] = store->SlotEntryLocation(slot);
    const std::byte flipped = PeekByte(path, offset + 25) ^ std::byte{0x01};  // generation
    Poke(path, offset + 25, {&flipped, 1});
    ExpectBlock(*store, slot, 1, 100);  // the open store serves from its own table
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].slot, other);
  ExpectBlock(*store, other, 2, 100);
  std::vector<std::byte> out(kBlockSize);
  EXPECT_EQ(store->Read(slot, KeyOf(1), out).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(store->stats().checksum_failures, 0u);
}

TEST_F(NvmeStoreTest, FullStoreIsResourceExhaustedAndReleaseFrees) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  std::set<uint32_t> slots;
  for (uint32_t i = 0; i < kCapacity; ++i) {
    Result<uint32_t> s = store->Allocate();
    ASSERT_TRUE(s.ok());
    EXPECT_LT(*s, kCapacity);
    EXPECT_TRUE(slots.insert(*s).second) << "slot handed out twice";
  }
  EXPECT_EQ(store->used_slots(), kCapacity);
  EXPECT_EQ(store->free_slots(), 0u);
  EXPECT_EQ(store->Allocate().status().code(), StatusCode::kResourceExhausted);
  store->Release(5);
  store->Release(5);  // double release: ignored
  EXPECT_EQ(store->used_slots(), kCapacity - 1);
  EXPECT_EQ(store->Allocate().value(), 5u);
  EXPECT_EQ(store->Allocate().status().code(), StatusCode::kResourceExhausted);
}

TEST_F(NvmeStoreTest, ReopenRecoversExactlyTheWrittenBlocks) {
  std::map<uint32_t, std::pair<uint64_t, size_t>> written;  // slot -> (block, length)
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    std::mt19937_64 rng(11);
    for (uint64_t i = 0; i < 17; ++i) {
      const size_t length = 1 + rng() % kBlockSize;
      written[Put(*store, i, length, 100 + i)] = {i, length};
    }
    // A slot allocated but never written and a released one hold nothing.
    (void)store->Allocate().value();
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  ASSERT_EQ(recovered.size(), written.size());
  EXPECT_EQ(store->used_slots(), written.size());
  for (const RecoveredBlock& b : recovered) {
    auto it = written.find(b.slot);
    ASSERT_NE(it, written.end()) << "unexpected slot " << b.slot;
    const auto [i, length] = it->second;
    EXPECT_EQ(b.key, KeyOf(i));
    EXPECT_EQ(b.length, length);
    EXPECT_EQ(b.generation, 100 + i);
    EXPECT_EQ(b.stored_unix_ms, 1000 + i);
    EXPECT_EQ(b.checksum, Crc32c(Payload(i, length)));
    ExpectBlock(*store, b.slot, i, length);
  }
  // Recovered slots are allocated; the rest are handed out.
  std::set<uint32_t> fresh;
  while (true) {
    Result<uint32_t> s = store->Allocate();
    if (!s.ok()) break;
    EXPECT_FALSE(written.count(*s)) << "recovered slot " << *s << " handed out again";
    fresh.insert(*s);
  }
  EXPECT_EQ(fresh.size(), kCapacity - written.size());
}

TEST_F(NvmeStoreTest, TombstonedSlotIsNotRecovered) {
  uint32_t kept, deleted;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    kept = Put(*store, 1, 300);
    deleted = Put(*store, 2, 300);
    ASSERT_TRUE(store->Invalidate(deleted).ok());
    store->Release(deleted);
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  ASSERT_EQ(recovered.size(), 1u);
  EXPECT_EQ(recovered[0].slot, kept);
  EXPECT_EQ(recovered[0].key, KeyOf(1));
}

TEST_F(NvmeStoreTest, DuplicateKeyKeepsTheHighestGeneration) {
  uint32_t old_slot, new_slot, older_slot;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    old_slot = store->Allocate().value();
    new_slot = store->Allocate().value();
    older_slot = store->Allocate().value();
    ASSERT_TRUE(store->Write(old_slot, KeyOf(7), 5, 1, Payload(5, 100)).ok());
    ASSERT_TRUE(store->Write(new_slot, KeyOf(7), 9, 1, Payload(9, 200)).ok());
    ASSERT_TRUE(store->Write(older_slot, KeyOf(7), 2, 1, Payload(2, 300)).ok());
  }
  for (int reopen = 0; reopen < 2; ++reopen) {
    std::vector<RecoveredBlock> recovered;
    auto store = OpenStore(&recovered);
    ASSERT_TRUE(store);
    ASSERT_EQ(recovered.size(), 1u);
    EXPECT_EQ(recovered[0].slot, new_slot);
    EXPECT_EQ(recovered[0].generation, 9u);
    EXPECT_EQ(recovered[0].length, 200u);
    EXPECT_EQ(store->used_slots(), 1u);
    // The losing copies were tombstoned, so deleting the winner leaves none.
    std::vector<std::byte> out(kBlockSize);
    EXPECT_EQ(store->Read(old_slot, KeyOf(7), out).status().code(), StatusCode::kNotFound);
    EXPECT_EQ(store->Read(older_slot, KeyOf(7), out).status().code(), StatusCode::kNotFound);
  }
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->Invalidate(new_slot).ok());
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  EXPECT_TRUE(recovered.empty());
}

TEST_F(NvmeStoreTest, DifferentBlockSizeIsFailedPrecondition) {
  { ASSERT_TRUE(OpenStore()); }
  options_.block_size = 2 * kBlockSize;
  Result<std::unique_ptr<NvmeStore>> s = NvmeStore::Open(options_, nullptr);
  ASSERT_EQ(s.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.status().message().find(std::to_string(kBlockSize)), std::string::npos);
  EXPECT_NE(s.status().message().find(std::to_string(2 * kBlockSize)), std::string::npos);
  // Nothing was changed: the old size still opens.
  options_.block_size = kBlockSize;
  EXPECT_TRUE(OpenStore());
}

// A table page write torn by power loss: the first sectors new, the rest
// old, one entry cut in the middle. Nothing wrong is ever served: new
// entries serve their new blocks, old entries describe data that was
// overwritten since (a counted checksum failure), the cut entry is free.
TEST_F(NvmeStoreTest, TornTablePageNeverServesWrongBytes) {
  std::vector<std::byte> old_page(kTablePageSize);
  fs::path path;
  uint64_t page_offset = 0;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    for (uint64_t i = 0; i < kSlotsPerSegment; ++i) ASSERT_EQ(Put(*store, i, 3000, 1), i);
    std::tie(path, page_offset) = store->SlotEntryLocation(0);
  }
  {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::pread(fd, old_page.data(), old_page.size(), static_cast<off_t>(page_offset)),
              static_cast<ssize_t>(old_page.size()));
    ::close(fd);
  }
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    for (uint32_t slot = 0; slot < kSlotsPerSegment; ++slot) {
      ASSERT_TRUE(store->Write(slot, KeyOf(100 + slot), 2, 2, Payload(100 + slot, 5000)).ok());
    }
  }
  // Old bytes from 520 on: entries 0..7 new, entry 8 cut at byte 8, 9 old.
  Poke(path, page_offset + 520, {old_page.data() + 520, kTablePageSize - 520});
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  std::map<uint32_t, RecoveredBlock> by_slot;
  for (const RecoveredBlock& b : recovered) by_slot[b.slot] = b;
  ASSERT_EQ(by_slot.size(), 9u);
  EXPECT_FALSE(by_slot.count(8));
  for (uint32_t slot = 0; slot < 8; ++slot) {
    ASSERT_EQ(by_slot[slot].key, KeyOf(100 + slot));
    ExpectBlock(*store, slot, 100 + slot, 5000);
  }
  ASSERT_EQ(by_slot[9].key, KeyOf(9));
  std::vector<std::byte> out(kBlockSize);
  EXPECT_EQ(store->Read(9, KeyOf(9), out).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(store->stats().checksum_failures, 1u);
  // The cut entry's slot is free again and can be reused.
  std::set<uint32_t> handed;
  while (true) {
    Result<uint32_t> s = store->Allocate();
    if (!s.ok()) break;
    handed.insert(*s);
  }
  EXPECT_TRUE(handed.count(8));
}

// Recovery reads the slot tables only: with every data area overwritten,
// Open still finds every block exactly as written, and each read of one is
// a counted checksum failure.
TEST_F(NvmeStoreTest, RecoveryComesFromTheTableAlone) {
  std::map<uint32_t, std::pair<uint64_t, size_t>> written;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    for (uint64_t i = 0; i < kCapacity; ++i) {
      const size_t length = 1 + (i * 4099) % kBlockSize;
      written[Put(*store, i, length, 50 + i)] = {i, length};
    }
    for (const auto& [slot, what] : written) {
      auto [path, offset] = store->SlotLocation(slot);
      Poke(path, offset, Payload(999 + slot, kBlockSize));
    }
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  ASSERT_EQ(recovered.size(), written.size());
  std::vector<std::byte> out(kBlockSize);
  for (const RecoveredBlock& b : recovered) {
    const auto [i, length] = written.at(b.slot);
    EXPECT_EQ(b.key, KeyOf(i));
    EXPECT_EQ(b.length, length);
    EXPECT_EQ(b.generation, 50 + i);
    EXPECT_EQ(b.stored_unix_ms, 1000 + i);
    EXPECT_EQ(b.checksum, Crc32c(Payload(i, length)));
    EXPECT_EQ(store->Read(b.slot, KeyOf(i), out).status().code(), StatusCode::kCorruption);
  }
  EXPECT_EQ(store->stats().checksum_failures, written.size());
}

// A segment header of format `version` (the fields every version keeps in
// place), with two slots of kBlockSize.
std::vector<std::byte> HeaderOfVersion(uint32_t version, uint64_t bytes) {
  std::vector<std::byte> v(bytes);
  auto put32 = [&](size_t off, uint32_t x) {
    for (int i = 0; i < 4; ++i) v[off + i] = static_cast<std::byte>(x >> (8 * i));
  };
  std::memcpy(v.data(), "TMSG", 4);
  put32(4, version);
  put32(8, 4096);  // header length
  put32(16, kBlockSize);
  put32(24, 2);     // slots per segment
  put32(28, 4096);  // version 1's per-slot header length
  put32(60, Crc32c({v.data(), 60}));
  return v;
}

void WriteFile(const fs::path& path, const std::vector<std::byte>& bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::write(fd, bytes.data(), bytes.size()), static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

// A directory written by the version 1 format (a 4096-byte header per
// slot) is moved aside, whole and unchanged, and the tier starts empty.
TEST_F(NvmeStoreTest, OlderFormatFilesAreMovedAsideAndTheTierStartsEmpty) {
  fs::create_directory(options_.directory);
  const auto v1 = HeaderOfVersion(1, kSegmentHeaderSize + 2 * (4096 + kBlockSize));
  WriteFile(options_.directory / "seg-000000.tmd", v1);
  WriteFile(options_.directory / "seg-000001.tmd", v1);
  std::vector<RecoveredBlock> recovered;
  Result<std::unique_ptr<NvmeStore>> s = NvmeStore::Open(options_, &recovered);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_TRUE(recovered.empty());
  std::vector<fs::path> moved_to;
  for (const auto& entry : fs::directory_iterator(options_.directory)) {
    if (entry.is_directory()) moved_to.push_back(entry.path());
  }
  ASSERT_EQ(moved_to.size(), 1u);
  EXPECT_EQ(moved_to[0].filename().string().rfind("format-1-moved-", 0), 0u) << moved_to[0];
  EXPECT_EQ(fs::file_size(moved_to[0] / "seg-000000.tmd"), v1.size());
  EXPECT_EQ(fs::file_size(moved_to[0] / "seg-000001.tmd"), v1.size());
  // The store works on fresh files of its own format.
  ExpectBlock(**s, Put(**s, 5, kBlockSize), 5, kBlockSize);
}

// A newer format (a downgrade) is refused, untouched, with a clear message.
TEST_F(NvmeStoreTest, NewerFormatDirectoryIsRefusedUntouched) {
  fs::create_directory(options_.directory);
  const fs::path file = options_.directory / "seg-000000.tmd";
  const auto v3 = HeaderOfVersion(kFormatVersion + 1, kSegmentHeaderSize + 2 * (64 + kBlockSize));
  WriteFile(file, v3);
  Result<std::unique_ptr<NvmeStore>> s = NvmeStore::Open(options_, nullptr);
  ASSERT_EQ(s.status().code(), StatusCode::kFailedPrecondition) << s.status().ToString();
  EXPECT_NE(s.status().message().find("newer agent"), std::string::npos) << s.status().ToString();
  EXPECT_NE(s.status().message().find("seg-000000.tmd"), std::string::npos);
  EXPECT_EQ(fs::file_size(file), v3.size());
  EXPECT_FALSE(fs::exists(options_.directory / "seg-000001.tmd"));
}

// Writers of distinct slots that share one table page at once: every
// acknowledged entry is on disk afterwards (no page write undoes another).
TEST_F(NvmeStoreTest, ConcurrentWritersOfOneTablePageAllSurvive) {
  options_.capacity_bytes = 64 * kBlockSize;
  options_.segment_bytes = 256ull << 20;  // one segment: one table page holds all 64
  constexpr int kThreads = 8;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    std::vector<std::thread> workers;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t] {
        for (uint32_t round = 0; round < 3; ++round) {
          for (uint32_t slot = t; slot < 64; slot += kThreads) {
            const uint64_t id = slot * 10 + round;
            if (!store->Write(slot, KeyOf(id), round, 0, Payload(id, 700)).ok()) ++failures;
          }
        }
      });
    }
    for (auto& w : workers) w.join();
    ASSERT_EQ(failures.load(), 0);
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  ASSERT_EQ(recovered.size(), 64u);
  for (const RecoveredBlock& b : recovered) {
    EXPECT_EQ(b.key, KeyOf(b.slot * 10 + 2)) << "slot " << b.slot;
    ExpectBlock(*store, b.slot, b.slot * 10 + 2, 700);
  }
}

TEST_F(NvmeStoreTest, TornDataIsReportedByReadAfterReopen) {
  uint32_t slot;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    slot = Put(*store, 1, kBlockSize);
    auto [path, offset] = store->SlotLocation(slot);
    // The entry and the first data pages reached the disk, the rest did not.
    std::vector<std::byte> zeros(8192);
    Poke(path, offset + 8192, zeros);
  }
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  ASSERT_EQ(recovered.size(), 1u);
  std::vector<std::byte> out(kBlockSize);
  EXPECT_EQ(store->Read(slot, KeyOf(1), out).status().code(), StatusCode::kCorruption);
}

TEST_F(NvmeStoreTest, CapacityGrowsAndShrinks) {
  uint32_t low, high;
  {
    auto store = OpenStore();
    ASSERT_TRUE(store);
    low = store->Allocate().value();  // slot 0
    for (uint32_t i = 1; i < kCapacity; ++i) high = store->Allocate().value();
    ASSERT_EQ(low, 0u);
    ASSERT_EQ(high, kCapacity - 1);
    ASSERT_TRUE(store->Write(low, KeyOf(1), 1, 1, Payload(1, 10)).ok());
    ASSERT_TRUE(store->Write(high, KeyOf(2), 1, 1, Payload(2, 10)).ok());
  }
  const fs::path d = options_.directory;
  options_.capacity_bytes = 35 * kBlockSize;  // grows seg 2 to 10 slots, adds seg 3 (5 slots)
  {
    std::vector<RecoveredBlock> recovered;
    auto store = OpenStore(&recovered);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->capacity_slots(), 35u);
    EXPECT_EQ(recovered.size(), 2u);
    EXPECT_EQ(fs::file_size(d / "seg-000002.tmd"), kDataOffset + 10 * kBlockSize);
    EXPECT_EQ(fs::file_size(d / "seg-000003.tmd"), kDataOffset + 5 * kBlockSize);
  }
  options_.capacity_bytes = 12 * kBlockSize;  // cuts seg 1 to 2 slots, removes segs 2 and 3
  {
    std::vector<RecoveredBlock> recovered;
    auto store = OpenStore(&recovered);
    ASSERT_TRUE(store);
    EXPECT_EQ(store->capacity_slots(), 12u);
    ASSERT_EQ(recovered.size(), 1u);
    EXPECT_EQ(recovered[0].slot, low);
    EXPECT_EQ(fs::file_size(d / "seg-000001.tmd"), kDataOffset + 2 * kBlockSize);
    EXPECT_FALSE(fs::exists(d / "seg-000002.tmd"));
    EXPECT_FALSE(fs::exists(d / "seg-000003.tmd"));
  }
  // Growing back does not bring the dropped block back.
  options_.capacity_bytes = kCapacity * kBlockSize;
  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  EXPECT_EQ(recovered.size(), 1u);
}

TEST_F(NvmeStoreTest, ExistingDirectoryKeepsItsSegmentSize) {
  { ASSERT_TRUE(OpenStore()); }
  options_.segment_bytes = 256ull << 20;
  auto store = OpenStore();
  ASSERT_TRUE(store);
  EXPECT_EQ(store->SlotLocation(13).first, options_.directory / "seg-000001.tmd");
}

TEST_F(NvmeStoreTest, OtherFilesAreLeftAloneAndUnfinishedSegmentsRemoved) {
  fs::create_directory(options_.directory);
  const fs::path note = options_.directory / "README";
  const fs::path odd = options_.directory / "seg-12.tmd";
  const fs::path unfinished = options_.directory / "seg-000000.tmd.tmp";
  for (const fs::path& p : {note, odd, unfinished}) {
    const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, "x", 1), 1);
    ::close(fd);
  }
  auto store = OpenStore();
  ASSERT_TRUE(store);
  EXPECT_TRUE(fs::exists(note));
  EXPECT_TRUE(fs::exists(odd));
  EXPECT_FALSE(fs::exists(unfinished));
  EXPECT_TRUE(fs::exists(options_.directory / "seg-000000.tmd"));
}

TEST_F(NvmeStoreTest, DamagedSegmentHeaderIsCorruption) {
  { ASSERT_TRUE(OpenStore()); }
  const std::byte junk{0x5A};
  Poke(options_.directory / "seg-000001.tmd", 20, {&junk, 1});
  Result<std::unique_ptr<NvmeStore>> s = NvmeStore::Open(options_, nullptr);
  EXPECT_EQ(s.status().code(), StatusCode::kCorruption);
  EXPECT_NE(s.status().message().find("seg-000001.tmd"), std::string::npos);
}

TEST_F(NvmeStoreTest, MissingParentIsNotFound) {
  options_.directory = dir_.path() / "no" / "such" / "pool";
  Result<std::unique_ptr<NvmeStore>> s = NvmeStore::Open(options_, nullptr);
  EXPECT_EQ(s.status().code(), StatusCode::kNotFound);
  EXPECT_NE(s.status().message().find("does not exist"), std::string::npos);
}

TEST_F(NvmeStoreTest, BadOptionsAreInvalidArgument) {
  auto expect_invalid = [&](NvmeStoreOptions o) {
    EXPECT_EQ(NvmeStore::Open(o, nullptr).status().code(), StatusCode::kInvalidArgument);
  };
  NvmeStoreOptions o = options_;
  o.block_size = 1000;
  expect_invalid(o);
  o = options_;
  o.capacity_bytes = kBlockSize - 1;
  expect_invalid(o);
  o = options_;
  o.queue_depth = 0;
  expect_invalid(o);
  o = options_;
  o.directory.clear();
  expect_invalid(o);
}

TEST_F(NvmeStoreTest, SecondOpenOfTheSameDirectoryIsRefused) {
  auto store = OpenStore();
  ASSERT_TRUE(store);
  Result<std::unique_ptr<NvmeStore>> second = NvmeStore::Open(options_, nullptr);
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
  store.reset();
  EXPECT_TRUE(OpenStore());
}

TEST_F(NvmeStoreTest, ConcurrentReadsAndWritesOnDistinctSlots) {
  constexpr int kThreads = 6;  // more threads than rings (4)
  constexpr int kRounds = 30;
  auto store = OpenStore();
  ASSERT_TRUE(store);
  std::vector<std::vector<uint32_t>> slots(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int j = 0; j < 4; ++j) slots[t].push_back(store->Allocate().value());
  }
  std::atomic<int> failures{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.emplace_back([&, t] {
      std::mt19937_64 rng(t);
      std::vector<std::byte> out(kBlockSize);
      for (int r = 0; r < kRounds; ++r) {
        const uint32_t slot = slots[t][r % 4];
        const uint64_t id = t * 1000 + r;
        const size_t length = 1 + rng() % kBlockSize;
        const auto data = Payload(id, length);
        if (!store->Write(slot, KeyOf(id), r, 0, data).ok()) ++failures;
        Result<uint32_t> n = store->Read(slot, KeyOf(id), out);
        if (!n.ok() || *n != length || !std::equal(data.begin(), data.end(), out.begin())) {
          ++failures;
        }
        (void)store->stats();
      }
    });
  }
  for (auto& w : workers) w.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(store->stats().writes, uint64_t{kThreads} * kRounds);
}

// Blocks whose Write returned survive kill -9 of the writer; the one write
// in flight at the kill is either whole, absent or reported as corrupt.
TEST_F(NvmeStoreTest, AcknowledgedWritesSurviveKillNine) {
  int acks[2];
  ASSERT_EQ(::pipe(acks), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::close(acks[0]);
    Result<std::unique_ptr<NvmeStore>> opened = NvmeStore::Open(options_, nullptr);
    if (!opened.ok()) ::_exit(2);
    NvmeStore& store = **opened;
    for (uint32_t i = 0;; ++i) {  // overwrites slots round and round until killed
      const uint32_t slot = i % kCapacity;
      if (!store.Write(slot, KeyOf(i), i, i, Payload(i, 1 + (i * 997) % kBlockSize)).ok()) {
        ::_exit(3);
      }
      if (::write(acks[1], &i, sizeof i) != sizeof i) ::_exit(4);
    }
  }
  ::close(acks[1]);
  uint32_t last = 0;
  uint32_t count = 0;
  while (count < 3 * kCapacity + 5 && ::read(acks[0], &last, sizeof last) == sizeof last) ++count;
  ASSERT_EQ(::kill(pid, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFSIGNALED(status)) << "writer exited with " << WEXITSTATUS(status);
  while (::read(acks[0], &last, sizeof last) == sizeof last) ++count;  // acks sent before death
  ::close(acks[0]);
  ASSERT_GT(count, 3 * kCapacity);

  std::vector<RecoveredBlock> recovered;
  auto store = OpenStore(&recovered);
  ASSERT_TRUE(store);
  const uint32_t in_flight = last + 1;
  std::map<uint32_t, uint32_t> by_slot;
  for (const RecoveredBlock& b : recovered) by_slot[b.slot] = static_cast<uint32_t>(b.generation);
  for (uint32_t slot = 0; slot < kCapacity; ++slot) {
    // The last acknowledged write to this slot.
    const uint32_t acked = last - ((last - slot) % kCapacity);
    const bool may_differ = in_flight % kCapacity == slot;
    auto it = by_slot.find(slot);
    if (!may_differ) {
      ASSERT_NE(it, by_slot.end()) << "slot " << slot << " lost block " << acked;
      ASSERT_EQ(it->second, acked) << "slot " << slot;
      ExpectBlock(*store, slot, acked, 1 + (acked * 997) % kBlockSize);
    } else if (it != by_slot.end()) {
      ASSERT_TRUE(it->second == acked || it->second == in_flight) << it->second;
      std::vector<std::byte> out(kBlockSize);
      const StatusCode code = store->Read(slot, KeyOf(it->second), out).status().code();
      EXPECT_TRUE(code == StatusCode::kOk || code == StatusCode::kCorruption);
    }
  }
}

}  // namespace
}  // namespace tokenmem::nvme
