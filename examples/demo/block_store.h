// BlockStore: how tokenmem-demo moves KV blocks to and from one pool, so
// the workload does not care which data path carries them. Two paths:
// local_block_store.h (the SDK over the agent's data socket and shared
// memory, the default) and control_block_store.h (the gRPC control API).
//
// A store is opened for one pool under one lease, after the run has both
// (pools and leases are managed on the control API whatever the path).
// Not thread-safe: one caller at a time.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"
#include "tokenmem/v1/control.pb.h"
#include "wire/lease.h"

namespace tokenmem::demo {

// What happened to one block of a batched call.
struct BlockOutcome {
  // kOk; kNotFound: a miss (gets); anything else: this block alone failed.
  StatusCode code = StatusCode::kOk;
  // Gets: with kOk the bytes written to the block's buffer; with
  // kInvalidArgument the block's length, which the buffer was too small for
  // (nothing was written). Puts: unused.
  size_t length = 0;
  // Gets: the tier that served the block, when the path says
  // (tiers_per_read()); TIER_KIND_UNSPECIFIED otherwise.
  v1::TierKind tier = v1::TIER_KIND_UNSPECIFIED;
  // Why the block failed, when the path says; may be empty.
  std::string message;
};

class BlockStore {
 public:
  virtual ~BlockStore() = default;

  // "local" or "control", for the report.
  virtual std::string_view path() const = 0;
  // One line for people: what carries the blocks and where to.
  virtual std::string description() const = 0;
  // True when GetMany tells which tier served each block.
  virtual bool tiers_per_read() const = 0;

  // How many leading keys of the chain `keys` the pool holds. An error
  // (message "<Call>: <CODE>: <text>") when the call failed.
  virtual Result<size_t> LookupPrefix(std::span<const BlockKey> keys) = 0;

  // Reads the block keyed keys[i] into buffers[i]; outcomes[i] says what
  // came of it. The three spans must be the same size (kInvalidArgument
  // otherwise, nothing read). OK when every block got an outcome (hits,
  // misses and blocks that failed alone); an error when the call as a whole
  // failed (the agent refused the lease, is gone, ...): then outcomes mean
  // nothing.
  virtual Status GetMany(std::span<const BlockKey> keys,
                         std::span<const std::span<std::byte>> buffers,
                         std::span<BlockOutcome> outcomes) = 0;

  // Stores blocks[i] under keys[i] (replacing any block of that key);
  // outcomes[i] says whether it was stored. Sizes and errors as GetMany.
  virtual Status PutMany(std::span<const BlockKey> keys,
                         std::span<const std::span<const std::byte>> blocks,
                         std::span<BlockOutcome> outcomes) = 0;
};

// Opens a store for `pool` under `lease`; the error says why it could not.
using BlockStoreOpener = std::function<Result<std::unique_ptr<BlockStore>>(
    const std::string& pool, const wire::LeaseString& lease)>;

// "<call>: <CODE>: <message>", the way the demo names a failed call.
Status CallError(std::string_view call, const Status& status);

}  // namespace tokenmem::demo
