#include "wire/key_bytes.h"

#include <cstdint>

namespace tokenmem::wire {

namespace {

void AppendBigEndian(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian(std::string_view b) {
  uint64_t v = 0;
  for (char c : b) v = (v << 8) | static_cast<unsigned char>(c);
  return v;
}

}  // namespace

std::string KeyToBytes(const BlockKey& key) {
  std::string out;
  out.reserve(kKeyBytes);
  AppendBigEndian(key.hi, &out);
  AppendBigEndian(key.lo, &out);
  return out;
}

Result<BlockKey> KeyFromBytes(std::string_view bytes) {
  if (bytes.size() != kKeyBytes) {
    return InvalidArgument("a block key is 16 bytes on the wire, got " +
                           std::to_string(bytes.size()));
  }
  return BlockKey{ReadBigEndian(bytes.substr(0, 8)), ReadBigEndian(bytes.substr(8, 8))};
}

}  // namespace tokenmem::wire
