// Pool::Impl: the state behind a tokenmem::Pool (internal to the SDK and
// its tests). See tokenmem/client.h for the behaviour of each call.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <vector>

#include "local/pool_map.h"
#include "local/session.h"
#include "tokenmem/client.h"

namespace tokenmem {

struct Pool::Impl {
  // Per-call tallies, added to the client area once per call.
  struct Tally {
    uint64_t hits[layout::kTierCount] = {};
    uint64_t bytes[layout::kTierCount] = {};
    uint64_t misses = 0;
  };
  // One local read of one block.
  struct LocalRead {
    IoResult result;
    bool on_nvme = false;  // the block is on NVMe: FETCH it, then read again
  };

  Impl(std::shared_ptr<Session> session, std::string name, uint32_t pool_id,
       std::unique_ptr<client_internal::PoolMap> map)
      : session(std::move(session)), name(std::move(name)), pool_id(pool_id), map(std::move(map)) {}

  LocalRead ReadLocal(const BlockKey& key, std::span<const IoVec> pieces, size_t capacity,
                      Tally* tally);
  // Maps segment `segment` of `tier` (and the later ones the agent sends).
  Status MapSegment(uint32_t tier, uint32_t segment);
  // A KeysRequest of `type`, in batches; per-key codes into `codes` when the
  // type has them. A failed batch gives each of its keys the batch's code.
  Status KeysCall(uint16_t type, std::span<const BlockKey> keys, std::span<StatusCode> codes);
  void AddTally(const Tally& tally);

  const std::shared_ptr<Session> session;
  const std::string name;
  const uint32_t pool_id;
  const std::unique_ptr<client_internal::PoolMap> map;
  std::mutex map_mu;  // serializes MapSegment

  // Tests only: runs after a block's bytes were copied and before the copy
  // is validated, so a test can change the entry in between. Set before
  // the pool is shared between threads.
  std::function<void(const BlockKey&)> after_copy_for_testing;
};

// For tests: the Impl behind a Pool.
Pool::Impl& PoolImplForTesting(Pool& pool);

}  // namespace tokenmem
