#include "http/counter_carry.h"

#include <gtest/gtest.h>

#include <array>
#include <cstring>
#include <type_traits>

namespace tokenmem::http {
namespace {

pool::PoolCounters Counters(uint64_t puts, uint64_t dram_hits) {
  pool::PoolCounters c;
  c.puts = puts;
  c.tiers[0].hits = dram_hits;
  return c;
}

TEST(CounterCarryTest, AddCountersCoversEveryField) {
  // PoolCounters is all uint64_t: a field that ForEachCounter forgets stays
  // zero here and the bytes differ.
  static_assert(std::is_trivially_copyable_v<pool::PoolCounters>);
  constexpr size_t kWords = sizeof(pool::PoolCounters) / sizeof(uint64_t);
  static_assert(kWords * sizeof(uint64_t) == sizeof(pool::PoolCounters));
  std::array<uint64_t, kWords> words{};
  for (size_t i = 0; i < kWords; ++i) words[i] = i + 1;
  pool::PoolCounters ones{};
  std::memcpy(static_cast<void*>(&ones), words.data(), sizeof(ones));
  pool::PoolCounters sum{};
  AddCounters(&sum, ones);
  EXPECT_EQ(std::memcmp(&sum, &ones, sizeof(sum)), 0)
      << "a PoolCounters field is missing from ForEachCounter in counter_carry.cc";

  for (size_t i = 0; i < kWords; ++i) {
    auto lower_words = words;
    lower_words[i] -= 1;
    pool::PoolCounters lower{};
    std::memcpy(static_cast<void*>(&lower), lower_words.data(), sizeof(lower));
    EXPECT_TRUE(AnyCounterDecreased(ones, lower)) << "field " << i;
    EXPECT_FALSE(AnyCounterDecreased(lower, ones)) << "field " << i;
  }
}

TEST(CounterCarryTest, SameObjectPassesCountersThrough) {
  CounterCarry carry;
  EXPECT_EQ(carry.Update("a", false, Counters(3, 1)).puts, 3u);  // first sight
  EXPECT_EQ(carry.Update("a", true, Counters(5, 2)).puts, 5u);
  EXPECT_EQ(carry.Update("a", true, Counters(5, 2)).tiers[0].hits, 2u);
}

TEST(CounterCarryTest, ANewObjectContinuesFromTheOldTotals) {
  CounterCarry carry;
  carry.Update("a", false, Counters(10, 4));
  pool::PoolCounters out = carry.Update("a", false, Counters(1, 0));  // recreated
  EXPECT_EQ(out.puts, 11u);
  EXPECT_EQ(out.tiers[0].hits, 4u);
  out = carry.Update("a", true, Counters(3, 2));
  EXPECT_EQ(out.puts, 13u);
  EXPECT_EQ(out.tiers[0].hits, 6u);
}

TEST(CounterCarryTest, ACounterGoingDownIsTakenAsANewObject) {
  CounterCarry carry;
  carry.Update("a", true, Counters(10, 4));
  pool::PoolCounters out = carry.Update("a", true, Counters(12, 1));
  EXPECT_EQ(out.puts, 22u);
  EXPECT_EQ(out.tiers[0].hits, 5u);
}

TEST(CounterCarryTest, AbsentNamesKeepTheirTotalsForALaterPool) {
  CounterCarry carry;
  carry.Update("a", false, Counters(7, 7));
  carry.Update("b", false, Counters(1, 1));
  carry.Absent("a");
  carry.Absent("a");  // counted once
  carry.Absent("never-seen");
  EXPECT_EQ(carry.size(), 2u);
  pool::PoolCounters out = carry.Update("a", false, Counters(2, 0));
  EXPECT_EQ(out.puts, 9u);
  EXPECT_EQ(out.tiers[0].hits, 7u);
  EXPECT_EQ(carry.Update("b", true, Counters(1, 1)).puts, 1u);
}

TEST(CounterCarryTest, ForgetsTheLongestAbsentNamesBeyondTheLimit) {
  CounterCarry carry(2);
  carry.Update("old", false, Counters(1, 0));
  carry.Update("newer", false, Counters(2, 0));
  carry.Absent("old");
  carry.Absent("newer");
  carry.Update("live", false, Counters(3, 0));  // third name: "old" goes
  EXPECT_EQ(carry.size(), 2u);
  EXPECT_EQ(carry.Update("newer", false, Counters(0, 0)).puts, 2u);  // still carried
  EXPECT_EQ(carry.Update("old", false, Counters(0, 0)).puts, 0u);    // forgotten
}

}  // namespace
}  // namespace tokenmem::http
