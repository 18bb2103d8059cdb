// Reading small kernel-generated text files (sysfs, procfs). Internal to the
// topology library. Thread-safe.
#pragma once

#include <filesystem>
#include <string>

#include "tokenmem/common/status.h"

namespace tokenmem::topology {

// The whole file. kNotFound when it does not exist, kIoError (with the path
// and the errno text) when it cannot be opened or read.
Result<std::string> ReadSmallFile(const std::filesystem::path& path);

}  // namespace tokenmem::topology
