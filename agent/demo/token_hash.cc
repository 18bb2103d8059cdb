#include "demo/token_hash.h"

#include <bit>

namespace tokenmem::demo {

namespace {

// Odd constants with well-spread bits (golden ratio and friends).
constexpr uint64_t kM1 = 0x9E3779B97F4A7C15ULL;
constexpr uint64_t kM2 = 0xD6E8FEB86659FD93ULL;
constexpr uint64_t kM3 = 0xA0761D6478BD642FULL;
constexpr uint64_t kM4 = 0xE7037ED1A0B428DBULL;

// A bijective 64-bit finalizer: xor-shifts and multiplies until every input
// bit reaches every output bit.
uint64_t Finalize(uint64_t x) {
  x ^= x >> 31;
  x *= kM2;
  x ^= x >> 29;
  x *= kM3;
  x ^= x >> 32;
  return x;
}

struct State {
  uint64_t a;
  uint64_t b;

  // Two lanes that feed each other, so a token affects both halves.
  void Absorb(uint64_t word) {
    uint64_t k = (word + kM4) * kM1;
    k = std::rotl(k, 31) * kM2;
    a ^= k;
    a = std::rotl(a, 27) + b;
    a = a * 5 + 0x52DCE729ULL;
    b ^= std::rotl(k, 43) * kM3;
    b = std::rotl(b, 33) + a;
    b = b * 9 + 0x38495AB5ULL;
  }

  BlockKey Finish(uint64_t length) {
    a ^= length;
    b ^= length * kM4;
    a += b;
    b += a;
    a = Finalize(a);
    b = Finalize(b);
    a += b;
    b += a;
    return {a, b};
  }
};

}  // namespace

BlockKey NamespaceRoot(std::string_view ns) {
  State s{0x746F6B656E6D656DULL /* "tokenmem" */, kM1};
  for (unsigned char c : ns) s.Absorb(c);
  return s.Finish(ns.size());
}

BlockKey ChainKey(const BlockKey& parent, std::span<const uint32_t> tokens) {
  State s{parent.hi ^ kM3, parent.lo ^ kM4};
  for (uint32_t t : tokens) s.Absorb(t);
  return s.Finish(tokens.size());
}

std::vector<BlockKey> ChainKeys(const BlockKey& root, std::span<const uint32_t> tokens,
                                size_t block_tokens) {
  std::vector<BlockKey> keys;
  if (block_tokens == 0) return keys;
  keys.reserve(tokens.size() / block_tokens);
  BlockKey parent = root;
  for (size_t i = 0; i + block_tokens <= tokens.size(); i += block_tokens) {
    parent = ChainKey(parent, tokens.subspan(i, block_tokens));
    keys.push_back(parent);
  }
  return keys;
}

}  // namespace tokenmem::demo
