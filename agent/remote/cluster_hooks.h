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
  // On a local miss: the block from its owner (stored here too), written
  // to `out` (block_size bytes); its length, or NOT_FOUND.
  virtual Result<size_t> FetchFromOwner(pool::Pool& pool, const BlockKey& key,
                                        std::span<std::byte> out) = 0;
};

}  // namespace tokenmem::remote
