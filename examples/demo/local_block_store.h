// LocalBlockStore: the demo's blocks over the SDK's local data path
// (tokenmem/client.h): the agent's data socket and the pool's shared
// memory. Lookups probe the shared index in this process, gets copy
// straight out of the mapped segments into the caller's buffers, and puts
// copy into reserved slots that are then committed in batches. The agent is
// asked only to reserve and commit, and for blocks on NVMe.
//
// The SDK does not say which tier served a get; the agent's pool counters
// (GetStats) do, which is where the runner looks for this path.
// Not thread-safe: one caller at a time (the SDK is, but the scratch
// vectors here are shared).
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "demo/block_store.h"
#include "tokenmem/client.h"

namespace tokenmem::demo {

class LocalBlockStore final : public BlockStore {
 public:
  // Connects to the agent's data socket at `data_socket` with `lease` and
  // attaches `pool`. Errors name the step: "Connect: UNAVAILABLE: ..." when
  // no agent listens there, "Attach: PERMISSION_DENIED: ..." when the lease
  // may not use the pool, and so on.
  static Result<std::unique_ptr<LocalBlockStore>> Open(const std::string& data_socket,
                                                       const std::string& pool,
                                                       const wire::LeaseString& lease,
                                                       std::chrono::milliseconds timeout);

  std::string_view path() const override { return "local"; }
  std::string description() const override;
  bool tiers_per_read() const override { return false; }

  // Never fails: the lookup runs in this process.
  Result<size_t> LookupPrefix(std::span<const BlockKey> keys) override;
  // A block that failed alone (too large for its buffer, refused for quota
  // or capacity, ...) gets its code in its outcome, and the first one also
  // the SDK's message. The call fails ("GetMany: CODE: ..." or "PutMany:
  // ...") when the agent is gone (kUnavailable) or refused the call as a
  // whole.
  Status GetMany(std::span<const BlockKey> keys, std::span<const std::span<std::byte>> buffers,
                 std::span<BlockOutcome> outcomes) override;
  Status PutMany(std::span<const BlockKey> keys, std::span<const std::span<const std::byte>> blocks,
                 std::span<BlockOutcome> outcomes) override;

 private:
  LocalBlockStore(std::string data_socket, std::unique_ptr<Client> client,
                  std::shared_ptr<Pool> pool);

  // Copies results_ into `outcomes`; the SDK's status is the call's error
  // unless every failed item failed alone.
  Status Collect(std::string_view call, const Status& status, std::span<BlockOutcome> outcomes);

  std::string data_socket_;
  std::unique_ptr<Client> client_;
  std::shared_ptr<Pool> pool_;
  std::vector<IoVec> pieces_;
  std::vector<BlockIo> items_;
  std::vector<IoResult> results_;
};

// Opens LocalBlockStores on the data socket at `data_socket`.
BlockStoreOpener LocalStoreOpener(std::string data_socket, std::chrono::milliseconds timeout);

}  // namespace tokenmem::demo
