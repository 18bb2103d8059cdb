// The demo's stand-in for KV data: a block's bytes are a pure function of
// its key and length, so a reader can check every byte it gets back.
// Layout: the key's 16 wire bytes, then a pseudo-random stream seeded by the
// key (shorter blocks keep a prefix of that). Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "tokenmem/common/block_key.h"

namespace tokenmem::demo {

// The `bytes` bytes of the block keyed `key`.
std::string BlockContent(const BlockKey& key, size_t bytes);

// True when `data` is exactly BlockContent(key, bytes).
bool VerifyBlock(const BlockKey& key, size_t bytes, std::string_view data);

}  // namespace tokenmem::demo
