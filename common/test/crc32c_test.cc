#include "tokenmem/common/crc32c.h"

#include <gtest/gtest.h>

#include <random>
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

// One bit at a time, straight from the definition: the reference for the
// fast paths (three interleaved streams, tails of every length).
uint32_t BitwiseCrc32c(const std::byte* p, size_t n, uint32_t crc) {
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) {
    crc ^= static_cast<uint8_t>(p[i]);
    for (int k = 0; k < 8; ++k) crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
  }
  return ~crc;
}

TEST(Crc32cTest, MatchesBitwiseReferenceForRandomLengthsAndAlignments) {
  std::mt19937_64 rng(42);
  std::vector<std::byte> buffer(3 * 8192 * 3 + 64);
  for (auto& b : buffer) b = static_cast<std::byte>(rng());
  // Lengths around the stream boundaries (3 x 256 and 3 x 8192 bytes) and
  // random ones, at every alignment modulo 8, from random starting values.
  std::vector<size_t> lengths = {0,    1,    7,     8,     9,     767,   768,   769,         1535,
                                 1536, 4096, 24575, 24576, 24577, 49152, 49153, 3 * 8192 * 3};
  for (int i = 0; i < 60; ++i) lengths.push_back(rng() % (buffer.size() - 8));
  for (size_t length : lengths) {
    for (size_t offset = 0; offset < 8; ++offset) {
      const uint32_t seed = static_cast<uint32_t>(rng());
      const std::byte* p = buffer.data() + offset;
      ASSERT_EQ(Crc32c({p, length}, seed), BitwiseCrc32c(p, length, seed))
          << "length " << length << " offset " << offset;
    }
  }
}

TEST(Crc32cTest, SplitAnywhereGivesTheWholeValue) {
  std::mt19937_64 rng(9);
  std::vector<std::byte> data(100000);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  const uint32_t whole = Crc32c(data);
  EXPECT_EQ(whole, BitwiseCrc32c(data.data(), data.size(), 0));
  for (int i = 0; i < 50; ++i) {
    const size_t cut = rng() % data.size();
    const uint32_t first = Crc32c({data.data(), cut});
    EXPECT_EQ(Crc32c({data.data() + cut, data.size() - cut}, first), whole) << "cut " << cut;
  }
}

}  // namespace
}  // namespace tokenmem
