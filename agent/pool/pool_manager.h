// PoolManager: the agent's pools by name, and the tier capacity they reserve.
//
// Each pool reserves its capacity per tier when it is created; the sum of
// reservations never exceeds a tier's capacity, so pools cannot starve each
// other. Pool definitions are persisted under the NVMe root
// (<root>/<pool>/pool.meta) and reopened at start, with their NVMe blocks.
//
// Thread-safe. Pools are handed out as shared_ptr: a request that holds one
// finishes safely even if the pool is deleted meanwhile.
#pragma once

#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "pool/pool.h"
#include "pool/pool_spec.h"

namespace tokenmem::pool {

struct PoolManagerOptions {
  TierCapacities tier_capacity;  // what pools may reserve, per tier
  std::vector<int> dram_nodes;
  std::vector<int> cxl_nodes;
  std::filesystem::path nvme_root;  // empty: no NVMe tier, nothing persisted
  uint64_t nvme_segment_bytes = 256ull << 20;
  uint32_t nvme_queue_depth = 32;
  double low_watermark = 0.10;
  double high_watermark = 0.20;
  uint32_t ttl_sweep_ms = 1000;
  std::function<int64_t()> now_ms;           // empty: the system clock
  uint32_t max_pinned_blocks_per_lease = 0;  // PoolEnvironment's; 0: no limit
  limits::LimitObserver* limits = nullptr;   // may be null
};

class PoolManager {
 public:
  // Reopens the pools persisted under options.nvme_root. A pool that cannot
  // be reopened (its reservation no longer fits, a damaged definition) is
  // logged and left on disk untouched.
  static Result<std::unique_ptr<PoolManager>> Open(PoolManagerOptions options);

  // ALREADY_EXISTS, INVALID_ARGUMENT, or RESOURCE_EXHAUSTED when a tier
  // cannot hold the reservation (the message names tier, need and room).
  Result<std::shared_ptr<Pool>> Create(const PoolSpec& spec);

  // Creates the pool unless one of that name exists (then it is kept as it
  // is, with a warning when its definition differs).
  Status Ensure(const PoolSpec& spec);

  Result<std::shared_ptr<Pool>> Find(const std::string& name) const;
  std::vector<std::shared_ptr<Pool>> List() const;

  // Drops the pool's blocks and files. NOT_FOUND when absent.
  Status Delete(const std::string& name);

  TierCapacities Reserved() const;
  const TierCapacities& Capacity() const { return options_.tier_capacity; }
  uint64_t recovered_blocks() const { return recovered_blocks_; }

  // One maintenance pass over every pool (the mover calls this).
  void MaintainAll();

  // Drops every pin `lease` holds, in every pool (the lease table's release
  // hook). Returns how many blocks were unpinned.
  uint64_t ReleasePinsOf(const LeaseAccount& lease);

 private:
  explicit PoolManager(PoolManagerOptions options) : options_(std::move(options)) {}
  PoolEnvironment EnvironmentFor(const std::string& name) const;
  Status CheckRoom(const PoolSpec& spec) const;  // mu_ held

  PoolManagerOptions options_;
  uint64_t recovered_blocks_ = 0;
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Pool>> pools_;
};

}  // namespace tokenmem::pool
