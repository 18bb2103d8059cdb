// RunContainer: starts a program the way a container runtime would with a
// device plugin's Allocate answer, as far as a test can: with exactly the
// given environment (nothing inherited) and the given mounts.
//
// Mounts: the child first tries a private mount namespace (unshare
// CLONE_NEWNS, needs root or CAP_SYS_ADMIN) and bind-mounts each host path
// at its container path there (read-only when asked), creating the target
// directory. If that cannot be had, each container path becomes a symlink
// to its host path instead (so the container path must be one the test
// owns, e.g. under its temporary directory). The first line of the output
// says which: "mounts: private namespace" or "mounts: host paths".
//
// Not thread-safe with other forks that share pipes; call from one thread.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin::testing {

struct MountSpec {
  std::string container_path;
  std::string host_path;
  bool read_only = true;
};

struct ContainerRun {
  int exit_code = -1;           // exit status, or 128 + signal
  bool private_mounts = false;  // the mounts were made in a private namespace
  std::string output;           // stdout and stderr together
};

// Runs `binary` with `args` (argv[1..]). kIoError when it cannot be
// started; kUnavailable when it runs past `timeout` (it is then killed).
Result<ContainerRun> RunContainer(const std::string& binary, const std::vector<std::string>& args,
                                  const std::map<std::string, std::string>& env,
                                  const std::vector<MountSpec>& mounts,
                                  std::chrono::milliseconds timeout);

}  // namespace tokenmem::device_plugin::testing
