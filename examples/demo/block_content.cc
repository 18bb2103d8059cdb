#include "demo/block_content.h"

#include <algorithm>
#include <cstring>

#include "demo/prng.h"
#include "wire/key_bytes.h"

namespace tokenmem::demo {

std::string BlockContent(const BlockKey& key, size_t bytes) {
  std::string out = wire::KeyToBytes(key);
  out.resize(bytes);
  SplitMix64 rng(key.hi ^ (key.lo * 0x9E3779B97F4A7C15ULL));
  for (size_t i = wire::kKeyBytes; i < bytes; i += 8) {
    uint64_t word = rng.Next();
    std::memcpy(out.data() + i, &word, std::min<size_t>(8, bytes - i));
  }
  return out;
}

bool VerifyBlock(const BlockKey& key, size_t bytes, std::string_view data) {
  return data.size() == bytes && data == BlockContent(key, bytes);
}

}  // namespace tokenmem::demo
