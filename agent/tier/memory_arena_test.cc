#include "tier/memory_arena.h"

#include <gtest/gtest.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>
#include <set>
#include <thread>

namespace tokenmem::tier {
namespace {

constexpr uint64_t kSlot = 64 * 1024;

MemoryArenaOptions Options(uint64_t capacity_slots, uint64_t slots_per_segment) {
  MemoryArenaOptions o;
  o.name = "tokenmem:test:arena";
  o.slot_size = kSlot;
  o.capacity_bytes = capacity_slots * kSlot;
  o.segment_bytes = slots_per_segment * kSlot;
  return o;
}

std::unique_ptr<MemoryArena> MakeArena(const MemoryArenaOptions& options) {
  Result<std::unique_ptr<MemoryArena>> arena = MemoryArena::Create(options);
  EXPECT_TRUE(arena.ok()) << arena.status().ToString();
  return arena.ok() ? std::move(arena).value() : nullptr;
}

TEST(MemoryArenaTest, CreateMapsNothing) {
  auto arena = MakeArena(Options(16, 4));
  ASSERT_NE(arena, nullptr);
  EXPECT_EQ(arena->capacity_slots(), 16u);
  EXPECT_EQ(arena->used_slots(), 0u);
  EXPECT_EQ(arena->free_slots(), 16u);
  EXPECT_EQ(arena->slot_size(), kSlot);
  EXPECT_EQ(arena->slots_per_segment(), 4u);
  EXPECT_TRUE(arena->Segments().empty());
  EXPECT_TRUE(arena->Slot(0).empty());
  EXPECT_FALSE(arena->IsAllocated(0));
}

TEST(MemoryArenaTest, AllocatesUpToCapacityThenIsExhausted) {
  auto arena = MakeArena(Options(10, 4));
  ASSERT_NE(arena, nullptr);
  std::set<uint32_t> slots;
  for (int i = 0; i < 10; ++i) {
    Result<uint32_t> s = arena->Allocate();
    ASSERT_TRUE(s.ok()) << i << ": " << s.status().ToString();
    EXPECT_LT(*s, 10u);
    EXPECT_TRUE(arena->IsAllocated(*s));
    slots.insert(*s);
  }
  EXPECT_EQ(slots.size(), 10u);
  EXPECT_EQ(arena->used_slots(), 10u);
  EXPECT_EQ(arena->free_slots(), 0u);

  Result<uint32_t> more = arena->Allocate();
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(arena->used_slots(), 10u);
}

TEST(MemoryArenaTest, SegmentsAppearLazilyAndTheLastIsSmaller) {
  auto arena = MakeArena(Options(10, 4));
  ASSERT_NE(arena, nullptr);
  const size_t expected_segments[] = {1, 1, 1, 1, 2, 2, 2, 2, 3, 3};
  for (size_t want : expected_segments) {
    ASSERT_TRUE(arena->Allocate().ok());
    EXPECT_EQ(arena->Segments().size(), want);
  }
  const std::vector<SegmentView> views = arena->Segments();
  ASSERT_EQ(views.size(), 3u);
  const uint32_t firsts[] = {0, 4, 8};
  const uint32_t counts[] = {4, 4, 2};
  std::set<int> fds;
  for (size_t i = 0; i < views.size(); ++i) {
    EXPECT_EQ(views[i].first_slot, firsts[i]);
    EXPECT_EQ(views[i].slot_count, counts[i]);
    EXPECT_EQ(views[i].size, counts[i] * kSlot);
    EXPECT_GE(views[i].fd, 0);
    fds.insert(views[i].fd);
  }
  EXPECT_EQ(fds.size(), 3u);
}

TEST(MemoryArenaTest, SegmentSizeIsRoundedDownToSlotsButHoldsAtLeastOne) {
  MemoryArenaOptions o = Options(8, 0);
  o.segment_bytes = 3 * kSlot + 100;
  auto arena = MakeArena(o);
  ASSERT_NE(arena, nullptr);
  EXPECT_EQ(arena->slots_per_segment(), 3u);

  o.segment_bytes = kSlot / 2;
  arena = MakeArena(o);
  ASSERT_NE(arena, nullptr);
  EXPECT_EQ(arena->slots_per_segment(), 1u);

  o.segment_bytes = 1ull << 40;  // more than the whole capacity
  arena = MakeArena(o);
  ASSERT_NE(arena, nullptr);
  EXPECT_EQ(arena->slots_per_segment(), 8u);
  ASSERT_TRUE(arena->Allocate().ok());
  ASSERT_EQ(arena->Segments().size(), 1u);
  EXPECT_EQ(arena->Segments()[0].size, 8 * kSlot);
}

TEST(MemoryArenaTest, FreedSlotsAreReusedLastInFirstOut) {
  auto arena = MakeArena(Options(8, 4));
  ASSERT_NE(arena, nullptr);
  std::vector<uint32_t> s;
  for (int i = 0; i < 4; ++i) s.push_back(arena->Allocate().value());
  arena->Free(s[1]);
  arena->Free(s[3]);
  EXPECT_EQ(arena->used_slots(), 2u);
  EXPECT_FALSE(arena->IsAllocated(s[1]));
  EXPECT_EQ(arena->Allocate().value(), s[3]);
  EXPECT_EQ(arena->Allocate().value(), s[1]);
  EXPECT_EQ(arena->used_slots(), 4u);
  // With the free list empty, the next never-used slot comes next.
  EXPECT_EQ(arena->Allocate().value(), 4u);
}

TEST(MemoryArenaTest, FreeingAFullArenaMakesRoomAgain) {
  auto arena = MakeArena(Options(4, 2));
  ASSERT_NE(arena, nullptr);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(arena->Allocate().ok());
  ASSERT_FALSE(arena->Allocate().ok());
  arena->Free(2);
  Result<uint32_t> again = arena->Allocate();
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(*again, 2u);
  EXPECT_EQ(arena->Segments().size(), 2u);  // reuse maps nothing new
}

TEST(MemoryArenaTest, GenerationsBumpOnEveryFree) {
  auto arena = MakeArena(Options(4, 4));
  ASSERT_NE(arena, nullptr);
  const uint32_t a = arena->Allocate().value();
  const uint32_t b = arena->Allocate().value();
  EXPECT_EQ(arena->Generation(a), 0u);
  EXPECT_EQ(arena->Generation(b), 0u);
  arena->Free(a);
  EXPECT_EQ(arena->Generation(a), 1u);
  EXPECT_EQ(arena->Generation(b), 0u);
  ASSERT_EQ(arena->Allocate().value(), a);
  EXPECT_EQ(arena->Generation(a), 1u);  // allocation does not bump
  arena->Free(a);
  EXPECT_EQ(arena->Generation(a), 2u);
  EXPECT_EQ(arena->Generation(1000), 0u);  // out of range
}

TEST(MemoryArenaTest, FreeingASlotThatIsNotAllocatedIsIgnored) {
  auto arena = MakeArena(Options(4, 4));
  ASSERT_NE(arena, nullptr);
  const uint32_t a = arena->Allocate().value();
  arena->Free(a);
  EXPECT_DEBUG_DEATH(arena->Free(a), "not allocated");
  EXPECT_DEBUG_DEATH(arena->Free(3), "not allocated");
  EXPECT_DEBUG_DEATH(arena->Free(99), "not allocated");
  EXPECT_EQ(arena->used_slots(), 0u);
  EXPECT_EQ(arena->Generation(a), 1u);
  // The free list holds the slot once: two allocations give two slots.
  const uint32_t x = arena->Allocate().value();
  const uint32_t y = arena->Allocate().value();
  EXPECT_NE(x, y);
}

TEST(MemoryArenaTest, SlotContentsAreIndependentAndMatchTheSegmentFds) {
  auto arena = MakeArena(Options(6, 4));
  ASSERT_NE(arena, nullptr);
  for (uint32_t i = 0; i < 6; ++i) {
    const uint32_t s = arena->Allocate().value();
    std::span<std::byte> bytes = arena->Slot(s);
    ASSERT_EQ(bytes.size(), kSlot);
    std::memset(bytes.data(), static_cast<int>('a' + s), bytes.size());
  }
  for (uint32_t s = 0; s < 6; ++s) {
    std::span<std::byte> bytes = arena->Slot(s);
    EXPECT_TRUE(std::all_of(bytes.begin(), bytes.end(),
                            [&](std::byte b) { return b == static_cast<std::byte>('a' + s); }))
        << "slot " << s;
  }
  // A client mapping a segment's fd finds slot s at (s - first_slot) * slot_size.
  for (const SegmentView& v : arena->Segments()) {
    void* p = ::mmap(nullptr, v.size, PROT_READ, MAP_SHARED, v.fd, 0);
    ASSERT_NE(p, MAP_FAILED);
    const auto* base = static_cast<const std::byte*>(p);
    for (uint32_t s = v.first_slot; s < v.first_slot + v.slot_count; ++s) {
      const std::byte* slot = base + (s - v.first_slot) * kSlot;
      EXPECT_EQ(slot[0], static_cast<std::byte>('a' + s));
      EXPECT_EQ(slot[kSlot - 1], static_cast<std::byte>('a' + s));
    }
    ::munmap(p, v.size);
  }
}

TEST(MemoryArenaTest, ReadersSeeStableSlotsWhileSegmentsAreAdded) {
  auto arena = MakeArena(Options(64, 1));
  ASSERT_NE(arena, nullptr);
  const uint32_t first = arena->Allocate().value();
  std::memcpy(arena->Slot(first).data(), "stable", 6);
  std::atomic<bool> stop{false};
  std::thread reader([&] {
    while (!stop.load()) {
      const uint64_t g1 = arena->Generation(first);
      char copy[6];
      std::memcpy(copy, arena->Slot(first).data(), sizeof(copy));
      // (A reader of slots that do change puts an acquire fence here; this one
      // is never rewritten, which keeps the test clean under ThreadSanitizer.)
      EXPECT_EQ(arena->Generation(first), g1);
      EXPECT_EQ(std::memcmp(copy, "stable", 6), 0);
    }
  });
  for (int i = 1; i < 64; ++i) ASSERT_TRUE(arena->Allocate().ok());
  stop.store(true);
  reader.join();
  EXPECT_EQ(arena->Segments().size(), 64u);
}

TEST(MemoryArenaTest, BoundArenaPlacesSlotsOnItsNode) {
  if (!std::filesystem::exists("/sys/devices/system/node/node0")) {
    GTEST_SKIP() << "no NUMA node 0 in sysfs";
  }
  MemoryArenaOptions o = Options(4, 2);
  o.numa_nodes = {0};
  auto arena = MakeArena(o);
  ASSERT_NE(arena, nullptr);
  for (int i = 0; i < 4; ++i) {
    const uint32_t s = arena->Allocate().value();
    Result<int> node = NodeOfAddress(arena->Slot(s).data());
    ASSERT_TRUE(node.ok()) << node.status().ToString();
    EXPECT_EQ(*node, 0);
  }
}

TEST(MemoryArenaTest, SegmentThatCannotBeCreatedIsAnIoErrorAndChangesNothing) {
  MemoryArenaOptions o;
  o.name = "tokenmem:test:too-big";
  o.slot_size = 1ull << 30;
  o.capacity_bytes = 1ull << 44;  // 16 TiB in one segment: more than this machine has
  o.segment_bytes = o.capacity_bytes;
  auto arena = MakeArena(o);
  ASSERT_NE(arena, nullptr);
  Result<uint32_t> s = arena->Allocate();
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kIoError) << s.status().ToString();
  EXPECT_NE(s.status().message().find("tokenmem:test:too-big"), std::string::npos);
  EXPECT_EQ(arena->used_slots(), 0u);
  EXPECT_TRUE(arena->Segments().empty());
}

TEST(MemoryArenaTest, InvalidOptionsAreRejected) {
  const auto code_of = [](const MemoryArenaOptions& o) {
    return MemoryArena::Create(o).status().code();
  };
  MemoryArenaOptions o = Options(4, 4);
  o.slot_size = 4096 + 512;  // not a multiple of 4096
  o.capacity_bytes = 4 * o.slot_size;
  EXPECT_EQ(code_of(o), StatusCode::kInvalidArgument);

  o = Options(4, 4);
  o.slot_size = 0;
  EXPECT_EQ(code_of(o), StatusCode::kInvalidArgument);

  o = Options(4, 4);
  o.capacity_bytes = kSlot - 1;  // smaller than one slot
  EXPECT_EQ(code_of(o), StatusCode::kInvalidArgument);
  Result<std::unique_ptr<MemoryArena>> r = MemoryArena::Create(o);
  EXPECT_NE(r.status().message().find("smaller than one slot"), std::string::npos)
      << r.status().ToString();

  o = Options(4, 4);
  o.name.clear();
  EXPECT_EQ(code_of(o), StatusCode::kInvalidArgument);

  o = Options(4, 4);
  o.slot_size = 4096;
  o.capacity_bytes = 4096ull << 32;  // 2^32 slots
  EXPECT_EQ(code_of(o), StatusCode::kInvalidArgument);

  o = Options(4, 4);
  o.numa_nodes = {-1};
  EXPECT_EQ(code_of(o), StatusCode::kInvalidArgument);
  if (std::filesystem::exists("/sys/devices/system/node/has_memory")) {
    o.numa_nodes = {63};
    EXPECT_EQ(code_of(o), StatusCode::kInvalidArgument);
  }
}

}  // namespace
}  // namespace tokenmem::tier
