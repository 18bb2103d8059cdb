#include "tokenmem/common/crc32c.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace tokenmem {
namespace {

std::span<const std::byte> Bytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 check value for "123456789".
  EXPECT_EQ(Crc32c(Bytes("123456789")), 0xE3069283u);
  std::vector<std::byte> zeros(32, std::byte{0});
  EXPECT_EQ(Crc32c(zeros), 0x8A9136AAu);
}

TEST(Crc32cTest, ExtendsIncrementally) {
  std::string s = "the quick brown fox jumps over the lazy dog";
  uint32_t whole = Crc32c(Bytes(s));
  uint32_t part = Crc32c(Bytes(s.substr(0, 13)));
  EXPECT_EQ(Crc32c(Bytes(s.substr(13)), part), whole);
}

}  // namespace
}  // namespace tokenmem
