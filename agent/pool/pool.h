// Pool: one named namespace of blocks across the DRAM, CXL and NVMe tiers.
//
// A pool owns its own memory segments and NVMe segment files, so nothing of
// one pool is visible through another. Placement: a put lands in the
// pool's fastest tier; when that is full it makes room by demoting the
// least recently used block one tier down (DRAM -> CXL -> NVMe ->
// dropped), so the tiers form one LRU cascade. A slower tier takes a put
// directly only when every block above it is pinned. A get served from NVMe promotes the
// block into memory when memory has a free slot. Maintain(), run by the
// mover in the background, keeps each memory tier's free space between the
// watermarks so that puts rarely wait for demotion I/O.
//
// Guarantee: a get returns exactly the bytes of the last completed put of
// that key, or a miss. NVMe blocks are checked against their CRC32C; a
// mismatch is a miss and is counted, never returned.
//
// Thread-safe. One mutex guards the index; memory copies happen under it,
// NVMe I/O never does.
#pragma once

#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <vector>

#include "limits/limits.h"
#include "pool/lease_table.h"
#include "pool/pool_spec.h"
#include "pool/pool_stats.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::pool {

// Where a pool's tiers live; filled by the PoolManager from the agent's
// configuration and topology.
struct PoolEnvironment {
  std::vector<int> dram_nodes;           // NUMA nodes for the DRAM tier
  std::vector<int> cxl_nodes;            // NUMA nodes for the CXL tier
  std::filesystem::path nvme_directory;  // this pool's own directory
  uint64_t nvme_segment_bytes = 256ull << 20;
  uint32_t nvme_queue_depth = 32;
  uint64_t memory_segment_bytes = 64ull << 20;
  double low_watermark = 0.10;      // free fraction that starts demotion
  double high_watermark = 0.20;     // free fraction demotion restores
  uint32_t ttl_sweep_ms = 1000;     // how often Maintain() looks for expired blocks
  std::function<int64_t()> now_ms;  // wall clock, ms; empty: the system clock
  // Blocks one lease may keep pinned over all pools (limits.md, `pins`);
  // 0: no limit.
  uint32_t max_pinned_blocks_per_lease = 0;
  limits::LimitObserver* limits = nullptr;  // told of each refused pin; may be null
};

struct ReadResult {
  uint32_t length = 0;
  TierKind tier = TierKind::kDram;
};

class Pool {
 public:
  // Creates the tiers; an existing NVMe directory is scanned and its blocks
  // are served again.
  static Result<std::unique_ptr<Pool>> Open(PoolSpec spec, PoolEnvironment env);
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  const PoolSpec& spec() const { return spec_; }
  uint64_t recovered_blocks() const { return recovered_blocks_; }

  // Stores a copy of `data` (at most block_size bytes) under `key`,
  // replacing any block with that key, and charges `lease` one block.
  // RESOURCE_EXHAUSTED when the lease's quota (checked first: nothing is
  // evicted then) or the pool's capacity does not allow it.
  Result<TierKind> Put(const BlockKey& key, std::span<const std::byte> data,
                       std::shared_ptr<LeaseAccount> lease);

  // Copies the block into `out`, which must hold at least the block
  // (block_size bytes always suffice). NOT_FOUND on a miss, including an
  // expired block and one whose checksum failed.
  Result<ReadResult> Get(const BlockKey& key, std::span<std::byte> out);

  // The bytes of a block in memory, held in place: until Unhold, its slot
  // is not reused (the block may still be replaced, demoted or dropped;
  // the held bytes stay those of the block that was there). For senders
  // that must not copy (the remote path). Counts as a get. NOT_FOUND when
  // absent, FAILED_PRECONDITION when the block is on NVMe (use Get).
  struct HeldBlock {
    TierKind tier;
    uint32_t slot;
    std::span<const std::byte> bytes;
  };
  Result<HeldBlock> Hold(const BlockKey& key);
  // Every Hold needs exactly one Unhold, before the pool is destroyed.
  void Unhold(const HeldBlock& held);

  // The tier holding `key`, or NOT_FOUND. Counts as a use for recency.
  Result<TierKind> Locate(const BlockKey& key);

  // Every key held now, in no order (a snapshot: 16 bytes per block).
  std::vector<BlockKey> Keys() const;

  // How many leading keys of the chain are present; their tiers go to
  // `tiers` when given. Recency is refreshed tail first, so a chain's head
  // ends up the most recently used (a prefix is worth more than its tail).
  uint32_t LookupPrefix(std::span<const BlockKey> keys, std::vector<TierKind>* tiers);

  // NOT_FOUND when absent.
  Status Remove(const BlockKey& key);

