// Whole-file reads and writes for put and get; "-" means stdin.
// Thread-safe (no shared state).
#pragma once

#include <string>

#include "tokenmem/common/status.h"

namespace tokenmem::cli {

// The bytes of `path`, or of standard input when `path` is "-".
// kIoError (with the path and errno text) when it cannot be read.
Result<std::string> ReadWholeFile(const std::string& path);

// Creates or truncates `path` (mode 0644 before umask) and writes `data`.
// kIoError when any step fails; the file may then hold part of the data.
Status WriteWholeFile(const std::string& path, const std::string& data);

}  // namespace tokenmem::cli
