#include "tokenmem/common/block_key.h"

#include <cstdio>

namespace tokenmem {

std::string BlockKey::ToHex() const {
  char buf[33];
  std::snprintf(buf, sizeof(buf), "%016llx%016llx", static_cast<unsigned long long>(hi),
                static_cast<unsigned long long>(lo));
  return std::string(buf, 32);
}

namespace {
int HexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

Result<BlockKey> BlockKey::FromHex(std::string_view hex) {
  if (hex.size() != 32) {
    return InvalidArgument("block key must be 32 hexadecimal digits, got " +
                           std::to_string(hex.size()) + " characters");
  }
  BlockKey key;
  for (size_t i = 0; i < 32; ++i) {
    int d = HexDigit(hex[i]);
    if (d < 0)
      return InvalidArgument("block key has a non-hexadecimal character at " + std::to_string(i));
    uint64_t& half = i < 16 ? key.hi : key.lo;
    half = (half << 4) | static_cast<uint64_t>(d);
  }
  return key;
}

}  // namespace tokenmem
