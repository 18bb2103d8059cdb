// Scalar parsers shared by the YAML loader and the command line (internal to
// agent/config). Each parses the whole text or fails with kInvalidArgument
// whose message quotes the text; none names a field (the caller adds it).
// Pure functions, safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"

namespace tokenmem::config {

// A byte size as tokenmem::ParseByteSize reads it ("4096", "64KiB", "1.5GiB", "10GB"), except
// that a whole number with an optional unit is computed exactly in integers, so every uint64_t
// (including what FormatByteSize writes) reads back unchanged.
Result<uint64_t> ParseSize(std::string_view text);
// Decimal digits only (no sign, no spaces), within the type's range.
Result<uint32_t> ParseUint32(std::string_view text);
Result<uint64_t> ParseUint64(std::string_view text);
// Optional '-' then decimal digits, within int's range.
Result<int> ParseInt(std::string_view text);
// A finite decimal number such as 0.1, 1e-3 or 2.
Result<double> ParseDouble(std::string_view text);
// Octal digits, optionally prefixed "0o" ("0660", "660", "0o660"), at most 07777.
Result<uint32_t> ParseOctalMode(std::string_view text);
// true/false, also yes/no and on/off, in lower, Title or UPPER case.
Result<bool> ParseBool(std::string_view text);

// "0660": four octal digits, at least, with the leading zero.
std::string FormatOctalMode(uint32_t mode);
// Shortest text that ParseDouble reads back as exactly `value`.
std::string FormatDouble(double value);

}  // namespace tokenmem::config
