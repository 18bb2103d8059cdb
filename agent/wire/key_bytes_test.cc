#include "wire/key_bytes.h"

#include <gtest/gtest.h>

namespace tokenmem::wire {
namespace {

std::string HexOf(std::string_view bytes) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (char c : bytes) {
    out.push_back(kHex[static_cast<unsigned char>(c) >> 4]);
    out.push_back(kHex[static_cast<unsigned char>(c) & 0xf]);
  }
  return out;
}

TEST(KeyBytesTest, BytesSpellTheHexFormInOrder) {
  BlockKey key{0x0123456789abcdefULL, 0xfedcba9876543210ULL};
  std::string bytes = KeyToBytes(key);
  ASSERT_EQ(bytes.size(), kKeyBytes);
  EXPECT_EQ(HexOf(bytes), key.ToHex());
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x01);
  EXPECT_EQ(static_cast<unsigned char>(bytes[15]), 0x10);
}

TEST(KeyBytesTest, RoundTrips) {
  for (BlockKey key :
       {BlockKey{0, 0}, BlockKey{~0ULL, ~0ULL}, BlockKey{1, 0x8000000000000000ULL}}) {
    auto back = KeyFromBytes(KeyToBytes(key));
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, key);
  }
}

TEST(KeyBytesTest, RejectsWrongLength) {
  EXPECT_EQ(KeyFromBytes("").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(KeyFromBytes(std::string(15, 'a')).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(KeyFromBytes(std::string(17, 'a')).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::wire
