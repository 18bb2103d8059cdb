// DemoRunner: plays the demo's chat workload against an agent and tallies
// what tokenmem did for it.
//
// Pools, leases and statistics go over the control API; KV blocks go
// through a BlockStore (block_store.h) opened once the pool and the lease
// are known. Per session and turn: build the prompt, key its full blocks
// with the SDK's token keys (tokenmem/token_keys.h), LookupPrefix the
// chain, get the matched blocks in batches and verify every byte, "compute"
// the rest and put them in batches; then the reply extends the history.
// Sessions interleave turn by turn, so the system prompt is shared across
// sessions and each history across turns.
//
// Hits by tier: from each get when the store says which tier served it;
// otherwise from the difference of the pool's tier hit counters (GetStats)
// before and after each turn round, which counts every client of the pool.
// Not thread-safe: one Run at a time.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "demo/block_store.h"
#include "demo/conversation.h"
#include "demo/options.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"
#include "tokenmem/v1/control.grpc.pb.h"
#include "wire/lease.h"

namespace tokenmem::demo {

// Indexed by v1::TierKind (0: the agent did not say).
using TierArray = std::array<uint64_t, 4>;

struct DemoReport {
  std::string path;              // the BlockStore's: "local" or "control"
  std::string path_description;  // its description()
  std::string pool;
  bool pool_created = false;
  uint64_t block_size = 0;  // the pool's
  uint64_t kv_bytes_per_block = 0;
  uint32_t block_tokens = 0;
  uint32_t sessions = 0;
  uint32_t turns = 0;

  uint64_t prompts = 0;
  uint64_t prompt_tokens = 0;
  uint64_t reused_tokens = 0;  // prefix tokens whose blocks were read back, not recomputed

  uint64_t blocks_looked_up = 0;  // keys sent to LookupPrefix
  uint64_t blocks_matched = 0;    // keys LookupPrefix found
  uint64_t blocks_read = 0;       // blocks that Get returned
  uint64_t blocks_stored = 0;     // blocks Put accepted
  uint64_t bytes_read = 0;
  uint64_t bytes_stored = 0;
  // Hits by tier. hits_per_read: which tier served each block read back.
  // Otherwise the growth of the pool's tier hit counters over the run (every
  // client's hits; a block the agent fetches from NVMe counts there and
  // again in the memory tier it is then read from).
  TierArray hits_by_tier{};
  bool hits_per_read = true;

  uint64_t verification_failures = 0;  // blocks read back with wrong bytes: corruption
  uint64_t vanished_blocks = 0;        // matched, then missing at Get (evicted between the calls)
  uint64_t put_failures = 0;           // blocks Put refused one by one
  std::string first_put_failure;       // "CODE: message" of the first of those

  std::optional<v1::PoolStats> pool_stats;  // the agent's counters for the pool, at the end

  std::string lease_id;
  bool lease_created = false;
  bool lease_released = false;
  uint64_t released_blocks = 0;

  double seconds = 0;

  // No corruption and no refused put.
  bool ok() const { return verification_failures == 0 && put_failures == 0; }
};

class DemoRunner {
 public:
  // `stub` carries the control calls; `open_store` opens the data path
  // (ControlStoreOpener, LocalStoreOpener). `progress` gets one line per
  // turn round.
  DemoRunner(v1::Control::StubInterface& stub, BlockStoreOpener open_store, DemoOptions options,
             std::ostream& progress);

  // The report of a finished workload (check ok() for corruption or refused
  // puts). An error when a call fails (the message names the call and its
  // code), the store cannot be opened, the pool cannot be used, or the lease
  // is missing or malformed. The store is closed before the lease goes; a
  // lease the run created is released even when it fails, unless keep_lease.
  Result<DemoReport> Run();

 private:
  struct Round;

  void Prepare(grpc::ClientContext* call) const;
  Status EnsurePool();
  Status EnsureLease();
  void ReleaseLease();
  Status Play(BlockStore& store);
  Status PlayTurn(BlockStore& store, Session& session, int turn, const BlockKey& seed,
                  Round* round);
  Result<size_t> ReadBack(BlockStore& store, const std::vector<BlockKey>& keys, size_t matched,
                          Round* round);
  Status Store(BlockStore& store, const std::vector<BlockKey>& keys, size_t from, Round* round);
  // The pool's counters now.
  Result<v1::PoolStats> FetchStats();
  void PrintRound(uint32_t turn, const Round& round);
  size_t BatchBlocks() const;

  v1::Control::StubInterface& stub_;
  BlockStoreOpener open_store_;
  DemoOptions options_;
  std::ostream& progress_;
  wire::LeaseString lease_;
  DemoReport report_;
};

// The pool's hits per tier in `stats` (indexed as TierArray).
TierArray TierHits(const v1::PoolStats& stats);

}  // namespace tokenmem::demo
