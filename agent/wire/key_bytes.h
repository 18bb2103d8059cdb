// Block keys as the control protocol carries them: 16 bytes, hi then lo,
// each half big-endian, so the bytes read in order spell BlockKey::ToHex().
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::wire {

inline constexpr size_t kKeyBytes = 16;

// The 16-byte wire form of `key`.
std::string KeyToBytes(const BlockKey& key);

// The key whose wire form is `bytes`; kInvalidArgument unless exactly 16 bytes.
Result<BlockKey> KeyFromBytes(std::string_view bytes);

}  // namespace tokenmem::wire
