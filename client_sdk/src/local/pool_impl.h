// Pool::Impl: the state behind a tokenmem::Pool (internal to the SDK and
// its tests). See tokenmem/client.h for the behaviour of each call.
//
// A pool is local (session and map set: the agent is on this node) or
// remote (`remote` set: every call goes to RemotePool).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "local/pool_map.h"
#include "local/session.h"
#include "remote/remote_pool.h"
#include "tokenmem/client.h"

namespace tokenmem {
namespace client_internal {

// How batches report, shared by the local and remote paths.
inline size_t PiecesBytes(std::span<const IoVec> pieces) {
  size_t total = 0;
  for (const IoVec& p : pieces) total += p.len;
  return total;
}

inline Status ItemError(StatusCode code, const BlockKey& key, std::string_view what) {
  return Status(code, "block " + key.ToHex() + ": " + std::string(what));
}

inline std::string_view DescribeItemCode(StatusCode code) {
  switch (code) {
    case StatusCode::kInvalidArgument:
      return "invalid argument (size)";
    case StatusCode::kResourceExhausted:
      return "quota or capacity exceeded";
    case StatusCode::kPermissionDenied:
      return "permission denied";
    case StatusCode::kUnavailable:
      return "the agent is unavailable";
    case StatusCode::kFailedPrecondition:
      return "the pool was deleted or replaced on the agent";
    default:
      return StatusCodeName(code);
  }
}

// Keeps the first failure (not a miss) of a batch.
inline void NoteFailure(Status* first, StatusCode code, const BlockKey& key) {
  if (first->ok() && code != StatusCode::kOk && code != StatusCode::kNotFound) {
    *first = ItemError(code, key, DescribeItemCode(code));
  }
}

// The status a get batch reports for an item whose pieces were too small.
inline Status TooSmall(const BlockKey& key, size_t have, size_t need) {
  return ItemError(StatusCode::kInvalidArgument, key,
                   "the destination holds " + std::to_string(have) + " bytes, the block " +
                       std::to_string(need));
}

}  // namespace client_internal

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
  Impl(std::string name, std::unique_ptr<client_internal::RemotePool> remote)
      : name(std::move(name)), pool_id(0), remote(std::move(remote)) {}

  LocalRead ReadLocal(const BlockKey& key, std::span<const IoVec> pieces, size_t capacity,
                      Tally* tally);
  // As ReadLocal, but hands the bytes where they lie to `copy` (true: done;
  // false: failed, the read ends with kInternal) instead of copying them.
  template <typename Copy>
  LocalRead ReadLocalVia(const BlockKey& key, size_t capacity, Tally* tally, Copy&& copy);
  // Maps segment `segment` of `tier` (and the later ones the agent sends).
  Status MapSegment(uint32_t tier, uint32_t segment);
  // A KeysRequest of `type`, in batches; per-key codes into `codes` when the
  // type has them. A failed batch gives each of its keys the batch's code.
  Status KeysCall(uint16_t type, std::span<const BlockKey> keys, std::span<StatusCode> codes);
  void AddTally(const Tally& tally);
  // OK while the lease holds and the pool is open. Otherwise the error to
  // report: PERMISSION_DENIED (lease released) or FAILED_PRECONDITION (the
  // agent deleted or replaced the pool; the mappings are dropped first, so
  // the agent's memory can go).
  Status Live();

  const std::shared_ptr<Session> session;  // local only
  const std::string name;
  const uint32_t pool_id;                                     // local only
  const std::unique_ptr<client_internal::PoolMap> map;        // local only
  const std::unique_ptr<client_internal::RemotePool> remote;  // remote only
  std::mutex map_mu;                                          // serializes MapSegment, Drop
  // Serializes reserve/commit rounds when writes go through the staging
  // segment: its slots are this connection's, shared by all threads.
  std::mutex put_mu;

  // Tests only: runs after a block's bytes were copied and before the copy
  // is validated, so a test can change the entry in between. Set before
  // the pool is shared between threads.
  std::function<void(const BlockKey&)> after_copy_for_testing;
};

// For tests: the Impl behind a Pool.
Pool::Impl& PoolImplForTesting(Pool& pool);

}  // namespace tokenmem