  // A pinned block is never demoted, dropped or expired; pinning a block on
  // NVMe brings it into memory when the pool has a memory tier.
  //
  // A block has at most one pin, counted against the lease that pinned it
  // first (`lease`; null: nobody's, for the agent's own callers). Pinning a
  // block that is pinned already is OK and counts nothing.
  // RESOURCE_EXHAUSTED when the lease holds max_pinned_blocks_per_lease pins
  // already; FAILED_PRECONDITION when the lease is released. The pin goes,
  // and the lease's count with it, on Unpin, when the block is removed or
  // replaced, and when the lease is released (ReleasePinsOf, or Maintain for
  // a release nobody announced).
  Status Pin(const BlockKey& key, const std::shared_ptr<LeaseAccount>& lease = nullptr);
  // PERMISSION_DENIED when `lease` is not the lease that pinned the block
  // (a null `lease` may unpin any block). Unpinning an unpinned block is OK.
  Status Unpin(const BlockKey& key, const std::shared_ptr<LeaseAccount>& lease = nullptr);
  // Unpins every block `lease` pinned here; returns how many.
  uint64_t ReleasePinsOf(const LeaseAccount& lease);

  // One pass of background work: restores watermarks by demotion, drops
  // expired blocks, and writes tombstones for freed NVMe slots.
  void Maintain();

  PoolSnapshot Snapshot() const;

  // ---- the local shared-memory path (LocalServer) ----

  // What a client maps: the shared index, the client area and the memory
  // tiers' segments. The fds stay owned by the pool.
  struct SegmentRef {
    TierKind tier;
    uint32_t segment;
    int fd;
    uint64_t bytes;
  };
  struct SharedView {
    int index_fd;
    uint64_t index_bytes;
    int client_area_fd;
    uint64_t client_area_bytes;
    std::vector<SegmentRef> segments;
  };
  SharedView Shared() const;
  // The segments of `tier` from `first` on.
  std::vector<SegmentRef> Segments(TierKind tier, uint32_t first) const;

  struct Grant {
    TierKind tier;
    uint32_t slot;
    uint64_t reservation;
    std::span<std::byte> bytes;  // the slot in this process, block_size long
  };
  enum class ReserveRoom {
    kMakeRoom,  // demote or drop blocks as a put would (may write to NVMe)
    kNoNvmeIo,  // the same, but never wait for an NVMe write: for callers on
                // a network thread; RESOURCE_EXHAUSTED when that would be needed
  };
  // Reserves `count` free memory slots for `owner` (a connection) to write
  // into, charging `lease` one block each up front. All or nothing:
  // RESOURCE_EXHAUSTED (quota or capacity) or FAILED_PRECONDITION (the
  // pool has no memory tier) reserve nothing.
  Result<std::vector<Grant>> Reserve(uint64_t owner, uint32_t count,
                                     std::shared_ptr<LeaseAccount> lease,
                                     ReserveRoom room = ReserveRoom::kMakeRoom);
  struct CommitItem {
    uint64_t reservation;
    BlockKey key;
    uint32_t length;
    uint32_t checksum;  // CRC32C of the slot's first `length` bytes
  };
  enum class Checksum {
    kVerify,   // the slot is read and must match (a client wrote it)
    kTrusted,  // the caller wrote the slot itself and computed the checksum
  };
  // Publishes written slots. Per item: INVALID_ARGUMENT for a reservation
  // that is not `owner`'s or a length above the block size, CORRUPTION
  // when the slot's bytes do not match the checksum (kVerify); a failed
  // item's slot is freed and refunded.
  std::vector<Status> Commit(uint64_t owner, std::span<const CommitItem> items,
                             Checksum check = Checksum::kVerify);
  // Frees reservations of `owner` (all of them when `ids` is empty).
  void Abort(uint64_t owner, std::span<const uint64_t> ids);
  // Brings NVMe blocks into memory so clients can read them in place.
  // Per key: OK (in memory now), NOT_FOUND (absent, gone meanwhile, or
  // failed its checksum), RESOURCE_EXHAUSTED (memory holds only pinned or
  // busy blocks), or an I/O error.
  std::vector<Status> Fetch(std::span<const BlockKey> keys);

  // Refunds every block's charge; called before the pool is deleted.
  void RefundAll();

  // The pool is being deleted or replaced: clients that mapped it see
  // IndexHeader::state == kIndexClosed and drop their mappings; sessions
  // holding the pool only weakly (LocalSession, the remote server) answer
  // FAILED_PRECONDITION once it is destroyed. Reserve and Commit refuse
  // from now on, so nothing new lands in memory about to be released.
  void Close();
  bool closed() const;

 private:
  struct Impl;
  explicit Pool(PoolSpec spec);
  PoolSpec spec_;
  uint64_t recovered_blocks_ = 0;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenmem::pool
