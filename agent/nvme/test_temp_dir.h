// Test helper for the NVMe tier: the shared TempDir plus a probe for whether
// its file system takes O_DIRECT. Tests only.
#pragma once

#include <fcntl.h>
#include <unistd.h>

#include <filesystem>

#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::nvme::testing {

// False when the file system holding `dir` refuses O_DIRECT (e.g. an old
// tmpfs): the tests then skip rather than fail for a reason outside the code.
// Creates and removes `dir`/direct-io-probe.
inline bool SupportsDirectIo(const std::filesystem::path& dir) {
  const std::filesystem::path probe = dir / "direct-io-probe";
  const int fd = ::open(probe.c_str(), O_RDWR | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
  if (fd < 0) return false;
  ::close(fd);
  ::unlink(probe.c_str());
  return true;
}

}  // namespace tokenmem::nvme::testing
