// The lease file: the agent's leases on disk, so that clients keep their
// leases across an agent restart (a pod's lease comes from the device plugin
// once, at container start).
//
// One line per lease: "v2", id, secret, quota, read-only, created, pools
// (comma-separated), owner (hex), namespace (hex), namespace pending (0/1),
// separated by tabs. "v1" lines (without the last two) are still read. The file holds secrets:
// it is created with mode 0600 and rewritten whole (temporary file, fsync,
// rename), so a crash leaves the old or the new list.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "pool/lease_table.h"
#include "tokenmem/common/status.h"

namespace tokenmem::pool {

struct StoredLease {
  std::string id;
  std::string secret;
  LeaseOptions options;
  int64_t created_unix_s = 0;
};

// NOT_FOUND when the file does not exist; INVALID_ARGUMENT naming the line
// when it is malformed.
Result<std::vector<StoredLease>> ReadLeaseFile(const std::filesystem::path& path);
Status WriteLeaseFile(const std::filesystem::path& path, const std::vector<StoredLease>& leases);

}  // namespace tokenmem::pool
