// Byte sizes as people write them: "4096", "64KiB", "1.5GiB", "10GB".
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"

namespace tokenmem {

// Binary suffixes (KiB, MiB, GiB, TiB; also K, M, G, T) are powers of 1024,
// decimal ones (KB, MB, GB, TB) powers of 1000; no suffix or "B" means bytes.
// Fractions are allowed when the result is a whole number of bytes.
Result<uint64_t> ParseByteSize(std::string_view text);

// The largest binary unit that shows the size exactly, e.g. "64MiB", "1000B".
std::string FormatByteSize(uint64_t bytes);

// A rounded human form for reports, e.g. "1.5 GiB".
std::string HumanBytes(double bytes);

}  // namespace tokenmem
