#include "pool/pool_manager.h"

#include <system_error>

#include "pool/pool_meta.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem::pool {

namespace {
constexpr TierKind kTiers[] = {TierKind::kDram, TierKind::kCxl, TierKind::kNvme};
}  // namespace

Result<std::unique_ptr<PoolManager>> PoolManager::Open(PoolManagerOptions options) {
  std::unique_ptr<PoolManager> manager(new PoolManager(std::move(options)));
  const auto& root = manager->options_.nvme_root;
  if (root.empty()) return manager;
  std::error_code ec;
  std::filesystem::directory_iterator dir(root, ec);
  if (ec) return IoError("cannot list " + root.string() + ": " + ec.message());
  std::vector<std::filesystem::path> pool_dirs;
  for (const auto& entry : dir) {
    if (entry.is_directory(ec)) pool_dirs.push_back(entry.path());
  }
  std::sort(pool_dirs.begin(), pool_dirs.end());
  for (const auto& pool_dir : pool_dirs) {
    auto spec = ReadPoolMeta(pool_dir);
    if (!spec.ok()) {
      if (!spec.status().IsNotFound()) {
        TM_LOG(ERROR, "pools") << "skipping " << pool_dir.string() << ": "
                               << spec.status().ToString();
      }
      continue;
    }
    if (spec->name != pool_dir.filename().string()) {
      TM_LOG(ERROR, "pools") << "skipping " << pool_dir.string() << ": it defines pool '"
                             << spec->name << "'";
      continue;
    }
    std::lock_guard lock(manager->mu_);
    if (Status room = manager->CheckRoom(*spec); !room.ok()) {
      TM_LOG(ERROR, "pools") << "not reopening pool " << spec->name
                             << ", its data stays on disk: " << room.ToString();
      continue;
    }
    auto pool = Pool::Open(*spec, manager->EnvironmentFor(spec->name));
    if (!pool.ok()) {
      TM_LOG(ERROR, "pools") << "not reopening pool " << spec->name << ": "
                             << pool.status().ToString();
      continue;
    }
    manager->recovered_blocks_ += (*pool)->recovered_blocks();
    manager->pools_.emplace(spec->name, std::shared_ptr<Pool>(std::move(pool).value()));
  }
  return manager;
}

PoolEnvironment PoolManager::EnvironmentFor(const std::string& name) const {
  PoolEnvironment env;
  env.dram_nodes = options_.dram_nodes;
  env.cxl_nodes = options_.cxl_nodes;
  if (!options_.nvme_root.empty()) env.nvme_directory = options_.nvme_root / name;
  env.nvme_segment_bytes = options_.nvme_segment_bytes;
  env.nvme_queue_depth = options_.nvme_queue_depth;
  env.low_watermark = options_.low_watermark;
  env.high_watermark = options_.high_watermark;
  env.ttl_sweep_ms = options_.ttl_sweep_ms;
  env.now_ms = options_.now_ms;
  env.max_pinned_blocks_per_lease = options_.max_pinned_blocks_per_lease;
  env.limits = options_.limits;
  return env;
}

Status PoolManager::CheckRoom(const PoolSpec& spec) const {
  TierCapacities reserved;
  for (const auto& [name, pool] : pools_) {
    for (TierKind t : kTiers) reserved.of(t) += pool->spec().capacity.of(t);
  }
  for (TierKind t : kTiers) {
    uint64_t want = spec.capacity.of(t);
    if (want == 0) continue;
    uint64_t room =
        options_.tier_capacity.of(t) - std::min(reserved.of(t), options_.tier_capacity.of(t));
    if (want > room) {
      return ResourceExhausted("pool '" + spec.name + "' asks for " + FormatByteSize(want) +
                               " of " + std::string(TierName(t)) + " but only " +
                               FormatByteSize(room) + " of " +
                               FormatByteSize(options_.tier_capacity.of(t)) + " is unreserved");
    }
  }
  return Status::Ok();
}

