// The on-disk definition of a pool (<nvme root>/<pool>/pool.meta), so a
// restarted agent knows which pools its NVMe segments belong to.
//
// Format: text lines "key value"; '#' starts a comment; "format 1" first.
// "scope" was added later within format 1: a file without it reads as local.
// Written to a temporary file, fsync'ed and renamed, so a crash leaves the
// old or the new file, never half of one.
#pragma once

#include <filesystem>

#include "pool/pool_spec.h"
#include "tokenmem/common/status.h"

namespace tokenmem::pool {

inline constexpr const char* kPoolMetaFile = "pool.meta";

Status WritePoolMeta(const std::filesystem::path& pool_dir, const PoolSpec& spec);
// NOT_FOUND when the file is absent; INVALID_ARGUMENT (naming the line) when malformed.
Result<PoolSpec> ReadPoolMeta(const std::filesystem::path& pool_dir);

}  // namespace tokenmem::pool
