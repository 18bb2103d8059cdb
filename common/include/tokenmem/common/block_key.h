// BlockKey: the 128-bit name of a stored block.
//
// Keys are opaque to the store. The SDK derives them by chained hashing of
// token IDs; tools may also type them as 32 hexadecimal digits.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"

namespace tokenmem {

struct BlockKey {
  uint64_t hi = 0;
  uint64_t lo = 0;

  friend bool operator==(const BlockKey&, const BlockKey&) = default;
  friend auto operator<=>(const BlockKey&, const BlockKey&) = default;

  // 32 lower-case hexadecimal digits, hi first.
  std::string ToHex() const;
  // Accepts exactly 32 hexadecimal digits (either case).
  static Result<BlockKey> FromHex(std::string_view hex);
};

struct BlockKeyHash {
  size_t operator()(const BlockKey& k) const noexcept {
    // Keys are hashes already; mixing the halves is enough.
    return static_cast<size_t>(k.lo ^ (k.hi * 0x9E3779B97F4A7C15ULL));
  }
};

}  // namespace tokenmem
