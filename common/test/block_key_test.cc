#include "tokenmem/common/block_key.h"

#include <gtest/gtest.h>

namespace tokenmem {
namespace {

TEST(BlockKeyTest, HexRoundTrip) {
  BlockKey k{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  EXPECT_EQ(k.ToHex(), "0123456789abcdeffedcba9876543210");
  EXPECT_EQ(*BlockKey::FromHex(k.ToHex()), k);
  EXPECT_EQ(*BlockKey::FromHex("0123456789ABCDEFFEDCBA9876543210"), k);
}

TEST(BlockKeyTest, RejectsBadHex) {
  EXPECT_FALSE(BlockKey::FromHex("abc").ok());
  EXPECT_FALSE(BlockKey::FromHex("0123456789abcdeffedcba987654321g").ok());
}

}  // namespace
}  // namespace tokenmem
