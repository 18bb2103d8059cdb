// Chained 128-bit block keys for the demo's token streams.
//
// key_0 = ChainKey(NamespaceRoot(ns), tokens of block 0), key_i =
// ChainKey(key_{i-1}, tokens of block i): a block's key names its whole
// prefix, so equal prefixes give equal keys and one changed token changes
// every later key. The SDK owns the canonical token hashing (specified in
// docs/token-keys.md, with test vectors shared by C++, C and Python); this
// hash is only the demo's, keeps the demo free of SDK code, and promises
// nothing beyond being deterministic and well mixed.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "tokenmem/common/block_key.h"

namespace tokenmem::demo {

// The chain's seed for a namespace such as "demo-model/rev1/fp16": chains of
// different models never share keys.
BlockKey NamespaceRoot(std::string_view ns);

// The key of a block holding `tokens` that follows the block keyed `parent`.
BlockKey ChainKey(const BlockKey& parent, std::span<const uint32_t> tokens);

// Keys of every full block of `tokens` (a partial last block gets none).
std::vector<BlockKey> ChainKeys(const BlockKey& root, std::span<const uint32_t> tokens,
                                size_t block_tokens);

}  // namespace tokenmem::demo
