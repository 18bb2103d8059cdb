// ClusterHooks: what the cluster adds for pools with scope: cluster
// (implemented by ClusterRouter, cluster_router.h). Both data paths, the
// remote one (RequestHandler) and the local one (LocalServer), call them;
// this header is a pure interface so that the local path needs no UCX.
// Absent hooks: every pool behaves as scope: local.
//
// Thread-safe implementations only: the hooks are called from many
// sessions at once.
#pragma once

#include <cstddef>
#include <span>

#include "pool/pool.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::remote {

class ClusterHooks {
 public:
  virtual ~ClusterHooks() = default;
  // After a put was stored here; forwards it to the key's owner. `data`
  // is copied before this returns.
  virtual void OnStored(const pool::Pool& pool, const BlockKey& key,
                        std::span<const std::byte> data) = 0;
  // One local miss to ask the key's owner for.
  struct OwnerFetch {
    BlockKey key;
    std::span<std::byte> out;  // block_size bytes
    // Filled in: the block's length (it is in `out`, and stored here too),
    // or NOT_FOUND (no owner has it, or the owner could not be asked).
    Result<size_t> length = Status(StatusCode::kNotFound, "not asked");
  };
  // On local misses: asks each key's owner, one request per owner for all
  // its keys (not one per key).
  virtual void FetchFromOwners(pool::Pool& pool, std::span<OwnerFetch> fetches) = 0;
};

}  // namespace tokenmem::remote
