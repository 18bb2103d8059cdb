#include "cluster/rendezvous.h"

#include <gtest/gtest.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <map>
#include <random>
#include <string>
#include <vector>

namespace tokenmem::cluster {
namespace {

std::vector<BlockKey> RandomKeys(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<BlockKey> keys(n);
  for (BlockKey& k : keys) k = BlockKey{rng(), rng()};
  return keys;
}

std::string OwnerOf(const std::vector<std::string>& ids, const BlockKey& key) {
  int i = OwnerIndex(ids, key);
  return i < 0 ? "" : ids[static_cast<size_t>(i)];
}

// The scores decide where blocks live across agents of different builds:
// these values must never change.
TEST(RendezvousTest, ScoresAreFixed) {
  EXPECT_EQ(RendezvousScore("node-a", BlockKey{0, 0}), 0x39043ee5e841301bULL);
  EXPECT_EQ(RendezvousScore("node-b", BlockKey{0x0123456789abcdefULL, 0xfedcba9876543210ULL}),
            0xa1e628b494be3cbcULL);
  EXPECT_EQ(RendezvousScore("", BlockKey{1, 2}), 0xc4846c74c4b320adULL);
  // Different ids and keys give different scores; the same ones the same.
  EXPECT_NE(RendezvousScore("node-a", BlockKey{0, 1}), RendezvousScore("node-a", BlockKey{1, 0}));
  EXPECT_NE(RendezvousScore("node-a", BlockKey{0, 1}), RendezvousScore("node-b", BlockKey{0, 1}));
  EXPECT_EQ(RendezvousScore(std::string(1000, 'x'), BlockKey{3, 4}),
            RendezvousScore(std::string(1000, 'x'), BlockKey{3, 4}));
  EXPECT_NE(RendezvousScore(std::string(1000, 'x'), BlockKey{3, 4}),
            RendezvousScore(std::string(999, 'x'), BlockKey{3, 4}));
}

// The documented layout: XXH3-64 of the id's bytes, then hi and lo big-endian.
TEST(RendezvousTest, ScoreIsXxh3OfIdThenBigEndianKey) {
  EXPECT_EQ(XXH3_64bits("", 0), 0x2D06800538D394C2ULL);  // the published empty-input value
  const unsigned char bytes[] = {'n',  'o',  'd',  'e',  '-',  'b',  0x01, 0x23, 0x45, 0x67, 0x89,
                                 0xab, 0xcd, 0xef, 0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
  EXPECT_EQ(RendezvousScore("node-b", BlockKey{0x0123456789abcdefULL, 0xfedcba9876543210ULL}),
            XXH3_64bits(bytes, sizeof(bytes)));
}

TEST(RendezvousTest, OwnersAreFixedAndIndependentOfOrder) {
  std::vector<std::string> ids = {"node-a", "node-b", "node-c"};
  std::vector<std::string> reversed(ids.rbegin(), ids.rend());
  for (const BlockKey& key : RandomKeys(1000, 7)) {
    EXPECT_EQ(OwnerOf(ids, key), OwnerOf(reversed, key));
  }
  EXPECT_EQ(OwnerOf(ids, BlockKey{0, 0}), "node-c");
  EXPECT_EQ(OwnerOf(ids, BlockKey{0, 1}), "node-c");
  EXPECT_EQ(OwnerOf(ids, BlockKey{0x0123456789abcdefULL, 0xfedcba9876543210ULL}), "node-b");
}

TEST(RendezvousTest, EmptyAndSingle) {
  EXPECT_EQ(OwnerIndex({}, BlockKey{1, 2}), -1);
  std::vector<std::string> one = {"only"};
  for (const BlockKey& key : RandomKeys(100, 1)) EXPECT_EQ(OwnerIndex(one, key), 0);
}

TEST(RendezvousTest, TiesGoToTheSmallestIdThenTheFirstIndex) {
  // The same id twice scores the same: the first index wins.
  std::vector<std::string> twice = {"x", "x"};
  EXPECT_EQ(OwnerIndex(twice, BlockKey{5, 6}), 0);
}

TEST(RendezvousTest, BalancedOverThreeMembers) {
  std::vector<std::string> ids = {"node-a", "node-b", "node-c"};
  std::map<std::string, int> count;
  const auto keys = RandomKeys(30000, 42);
  for (const BlockKey& key : keys) ++count[OwnerOf(ids, key)];
  ASSERT_EQ(count.size(), 3u);
  for (const auto& [id, n] : count) {
    double share = static_cast<double>(n) / keys.size();
    EXPECT_NEAR(share, 1.0 / 3, 0.03) << id;
  }
}

TEST(RendezvousTest, RemovingAMemberMovesOnlyItsKeys) {
  std::vector<std::string> before = {"a", "b", "c", "d"};
  std::vector<std::string> after = {"a", "b", "d"};  // c left
  size_t moved = 0;
  for (const BlockKey& key : RandomKeys(20000, 3)) {
    std::string was = OwnerOf(before, key), is = OwnerOf(after, key);
    if (was != "c") {
      EXPECT_EQ(was, is);
    } else {
      ++moved;
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / 20000, 0.25, 0.03);
}

TEST(RendezvousTest, AddingAMemberMovesAboutOneNthToIt) {
  std::vector<std::string> before = {"a", "b", "c"};
  std::vector<std::string> after = {"a", "b", "c", "e"};
  size_t moved = 0;
  const auto keys = RandomKeys(20000, 4);
  for (const BlockKey& key : keys) {
    std::string was = OwnerOf(before, key), is = OwnerOf(after, key);
    if (was != is) {
      EXPECT_EQ(is, "e");  // keys only move to the newcomer
      ++moved;
    }
  }
  EXPECT_NEAR(static_cast<double>(moved) / keys.size(), 0.25, 0.03);
}

}  // namespace
}  // namespace tokenmem::cluster
