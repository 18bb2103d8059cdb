// Cryptographically strong random bytes (getrandom(2)), for lease secrets.
#pragma once

#include <cstdint>
#include <string>

#include "tokenmem/common/status.h"

namespace tokenmem {

// `bytes` random bytes as lower-case hexadecimal (2 * bytes characters).
Result<std::string> RandomHex(size_t bytes);

}  // namespace tokenmem
