#include "index/shm_index_writer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace tokenmem::index {
namespace {

using layout::FindEntry;
using layout::FindResult;

std::unique_ptr<ShmIndexWriter> MakeIndex(uint64_t blocks) {
  layout::TierGeometry tiers[3] = {{1, 16, 4096, 64}, {}, {1, 0, 4096, 64}};
  auto w = ShmIndexWriter::Create("t", blocks, 4096, tiers);
  EXPECT_TRUE(w.ok()) << w.status().ToString();
  return std::move(w).value();
}

TEST(ShmIndexWriterTest, InsertFindUpdateRemove) {
  auto w = MakeIndex(8);
  EXPECT_EQ(w->capacity(), 16u);
  const auto* header = static_cast<const layout::IndexHeader*>(w->base());
  EXPECT_EQ(header->magic, layout::kIndexMagic);
  EXPECT_EQ(header->tiers[0].slots_per_segment, 16u);
  auto pos =
      w->Insert({1, 2}, {.tier = 0, .slot = 5, .length = 100, .checksum = 7, .generation = 9});
  ASSERT_TRUE(pos.ok());
  layout::EntryView v{};
  ASSERT_EQ(FindEntry(w->base(), 1, 2, &v), FindResult::kFound);
  EXPECT_EQ(v.slot, 5u);
  EXPECT_EQ(v.length, 100u);
  EXPECT_EQ(v.generation, 9u);
  EXPECT_EQ(FindEntry(w->base(), 1, 3, &v), FindResult::kMissing);
  ASSERT_EQ(FindEntry(w->base(), 1, 2, &v), FindResult::kFound);
  w->Update(*pos, {.tier = 2, .slot = 8, .length = 100, .checksum = 7, .generation = 9});
  EXPECT_FALSE(layout::StillValid(w->base(), v));  // the block moved
  ASSERT_EQ(FindEntry(w->base(), 1, 2, &v), FindResult::kFound);
  EXPECT_EQ(v.tier, 2u);
  w->Remove(*pos);
  EXPECT_EQ(FindEntry(w->base(), 1, 2, &v), FindResult::kMissing);
  EXPECT_EQ(w->live(), 0u);
}

TEST(ShmIndexWriterTest, CollidingKeysProbePastTombstones) {
  auto w = MakeIndex(8);
  // Keys with the same home position.
  std::vector<BlockKey> same_home;
  for (uint64_t lo = 0; same_home.size() < 3; ++lo) {
    if (layout::Home(0, lo, w->capacity()) == 3) same_home.push_back({0, lo});
  }
  auto a = w->Insert(same_home[0], {.slot = 1});
  auto b = w->Insert(same_home[1], {.slot = 2});
  ASSERT_TRUE(a.ok() && b.ok());
  w->Remove(*a);
  layout::EntryView v{};
  ASSERT_EQ(FindEntry(w->base(), 0, same_home[1].lo, &v), FindResult::kFound);
  EXPECT_EQ(v.slot, 2u);
  auto c = w->Insert(same_home[2], {.slot = 3});  // reuses the tombstone
  EXPECT_EQ(*c, *a);
  ASSERT_EQ(FindEntry(w->base(), 0, same_home[2].lo, &v), FindResult::kFound);
  EXPECT_EQ(v.slot, 3u);
}

TEST(ShmIndexWriterTest, FullTableIsAnError) {
  auto w = MakeIndex(8);
  for (uint64_t i = 0; i < w->capacity(); ++i) ASSERT_TRUE(w->Insert({9, i}, {}).ok());
  EXPECT_EQ(w->Insert({9, 999}, {}).status().code(), StatusCode::kResourceExhausted);
}

// A reader never sees a torn entry: every consistent view it gets has the
// fields the writer wrote together.
TEST(ShmIndexWriterTest, ConcurrentReaderSeesOnlyWholeEntries) {
  auto w = MakeIndex(64);
  auto pos = w->Insert({5, 5}, {.slot = 0, .length = 0, .checksum = 0, .generation = 0});
  ASSERT_TRUE(pos.ok());
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> seen{0};
  std::thread reader([&] {
    layout::EntryView v{};
    while (!stop.load()) {
      if (FindEntry(w->base(), 5, 5, &v) == FindResult::kFound) {
        ASSERT_EQ(v.length, v.slot);
        ASSERT_EQ(v.checksum, v.slot * 3);
        ASSERT_EQ(v.generation, uint64_t{v.slot} * 7);
        seen.fetch_add(1);
      }
    }
  });
  // Keep writing until the reader has checked many views while writes ran.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (uint32_t i = 1;
       i < 200000 || (seen.load() < 10000 && std::chrono::steady_clock::now() < deadline); ++i) {
    w->Update(*pos, {.slot = i, .length = i, .checksum = i * 3, .generation = uint64_t{i} * 7});
  }
  stop = true;
  reader.join();
  EXPECT_GT(seen.load(), 0u);
}

TEST(ShmIndexWriterTest, AccessedMarks) {
  auto w = MakeIndex(4);
  auto pos = w->Insert({1, 1}, {});
  ASSERT_TRUE(pos.ok());
  EXPECT_FALSE(w->TakeAccessed(*pos));
  auto* accessed = reinterpret_cast<std::atomic<uint8_t>*>(
      const_cast<layout::ClientArea*>(&w->client_area()) + 1);
  accessed[*pos].store(1);
  EXPECT_TRUE(w->TakeAccessed(*pos));
  EXPECT_FALSE(w->TakeAccessed(*pos));
}

}  // namespace
}  // namespace tokenmem::index
