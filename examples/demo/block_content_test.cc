#include "demo/block_content.h"

#include <gtest/gtest.h>

#include "wire/key_bytes.h"

namespace tokenmem::demo {
namespace {

TEST(BlockContentTest, IsAPureFunctionOfKeyAndLength) {
  BlockKey k{1, 2};
  std::string a = BlockContent(k, 4096);
  ASSERT_EQ(a.size(), 4096u);
  EXPECT_EQ(a, BlockContent(k, 4096));
  EXPECT_EQ(a.substr(0, 16), wire::KeyToBytes(k));
  EXPECT_NE(a, BlockContent(BlockKey{1, 3}, 4096));
  EXPECT_EQ(BlockContent(k, 100), a.substr(0, 100));
  EXPECT_EQ(BlockContent(k, 5), a.substr(0, 5));
  EXPECT_EQ(BlockContent(k, 0), "");
}

TEST(BlockContentTest, VerificationCatchesAnyChange) {
  BlockKey k{0xabc, 0xdef};
  std::string data = BlockContent(k, 1000);
  EXPECT_TRUE(VerifyBlock(k, 1000, data));
  for (size_t pos : {size_t{0}, size_t{15}, size_t{16}, size_t{999}}) {
    std::string bad = data;
    bad[pos] ^= 0x01;
    EXPECT_FALSE(VerifyBlock(k, 1000, bad)) << pos;
  }
  EXPECT_FALSE(VerifyBlock(k, 1000, data.substr(0, 999)));
  EXPECT_FALSE(VerifyBlock(k, 1000, data + "x"));
  EXPECT_FALSE(VerifyBlock(BlockKey{0xabc, 0xdee}, 1000, data));
}

}  // namespace
}  // namespace tokenmem::demo