Result<std::shared_ptr<Pool>> PoolManager::Create(const PoolSpec& spec) {
  TM_RETURN_IF_ERROR(ValidatePoolSpec(spec));
  std::lock_guard lock(mu_);
  if (pools_.count(spec.name) != 0) return AlreadyExists("pool '" + spec.name + "' already exists");
  TM_RETURN_IF_ERROR(CheckRoom(spec));
  std::filesystem::path dir;
  if (!options_.nvme_root.empty()) {
    dir = options_.nvme_root / spec.name;
    std::error_code ec;
    if (std::filesystem::exists(dir, ec)) {
      // Leftovers of a pool that failed to reopen: never overwrite data silently.
      return AlreadyExists("directory " + dir.string() +
                           " exists but holds no open pool; remove it "
                           "or restart the agent to reopen it");
    }
    std::filesystem::create_directory(dir, ec);
    if (ec) return IoError("cannot create " + dir.string() + ": " + ec.message());
    if (Status s = WritePoolMeta(dir, spec); !s.ok()) {
      std::filesystem::remove_all(dir, ec);
      return s;
    }
  }
  auto pool = Pool::Open(spec, EnvironmentFor(spec.name));
  if (!pool.ok()) {
    std::error_code ec;
    if (!dir.empty()) std::filesystem::remove_all(dir, ec);
    return pool.status();
  }
  std::shared_ptr<Pool> shared(std::move(pool).value());
  pools_.emplace(spec.name, shared);
  TM_LOG(INFO, "pools") << "created pool " << spec.name;
  return shared;
}

Status PoolManager::Ensure(const PoolSpec& spec) {
  if (auto existing = Find(spec.name); existing.ok()) {
    if ((*existing)->spec() != spec) {
      TM_LOG(WARN, "pools") << "pool " << spec.name
                            << " exists with another definition; keeping the existing one "
                               "(delete it to apply the configured one)";
    }
    return Status::Ok();
  }
  return Create(spec).status();
}

Result<std::shared_ptr<Pool>> PoolManager::Find(const std::string& name) const {
  std::lock_guard lock(mu_);
  auto it = pools_.find(name);
  if (it == pools_.end()) return NotFound("pool '" + name + "' does not exist");
  return it->second;
}

std::vector<std::shared_ptr<Pool>> PoolManager::List() const {
  std::lock_guard lock(mu_);
  std::vector<std::shared_ptr<Pool>> out;
  for (const auto& [name, pool] : pools_) out.push_back(pool);
  return out;
}

Status PoolManager::Delete(const std::string& name) {
  TM_RETURN_IF_ERROR(ValidatePoolName(name));
  std::shared_ptr<Pool> pool;
  {
    std::lock_guard lock(mu_);
    auto it = pools_.find(name);
    if (it == pools_.end()) return NotFound("pool '" + name + "' does not exist");
    pool = it->second;
    pools_.erase(it);
    // Clients see the pool closed before anything else changes, and drop
    // their mappings; its memory goes when the last holder lets go.
    pool->Close();
    pool->RefundAll();
    if (!options_.nvme_root.empty()) {
      // Remove the definition first: a crash halfway leaves no pool behind.
      std::error_code ec;
      std::filesystem::remove(options_.nvme_root / name / kPoolMetaFile, ec);
      std::filesystem::remove_all(options_.nvme_root / name, ec);
      if (ec) {
        TM_LOG(ERROR, "pools") << "deleted pool " << name
                               << " but could not remove its files: " << ec.message();
      }
    }
  }
  TM_LOG(INFO, "pools") << "deleted pool " << name;
  return Status::Ok();
}

TierCapacities PoolManager::Reserved() const {
  std::lock_guard lock(mu_);
  TierCapacities reserved;
  for (const auto& [name, pool] : pools_) {
    for (TierKind t : kTiers) reserved.of(t) += pool->spec().capacity.of(t);
  }
  return reserved;
}

void PoolManager::MaintainAll() {
  for (const auto& pool : List()) pool->Maintain();
}

uint64_t PoolManager::ReleasePinsOf(const LeaseAccount& lease) {
  uint64_t released = 0;
  for (const auto& pool : List()) released += pool->ReleasePinsOf(lease);
  return released;
}

}  // namespace tokenmem::pool
