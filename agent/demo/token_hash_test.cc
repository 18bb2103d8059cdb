#include "demo/token_hash.h"

#include <gtest/gtest.h>

#include <bit>
#include <set>

namespace tokenmem::demo {
namespace {

TEST(TokenHashTest, IsDeterministic) {
  std::vector<uint32_t> tokens = {1, 2, 3, 4};
  BlockKey root = NamespaceRoot("m");
  EXPECT_EQ(ChainKey(root, tokens), ChainKey(root, tokens));
  EXPECT_EQ(NamespaceRoot("demo-model/rev1/fp16"), NamespaceRoot("demo-model/rev1/fp16"));
}

TEST(TokenHashTest, DependsOnNamespaceParentOrderAndLength) {
  std::vector<uint32_t> a = {1, 2, 3, 4};
  std::vector<uint32_t> swapped = {2, 1, 3, 4};
  std::vector<uint32_t> shorter = {1, 2, 3};
  std::vector<uint32_t> zero_tail = {1, 2, 3, 0};
  BlockKey r1 = NamespaceRoot("model-a"), r2 = NamespaceRoot("model-b");
  std::set<BlockKey> keys = {ChainKey(r1, a),         ChainKey(r2, a),
                             ChainKey(r1, swapped),   ChainKey(r1, shorter),
                             ChainKey(r1, zero_tail), ChainKey(BlockKey{}, a)};
  EXPECT_EQ(keys.size(), 6u);
  EXPECT_NE(NamespaceRoot(""), NamespaceRoot(std::string_view("\0", 1)));
}

TEST(TokenHashTest, ChainsNameWholePrefixes) {
  std::vector<uint32_t> t(40);
  for (size_t i = 0; i < t.size(); ++i) t[i] = static_cast<uint32_t>(i * 7);
  BlockKey root = NamespaceRoot("m");
  auto keys = ChainKeys(root, t, 16);
  ASSERT_EQ(keys.size(), 2u);  // the partial third block has no key
  EXPECT_EQ(keys[0], ChainKey(root, std::span(t).subspan(0, 16)));
  EXPECT_EQ(keys[1], ChainKey(keys[0], std::span(t).subspan(16, 16)));

  // Changing a token of block 0 changes every later key; block 1's tokens alone do not decide it.
  auto changed = t;
  changed[3] ^= 1;
  auto keys2 = ChainKeys(root, changed, 16);
  EXPECT_NE(keys2[0], keys[0]);
  EXPECT_NE(keys2[1], keys[1]);
  EXPECT_TRUE(ChainKeys(root, t, 0).empty());
}

TEST(TokenHashTest, OneBitFlipsAboutHalfTheOutputBits) {
  // Avalanche: over many single-bit input changes the output distance should
  // average near 64 of 128 bits, and never be tiny.
  BlockKey root = NamespaceRoot("avalanche");
  double total = 0;
  int trials = 0;
  int smallest = 128;
  for (uint32_t base = 0; base < 64; ++base) {
    std::vector<uint32_t> t = {base * 2654435761u, base, 12345, 0};
    BlockKey k = ChainKey(root, t);
    for (int word = 0; word < 4; ++word) {
      for (int bit = 0; bit < 32; bit += 3) {
        auto u = t;
        u[word] ^= 1u << bit;
        BlockKey k2 = ChainKey(root, u);
        int d = std::popcount(k.hi ^ k2.hi) + std::popcount(k.lo ^ k2.lo);
        total += d;
        smallest = std::min(smallest, d);
        ++trials;
      }
    }
  }
  double mean = total / trials;
  EXPECT_GT(mean, 60.0);
  EXPECT_LT(mean, 68.0);
  EXPECT_GT(smallest, 30);
}

}  // namespace
}  // namespace tokenmem::demo
