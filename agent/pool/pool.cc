#include "pool/pool.h"

#include <algorithm>
#include <array>
#include <chrono>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "index/shm_index_writer.h"
#include "nvme/nvme_store.h"
#include "pool/lru_list.h"
#include "tier/memory_arena.h"
#include "tokenmem/common/crc32c.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem::pool {
namespace {

constexpr std::array<TierKind, kTierCount> kAllTiers = {TierKind::kDram, TierKind::kCxl,
                                                        TierKind::kNvme};
constexpr size_t kMaxQueuedPromotions = 4096;
constexpr int kMaxDemotionsPerPass = 512;
constexpr size_t kMaxTombstonesPerPass = 256;
constexpr uint64_t kNoPosition = ~uint64_t{0};

size_t Index(TierKind t) { return static_cast<size_t>(t); }
bool IsMemory(TierKind t) { return t != TierKind::kNvme; }

struct Block {
  TierKind tier = TierKind::kDram;
  uint32_t slot = 0;
  uint32_t length = 0;
  uint32_t checksum = 0;  // CRC32C of the data
  uint64_t generation = 0;
  int64_t stored_ms = 0;
  uint64_t position = kNoPosition;  // in the shared index
  bool pinned = false;
  bool moving = false;  // a copy to a slower tier is in flight
  std::shared_ptr<LeaseAccount> owner;
  LruList::Handle lru;
};

using BlockMap = std::unordered_map<BlockKey, Block, BlockKeyHash>;

}  // namespace

struct Pool::Impl {
  PoolSpec spec;
  PoolEnvironment env;

  mutable std::mutex mu;
  BlockMap index;
  std::array<LruList, kTierCount> lru;
  std::array<std::unique_ptr<tier::MemoryArena>, 2> arenas;  // DRAM, CXL
  std::unique_ptr<nvme::NvmeStore> nvme;
  std::unique_ptr<index::ShmIndexWriter> shared;  // what clients read
  struct Reservation {
    TierKind tier;
    uint32_t slot;
    uint64_t owner;
    std::shared_ptr<LeaseAccount> lease;
  };
  std::unordered_map<uint64_t, Reservation> reservations;
  uint64_t next_reservation = 1;
  // NVMe slots whose block has left but whose header on disk still says
  // live: reusable by the next write (which overwrites the header), and
  // tombstoned by Maintain() otherwise so a restart does not bring the block
  // back.
  std::deque<uint32_t> nvme_dirty;
  std::vector<uint16_t> nvme_readers;  // in-flight reads per NVMe slot
  // Holds on memory slots (Pool::Hold) per memory tier: a held slot is not
  // freed when its block leaves; it is freed at the last Unhold.
  std::array<std::vector<uint16_t>, 2> memory_holds;
  std::array<std::vector<bool>, 2> free_when_unheld;
  std::deque<BlockKey> promote_queue;
  std::unordered_set<BlockKey, BlockKeyHash> promote_queued;
  uint64_t next_generation = 1;
  int64_t last_ttl_sweep_ms = 0;
  PoolCounters counters;
  std::array<uint64_t, kTierCount> tier_blocks{};
  std::array<uint64_t, kTierCount> tier_pinned{};
  // Who pinned each pinned block (and only those): a side map, so the many
  // unpinned blocks carry nothing for it. A null lease: pinned by the agent.
  std::unordered_map<BlockKey, std::shared_ptr<LeaseAccount>, BlockKeyHash> pin_owners;

  int64_t Now() const {
    if (env.now_ms) return env.now_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  bool HasTier(TierKind t) const {
    return t == TierKind::kNvme ? nvme != nullptr : arenas[Index(t)] != nullptr;
  }

  uint32_t CapacitySlots(TierKind t) const {
    if (!HasTier(t)) return 0;
    return t == TierKind::kNvme ? nvme->capacity_slots() : arenas[Index(t)]->capacity_slots();
  }

  uint32_t ReusableDirtySlots() const {
    uint32_t n = 0;
    for (uint32_t s : nvme_dirty) n += nvme_readers[s] == 0 ? 1 : 0;
    return n;
  }

  uint32_t FreeSlots(TierKind t) const {
    if (!HasTier(t)) return 0;
    if (t == TierKind::kNvme) return nvme->free_slots() + ReusableDirtySlots();
    return arenas[Index(t)]->free_slots();
  }

  std::optional<TierKind> Lower(TierKind t) const {
    for (size_t i = Index(t) + 1; i < kTierCount; ++i) {
      if (HasTier(kAllTiers[i])) return kAllTiers[i];
    }
    return std::nullopt;
  }

  // True when tier `t` has a free slot or can make one without an NVMe
  // write (by dropping its LRU block, or demoting it to memory below).
  bool RoomWithoutIo(TierKind t) const {
    if (FreeSlots(t) > 0) return true;
    std::optional<TierKind> lower = Lower(t);
    if (!lower) return true;
    return IsMemory(*lower) && RoomWithoutIo(*lower);
  }

  std::span<std::byte> MemorySlot(TierKind t, uint32_t slot) const {
    return arenas[Index(t)]->Slot(slot);
  }

  bool Expired(const Block& b, int64_t now) const {
    return spec.ttl_seconds != 0 && !b.pinned &&
           now - b.stored_ms >= static_cast<int64_t>(spec.ttl_seconds) * 1000;
  }

  // Accounts for the block in its tier and publishes where it now lives.
  void Link(const BlockKey& key, Block& b) {
    const index::EntryFields fields{.tier = static_cast<uint32_t>(b.tier),
                                    .slot = b.slot,
                                    .length = b.length,
                                    .checksum = b.checksum,
                                    .generation = b.generation};
    if (b.position == kNoPosition) {
      // Cannot fail: the table has room for twice the pool's slots.
      auto pos = shared->Insert(key, fields);
      if (pos.ok()) b.position = *pos;
    } else {
      shared->Update(b.position, fields);
    }
    ++tier_blocks[Index(b.tier)];
    if (b.pinned) {
      ++tier_pinned[Index(b.tier)];
    } else {
      b.lru = lru[Index(b.tier)].Insert(key);
    }
  }

  void Unlink(Block& b) {
    --tier_blocks[Index(b.tier)];
    if (b.pinned) {
      --tier_pinned[Index(b.tier)];
    } else {
      lru[Index(b.tier)].Erase(b.lru);
    }
  }

  void ReleaseSlot(TierKind t, uint32_t slot) {
    if (t == TierKind::kNvme) {
      nvme_dirty.push_back(slot);
    } else if (memory_holds[Index(t)][slot] != 0) {
      free_when_unheld[Index(t)][slot] = true;  // a sender still reads it
    } else {
      arenas[Index(t)]->Free(slot);
    }
  }

  // Forgets who pinned `key` and gives that lease its pin back. The block's
  // own pinned flag is the caller's to change.
  void ForgetPin(const BlockKey& key) {
    auto it = pin_owners.find(key);
    if (it == pin_owners.end()) return;
    if (it->second) it->second->Unpinned();
    pin_owners.erase(it);
  }

  void UnpinBlock(const BlockKey& key, Block& b) {
    if (!b.pinned) return;
    ForgetPin(key);
    b.pinned = false;
    --tier_pinned[Index(b.tier)];
    b.lru = lru[Index(b.tier)].Insert(key);
  }

  // Unpins the blocks of every lease `matches` names; returns how many.
  template <typename Match>
  uint64_t UnpinWhere(Match&& matches) {
    std::vector<BlockKey> keys;
    for (const auto& [key, owner] : pin_owners) {
      if (owner && matches(*owner)) keys.push_back(key);
    }
    for (const BlockKey& key : keys) {
      auto it = index.find(key);
      if (it != index.end()) {
        UnpinBlock(key, it->second);
      } else {
        ForgetPin(key);
      }
    }
    return keys.size();
  }

  // The entry goes before the slot: a reader that copied the slot sees the
  // entry change and discards its copy.
  void Drop(BlockMap::iterator it) {
    Block& b = it->second;
    if (b.pinned) ForgetPin(it->first);
    Unlink(b);
    if (b.position != kNoPosition) shared->Remove(b.position);
    ReleaseSlot(b.tier, b.slot);
    if (b.owner) b.owner->Refund(spec.block_size);
    index.erase(it);
  }

  // An NVMe slot to write into: a clean free one, else a freed one that no
  // read is using (the write replaces its stale header).
  Result<uint32_t> TakeNvmeSlot() {
    auto fresh = nvme->Allocate();
    if (fresh.ok()) return *fresh;
    for (auto it = nvme_dirty.begin(); it != nvme_dirty.end(); ++it) {
      if (nvme_readers[*it] == 0) {
        uint32_t slot = *it;
        nvme_dirty.erase(it);
        return slot;
      }
    }
    return ResourceExhausted("pool '" + spec.name + "': no free NVMe slot");
  }

  // The least recently used block of tier `t` that may move now. Blocks a
  // client read since the last look get a second chance (CLOCK): client
  // reads never reach the agent, so their access marks stand in for them.
  std::optional<BlockMap::iterator> Victim(TierKind t) {
    auto& order = lru[Index(t)].list();
    const size_t limit = 2 * order.size();
    auto next = order.end();
    for (size_t scanned = 0; next != order.begin() && scanned < limit; ++scanned) {
      auto candidate = std::prev(next);
      auto it = index.find(*candidate);
      if (it == index.end() || it->second.moving ||
          (t == TierKind::kNvme && nvme_readers[it->second.slot] != 0)) {
        next = candidate;
        continue;
      }
      if (it->second.position != kNoPosition && shared->TakeAccessed(it->second.position)) {
        order.splice(order.begin(), order, candidate);  // `next` stays valid
        continue;
      }
      return it;
    }
    return std::nullopt;
  }

  // Moves the least recently used block of `from` one tier down, or drops
  // it from the slowest tier. May release `lock` while writing to NVMe.
  Status DemoteOne(TierKind from, std::unique_lock<std::mutex>& lock, int depth) {
    std::optional<TierKind> lower = Lower(from);
    if (!lower) {
      if (spec.eviction == EvictionPolicy::kNone) {
        return ResourceExhausted("pool '" + spec.name +
                                 "' is full and its eviction policy is 'none'");
      }
      auto victim = Victim(from);
      if (!victim) return NoVictim(from);
      ++counters.tiers[Index(from)].evictions;
      Drop(*victim);
      return Status::Ok();
    }
    if (IsMemory(*lower)) {
      TM_RETURN_IF_ERROR(EnsureFree(*lower, lock, depth + 1));
      auto victim = Victim(from);
      if (!victim) return NoVictim(from);
      const BlockKey key = (*victim)->first;
      Block& b = (*victim)->second;
      TM_ASSIGN_OR_RETURN(uint32_t slot, arenas[Index(*lower)]->Allocate());
      std::memcpy(MemorySlot(*lower, slot).data(), MemorySlot(from, b.slot).data(), b.length);
      Relocate(key, b, *lower, slot);
      return Status::Ok();
    }
    // Memory -> NVMe: copy out under the lock, write without it.
    TM_RETURN_IF_ERROR(EnsureFree(TierKind::kNvme, lock, depth + 1));
    auto victim = Victim(from);
    if (!victim) return NoVictim(from);
    const BlockKey key = (*victim)->first;
    Block& b = (*victim)->second;
    TM_ASSIGN_OR_RETURN(uint32_t nvme_slot, TakeNvmeSlot());
    std::vector<std::byte> staging(MemorySlot(from, b.slot).begin(),
                                   MemorySlot(from, b.slot).begin() + b.length);
    const uint64_t generation = b.generation;
    const int64_t stored_ms = b.stored_ms;
    b.moving = true;
    lock.unlock();
    Status written =
        nvme->Write(nvme_slot, key, generation, static_cast<uint64_t>(stored_ms), staging);
    lock.lock();
    auto it = index.find(key);
    const bool unchanged =
        it != index.end() && it->second.generation == generation && it->second.tier == from;
    if (unchanged) it->second.moving = false;
    if (!written.ok()) {
      ++counters.io_errors;
      nvme_dirty.push_back(nvme_slot);
      TM_LOG(ERROR, "pool") << spec.name << ": demotion to NVMe failed: " << written.ToString();
      return written;
    }
    if (!unchanged || it->second.pinned) {
      // Replaced, removed or pinned while the copy was in flight.
      nvme_dirty.push_back(nvme_slot);
      return Status::Ok();
    }
    Relocate(key, it->second, TierKind::kNvme, nvme_slot);
    return Status::Ok();
  }

  void Relocate(const BlockKey& key, Block& b, TierKind to, uint32_t slot) {
    const TierKind from = b.tier;
    const uint32_t old_slot = b.slot;
    Unlink(b);
    b.tier = to;
    b.slot = slot;
    Link(key, b);                 // readers follow the entry to the new slot...
    ReleaseSlot(from, old_slot);  // ...before the old one can be reused
    auto& out = counters.tiers[Index(from)];
    auto& in = counters.tiers[Index(to)];
    in.bytes_written += b.length;
    if (Index(to) > Index(from)) {
      ++out.demotions_out;
      out.bytes_demoted_out += b.length;
    } else {
      ++in.promotions_in;
      in.bytes_promoted_in += b.length;
    }
  }

  Status Missing(const BlockKey& key) const {
    return NotFound("block " + key.ToHex() + " is not in pool '" + spec.name + "'");
  }

  Status NoVictim(TierKind t) const {
    return ResourceExhausted("pool '" + spec.name + "': every block in the " +
                             std::string(TierName(t)) + " tier is pinned or busy");
  }

  // Makes at least one slot of `t` free, demoting as needed.
  Status EnsureFree(TierKind t, std::unique_lock<std::mutex>& lock, int depth) {
    if (depth > kTierCount + 1) return Internal("demotion recursed too deep");
    for (int attempt = 0; attempt < 16; ++attempt) {
      if (FreeSlots(t) > 0) return Status::Ok();
      TM_RETURN_IF_ERROR(DemoteOne(t, lock, depth));
    }
    return Unavailable("pool '" + spec.name + "': could not free a slot in the " +
                       std::string(TierName(t)) + " tier, retry");
  }

  // Moves an NVMe block into the fastest memory tier with a free slot, from
  // `data` that was just read and verified. No-op when memory is full or
  // the block changed meanwhile.
  void PlaceInMemory(const BlockKey& key, uint64_t generation, std::span<const std::byte> data,
                     std::unique_lock<std::mutex>& lock, bool make_room) {
    for (TierKind t : {TierKind::kDram, TierKind::kCxl}) {
      if (!HasTier(t)) continue;
      if (FreeSlots(t) == 0) {
        if (!make_room || !EnsureFree(t, lock, 0).ok()) continue;
      }
      auto it = index.find(key);
      if (it == index.end() || it->second.generation != generation ||
          it->second.tier != TierKind::kNvme || it->second.moving) {
        return;
      }
      auto slot = arenas[Index(t)]->Allocate();
      if (!slot.ok()) continue;
      std::memcpy(MemorySlot(t, *slot).data(), data.data(), it->second.length);
      Relocate(key, it->second, t, *slot);
      return;
    }
  }

  // Reads an NVMe block without holding the lock. On return the lock is
  // held again. Corrupt blocks are dropped and counted.
  Result<uint32_t> ReadNvme(BlockMap::iterator it, std::span<std::byte> out,
                            std::unique_lock<std::mutex>& lock, uint64_t* generation) {
    const BlockKey key = it->first;
    const uint32_t slot = it->second.slot;
    *generation = it->second.generation;
    ++nvme_readers[slot];
    lock.unlock();
    auto read = nvme->Read(slot, key, out);
    lock.lock();
    --nvme_readers[slot];
    if (read.ok()) return read;
    auto now_it = index.find(key);
    const bool same = now_it != index.end() && now_it->second.generation == *generation &&
                      now_it->second.tier == TierKind::kNvme && now_it->second.slot == slot;
    if (!same) return Unavailable("block moved during the read");  // caller retries
    if (read.status().code() == StatusCode::kCorruption) {
      ++counters.checksum_failures;
      TM_LOG(WARN, "pool") << spec.name << ": dropped block " << key.ToHex()
                           << " whose NVMe copy failed its checksum";
      Drop(now_it);
      return NotFound("block failed its checksum and was dropped");
    }
    ++counters.io_errors;
    return read.status();
  }

  void QueuePromotion(const BlockKey& key) {
    if (promote_queue.size() >= kMaxQueuedPromotions) return;
    if (promote_queued.insert(key).second) promote_queue.push_back(key);
  }

  void RunQueuedPromotions(std::unique_lock<std::mutex>& lock) {
    std::vector<std::byte> buffer;
    while (!promote_queue.empty()) {
      BlockKey key = promote_queue.front();
      promote_queue.pop_front();
      promote_queued.erase(key);
      auto it = index.find(key);
      if (it == index.end() || it->second.tier != TierKind::kNvme || it->second.moving) continue;
      bool room = false;
      for (TierKind t : {TierKind::kDram, TierKind::kCxl}) room = room || FreeSlots(t) > 0;
      if (!room) {
        promote_queue.clear();
        promote_queued.clear();
        return;
      }
      buffer.resize(spec.block_size);
      uint64_t generation = 0;
      auto read = ReadNvme(it, buffer, lock, &generation);
      if (read.ok()) PlaceInMemory(key, generation, std::span(buffer).first(*read), lock, false);
    }
  }

  void SweepExpired(int64_t now) {
    for (auto it = index.begin(); it != index.end();) {
      auto next = std::next(it);
      if (Expired(it->second, now) && !it->second.moving &&
          !(it->second.tier == TierKind::kNvme && nvme_readers[it->second.slot] != 0)) {
        ++counters.expired;
        Drop(it);
      }
      it = next;
    }
  }

  void WriteTombstones(std::unique_lock<std::mutex>& lock) {
    std::vector<uint32_t> batch;
    for (auto it = nvme_dirty.begin();
         it != nvme_dirty.end() && batch.size() < kMaxTombstonesPerPass;) {
      if (nvme_readers[*it] == 0) {
        batch.push_back(*it);
        it = nvme_dirty.erase(it);
      } else {
        ++it;
      }
    }
    if (batch.empty()) return;
    lock.unlock();
    std::vector<Status> results;
    results.reserve(batch.size());
    for (uint32_t slot : batch) results.push_back(nvme->Invalidate(slot));
    lock.lock();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (results[i].ok()) {
        nvme->Release(batch[i]);
      } else {
        ++counters.io_errors;
        nvme_dirty.push_back(batch[i]);  // retried next pass
        TM_LOG(ERROR, "pool") << spec.name << ": tombstone write failed: " << results[i].ToString();
      }
    }
  }

  Status CreateSharedIndex() {
    layout::TierGeometry tiers[layout::kTierCount] = {};
    uint64_t max_blocks = 0;
    for (TierKind t : kAllTiers) {
      const uint64_t slots = spec.capacity.of(t) / spec.block_size;
      if (slots == 0) continue;
      auto& g = tiers[Index(t)];
      g.present = 1;
      g.slot_bytes = spec.block_size;
      g.capacity_slots = slots;
      if (IsMemory(t)) g.slots_per_segment = arenas[Index(t)]->slots_per_segment();
      max_blocks += slots;
    }
    auto created = index::ShmIndexWriter::Create(spec.name, max_blocks, spec.block_size, tiers);
    if (!created.ok()) return created.status().WithContext("pool '" + spec.name + "' index");
    shared = std::move(created).value();
    return Status::Ok();
  }

  // Adds what clients counted in shared memory to the agent's own counters.
  void AddClientCounters(PoolCounters* c) const {
    const layout::ClientArea& area = shared->client_area();
    for (TierKind t : kAllTiers) {
      c->tiers[Index(t)].hits += area.hits[Index(t)].load(std::memory_order_relaxed);
      c->tiers[Index(t)].bytes_read += area.bytes_read[Index(t)].load(std::memory_order_relaxed);
    }
    const uint64_t local_hits = area.hits[0].load(std::memory_order_relaxed) +
                                area.hits[1].load(std::memory_order_relaxed) +
                                area.hits[2].load(std::memory_order_relaxed);
    const uint64_t local_misses = area.misses.load(std::memory_order_relaxed);
    c->gets += local_hits + local_misses;
    c->misses += local_misses;
    c->prefix_lookups += area.prefix_lookups.load(std::memory_order_relaxed);
    c->prefix_keys_matched += area.prefix_keys_matched.load(std::memory_order_relaxed);
  }

  void FreeReservation(std::unordered_map<uint64_t, Reservation>::iterator it) {
    arenas[Index(it->second.tier)]->Free(it->second.slot);
    if (it->second.lease) it->second.lease->Refund(spec.block_size);
    reservations.erase(it);
  }
};

Pool::Pool(PoolSpec spec) : spec_(std::move(spec)), impl_(std::make_unique<Impl>()) {}
Pool::~Pool() = default;

Result<std::unique_ptr<Pool>> Pool::Open(PoolSpec spec, PoolEnvironment env) {
  TM_RETURN_IF_ERROR(ValidatePoolSpec(spec));
  std::unique_ptr<Pool> pool(new Pool(spec));
  Impl& d = *pool->impl_;
  d.spec = spec;
  d.env = std::move(env);
  for (TierKind t : {TierKind::kDram, TierKind::kCxl}) {
    if (spec.capacity.of(t) == 0) continue;
    tier::MemoryArenaOptions options;
    options.name = "tokenmem:" + spec.name + ":" + std::string(TierName(t));
    options.slot_size = spec.block_size;
    options.capacity_bytes = spec.capacity.of(t);
    options.segment_bytes = std::max<uint64_t>(d.env.memory_segment_bytes, spec.block_size);
    options.numa_nodes = t == TierKind::kDram ? d.env.dram_nodes : d.env.cxl_nodes;
    auto arena = tier::MemoryArena::Create(options);
    if (!arena.ok()) return arena.status().WithContext("pool '" + spec.name + "'");
    d.arenas[Index(t)] = std::move(arena).value();
    d.memory_holds[Index(t)].assign(d.arenas[Index(t)]->capacity_slots(), 0);
    d.free_when_unheld[Index(t)].assign(d.arenas[Index(t)]->capacity_slots(), false);
  }
  TM_RETURN_IF_ERROR(d.CreateSharedIndex());
  if (spec.capacity.nvme != 0) {
    if (d.env.nvme_directory.empty()) {
      return FailedPrecondition("pool '" + spec.name +
                                "' wants NVMe capacity but the agent has no NVMe tier");
    }
    nvme::NvmeStoreOptions options;
    options.directory = d.env.nvme_directory;
    options.block_size = spec.block_size;
    options.capacity_bytes = spec.capacity.nvme;
    options.segment_bytes = d.env.nvme_segment_bytes;
    options.queue_depth = d.env.nvme_queue_depth;
    std::vector<nvme::RecoveredBlock> recovered;
    auto store = nvme::NvmeStore::Open(options, &recovered);
    if (!store.ok()) return store.status().WithContext("pool '" + spec.name + "'");
    d.nvme = std::move(store).value();
    d.nvme_readers.assign(d.nvme->capacity_slots(), 0);
    // Oldest first, so the most recently stored end up most recently used.
    std::sort(recovered.begin(), recovered.end(),
              [](const auto& a, const auto& b) { return a.stored_unix_ms < b.stored_unix_ms; });
    for (const auto& r : recovered) {
      Block b;
      b.tier = TierKind::kNvme;
      b.slot = r.slot;
      b.length = r.length;
      b.checksum = r.checksum;
      b.generation = r.generation;
      b.stored_ms = static_cast<int64_t>(r.stored_unix_ms);
      auto [it, inserted] = d.index.emplace(r.key, std::move(b));
      if (!inserted) {  // the store resolves duplicates; be safe anyway
        d.nvme_dirty.push_back(r.slot);
        continue;
      }
      d.Link(r.key, it->second);
      d.next_generation = std::max(d.next_generation, r.generation + 1);
    }
    pool->recovered_blocks_ = d.index.size();
  }
  d.last_ttl_sweep_ms = d.Now();
  TM_LOG(INFO, "pool") << "opened " << spec.name << " block_size "
                       << FormatByteSize(spec.block_size) << " dram "
                       << FormatByteSize(spec.capacity.dram) << " cxl "
                       << FormatByteSize(spec.capacity.cxl) << " nvme "
                       << FormatByteSize(spec.capacity.nvme) << " eviction "
                       << EvictionPolicyName(spec.eviction) << " ttl " << spec.ttl_seconds
                       << "s recovered " << pool->recovered_blocks_ << " blocks";
  return pool;
}

Result<TierKind> Pool::Put(const BlockKey& key, std::span<const std::byte> data,
                           std::shared_ptr<LeaseAccount> lease) {
  Impl& d = *impl_;
  if (data.size() > spec_.block_size) {
    return InvalidArgument("block of " + std::to_string(data.size()) + " bytes exceeds pool '" +
                           spec_.name + "' block size of " + std::to_string(spec_.block_size));
  }
  std::unique_lock lock(d.mu);
  if (lease && !lease->TryCharge(spec_.block_size)) {
    ++d.counters.quota_rejections;
    return ResourceExhausted("lease '" + lease->id() +
                             "' quota exceeded: " + FormatByteSize(lease->used_bytes()) + " of " +
                             FormatByteSize(lease->options().quota_bytes) +
                             " used, a block takes " + FormatByteSize(spec_.block_size));
  }
  auto refund = [&] {
    if (lease) lease->Refund(spec_.block_size);
  };
  const uint64_t generation = d.next_generation++;
  const int64_t now = d.Now();

  TierKind tier = TierKind::kDram;
  bool chosen = false;
  std::optional<uint32_t> slot;
  for (int attempt = 0; attempt < 4 && !slot; ++attempt) {
    chosen = false;
    // The fastest tier takes every put and the tiers below only receive
    // demoted blocks, so the tiers together form one LRU cascade. Making
    // room is a memcpy to CXL or, without CXL, one NVMe write; the mover's
    // watermarks make that rare. A slower tier takes the put only when
    // every block above is pinned.
    Status last = ResourceExhausted("pool '" + spec_.name + "' has no tier");
    for (TierKind t : kAllTiers) {
      if (!d.HasTier(t)) continue;
      last = d.EnsureFree(t, lock, 0);
      if (last.ok() && d.FreeSlots(t) > 0) {
        tier = t;
        chosen = true;
        break;
      }
    }
    if (!chosen) {
      refund();
      ++d.counters.capacity_rejections;
      return last.code() == StatusCode::kResourceExhausted
                 ? last
                 : Status(last.code(), "pool '" + spec_.name + "' is full: " + last.message());
    }
    if (tier == TierKind::kNvme) {
      auto s = d.TakeNvmeSlot();
      if (s.ok()) slot = *s;
    } else {
      auto s = d.arenas[Index(tier)]->Allocate();
      if (s.ok()) slot = *s;
    }
  }
  if (!slot) {
    refund();
    ++d.counters.capacity_rejections;
    return Unavailable("pool '" + spec_.name + "': no slot after retries (heavy contention)");
  }

  if (tier == TierKind::kNvme) {
    lock.unlock();
    Status written = d.nvme->Write(*slot, key, generation, static_cast<uint64_t>(now), data);
    lock.lock();
    if (!written.ok()) {
      ++d.counters.io_errors;
      d.nvme_dirty.push_back(*slot);
      refund();
      return written;
    }
  } else {
    std::memcpy(d.MemorySlot(tier, *slot).data(), data.data(), data.size());
  }

  if (auto old = d.index.find(key); old != d.index.end()) d.Drop(old);
  Block b;
  b.tier = tier;
  b.slot = *slot;
  b.length = static_cast<uint32_t>(data.size());
  b.checksum = Crc32c(data);
  b.generation = generation;
  b.stored_ms = now;
  b.owner = std::move(lease);
  auto [it, inserted] = d.index.emplace(key, std::move(b));
  d.Link(key, it->second);
  ++d.counters.puts;
  d.counters.tiers[Index(tier)].bytes_written += data.size();
  return tier;
}

std::vector<BlockKey> Pool::Keys() const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  std::vector<BlockKey> keys;
  keys.reserve(d.index.size());
  for (const auto& [key, block] : d.index) keys.push_back(key);
  return keys;
}

Result<ReadResult> Pool::Get(const BlockKey& key, std::span<std::byte> out) {
  Impl& d = *impl_;
  std::unique_lock lock(d.mu);
  ++d.counters.gets;
  for (int attempt = 0; attempt < 4; ++attempt) {
    auto it = d.index.find(key);
    if (it == d.index.end()) break;
    Block& b = it->second;
    if (d.Expired(b, d.Now()) && !b.moving) {
      ++d.counters.expired;
      d.Drop(it);
      break;
    }
    if (out.size() < b.length) {
      return InvalidArgument("buffer of " + std::to_string(out.size()) +
                             " bytes is smaller than the " + std::to_string(b.length) +
                             "-byte block");
    }
    if (!b.pinned) d.lru[Index(b.tier)].Touch(b.lru);
    if (IsMemory(b.tier)) {
      std::memcpy(out.data(), d.MemorySlot(b.tier, b.slot).data(), b.length);
      auto& c = d.counters.tiers[Index(b.tier)];
      ++c.hits;
      c.bytes_read += b.length;
      return ReadResult{b.length, b.tier};
    }
    uint64_t generation = 0;
    auto read = d.ReadNvme(it, out, lock, &generation);
    if (!read.ok()) {
      if (read.status().code() == StatusCode::kUnavailable) continue;  // moved: look again
      if (read.status().IsNotFound()) break;
      return read.status();
    }
    auto& c = d.counters.tiers[Index(TierKind::kNvme)];
    ++c.hits;
    c.bytes_read += *read;
    d.PlaceInMemory(key, generation, out.first(*read), lock, false);
    return ReadResult{*read, TierKind::kNvme};
  }
  ++d.counters.misses;
  return d.Missing(key);
}

Result<Pool::HeldBlock> Pool::Hold(const BlockKey& key) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  auto it = d.index.find(key);
  if (it == d.index.end()) return NotFound("block " + key.ToHex() + " is not in the pool");
  Block& b = it->second;
  if (!IsMemory(b.tier) || (d.Expired(b, d.Now()) && !b.moving)) {
    return FailedPrecondition("block " + key.ToHex() + " is not in memory");
  }
  uint16_t& holds = d.memory_holds[Index(b.tier)][b.slot];
  if (holds == UINT16_MAX) return Unavailable("too many holds on one block");
  ++holds;
  ++d.counters.gets;
  if (!b.pinned) d.lru[Index(b.tier)].Touch(b.lru);
  auto& c = d.counters.tiers[Index(b.tier)];
  ++c.hits;
  c.bytes_read += b.length;
  return HeldBlock{b.tier, b.slot, d.MemorySlot(b.tier, b.slot).first(b.length)};
}

void Pool::Unhold(const HeldBlock& held) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  const size_t t = Index(held.tier);
  if (--d.memory_holds[t][held.slot] == 0 && d.free_when_unheld[t][held.slot]) {
    d.free_when_unheld[t][held.slot] = false;
    d.arenas[t]->Free(held.slot);
  }
}

Result<TierKind> Pool::Locate(const BlockKey& key) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  auto it = d.index.find(key);
  if (it == d.index.end()) return d.Missing(key);
  if (d.Expired(it->second, d.Now()) && !it->second.moving) {
    ++d.counters.expired;
    d.Drop(it);
    return NotFound("block " + key.ToHex() + " expired");
  }
  if (!it->second.pinned) d.lru[Index(it->second.tier)].Touch(it->second.lru);
  return it->second.tier;
}

uint32_t Pool::LookupPrefix(std::span<const BlockKey> keys, std::vector<TierKind>* tiers) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  ++d.counters.prefix_lookups;
  const int64_t now = d.Now();
  std::vector<Block*> found;
  found.reserve(keys.size());
  for (const BlockKey& key : keys) {
    auto it = d.index.find(key);
    if (it == d.index.end() || d.Expired(it->second, now)) break;
    found.push_back(&it->second);
  }
  // Tail first, so the head is the most recently used afterwards.
  for (size_t i = found.size(); i-- > 0;) {
    Block& b = *found[i];
    if (!b.pinned) d.lru[Index(b.tier)].Touch(b.lru);
    if (b.tier == TierKind::kNvme) d.QueuePromotion(keys[i]);
  }
  if (tiers) {
    tiers->clear();
    for (Block* b : found) tiers->push_back(b->tier);
  }
  d.counters.prefix_keys_matched += found.size();
  return static_cast<uint32_t>(found.size());
}

Status Pool::Remove(const BlockKey& key) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  auto it = d.index.find(key);
  if (it == d.index.end()) return d.Missing(key);
  d.Drop(it);
  return Status::Ok();
}

Status Pool::Pin(const BlockKey& key, const std::shared_ptr<LeaseAccount>& lease) {
  Impl& d = *impl_;
  std::unique_lock lock(d.mu);
  auto it = d.index.find(key);
  if (it == d.index.end()) return d.Missing(key);
  Block& b = it->second;
  if (!b.pinned) {
    if (lease) {
      // Checked under the pool's lock: LeaseTable::Release marks the lease
      // released before it asks the pools to drop its pins.
      if (lease->released()) {
        return FailedPrecondition("lease '" + lease->id() + "' was released");
      }
      if (!lease->TryPin(d.env.max_pinned_blocks_per_lease)) {
        limits::Note(d.env.limits, limits::Limit::kPins);
        return ResourceExhausted(
            "lease '" + lease->id() + "' has " + std::to_string(lease->pinned_blocks()) +
            " blocks pinned, the most limits.max_pinned_blocks_per_lease allows (" +
            std::to_string(d.env.max_pinned_blocks_per_lease) + "): unpin some first");
      }
    }
    d.pin_owners.emplace(key, lease);
    d.lru[Index(b.tier)].Erase(b.lru);
    b.pinned = true;
    ++d.tier_pinned[Index(b.tier)];
  }
  if (b.tier == TierKind::kNvme && (d.HasTier(TierKind::kDram) || d.HasTier(TierKind::kCxl))) {
    std::vector<std::byte> buffer(spec_.block_size);
    uint64_t generation = 0;
    auto read = d.ReadNvme(it, buffer, lock, &generation);
    if (read.ok()) d.PlaceInMemory(key, generation, std::span(buffer).first(*read), lock, true);
  }
  return Status::Ok();
}

Status Pool::Unpin(const BlockKey& key, const std::shared_ptr<LeaseAccount>& lease) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  auto it = d.index.find(key);
  if (it == d.index.end()) return d.Missing(key);
  Block& b = it->second;
  if (!b.pinned) return Status::Ok();
  if (lease) {
    auto owner = d.pin_owners.find(key);
    const LeaseAccount* pinner = owner == d.pin_owners.end() ? nullptr : owner->second.get();
    if (pinner != lease.get()) {
      // One tenant must not undo another's pin (DESIGN.md, trust boundaries).
      return PermissionDenied("block " + key.ToHex() + " was pinned by " +
                              (pinner ? "another lease" : "the agent") + ", not by lease '" +
                              lease->id() + "'");
    }
  }
  d.UnpinBlock(key, b);
  return Status::Ok();
}

uint64_t Pool::ReleasePinsOf(const LeaseAccount& lease) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  return d.UnpinWhere([&](const LeaseAccount& owner) { return &owner == &lease; });
}

void Pool::Maintain() {
  Impl& d = *impl_;
  std::unique_lock lock(d.mu);
  // Pins of a lease released without the release hook (ReleasePinsOf) would
  // otherwise hold their blocks for ever.
  d.UnpinWhere([](const LeaseAccount& owner) { return owner.released(); });
  d.RunQueuedPromotions(lock);
  for (TierKind t : {TierKind::kDram, TierKind::kCxl}) {
    if (!d.HasTier(t) || !d.Lower(t)) continue;
    const double capacity = d.CapacitySlots(t);
    if (d.FreeSlots(t) >= d.env.low_watermark * capacity) continue;
    for (int i = 0; i < kMaxDemotionsPerPass && d.FreeSlots(t) < d.env.high_watermark * capacity;
         ++i) {
      if (!d.DemoteOne(t, lock, 0).ok()) break;
    }
  }
  const int64_t now = d.Now();
  if (spec_.ttl_seconds != 0 && now - d.last_ttl_sweep_ms >= d.env.ttl_sweep_ms) {
    d.last_ttl_sweep_ms = now;
    d.SweepExpired(now);
  }
  if (d.nvme) d.WriteTombstones(lock);
}

PoolSnapshot Pool::Snapshot() const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  PoolSnapshot s;
  s.spec = spec_;
  s.counters = d.counters;
  d.AddClientCounters(&s.counters);
  for (TierKind t : kAllTiers) {
    TierUsage& u = s.usage[Index(t)];
    u.capacity_bytes = static_cast<uint64_t>(d.CapacitySlots(t)) * spec_.block_size;
    u.used_bytes = d.tier_blocks[Index(t)] * spec_.block_size;
    u.blocks = d.tier_blocks[Index(t)];
    u.pinned_blocks = d.tier_pinned[Index(t)];
  }
  return s;
}

void Pool::RefundAll() {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  for (auto& [key, owner] : d.pin_owners) {
    if (owner) owner->Unpinned();
  }
  d.pin_owners.clear();
  for (auto& [key, b] : d.index) {
    if (b.owner) {
      b.owner->Refund(spec_.block_size);
      b.owner.reset();
    }
  }
}

void Pool::Close() {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  d.shared->MarkClosed();
}

bool Pool::closed() const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  return d.shared->closed();
}

}  // namespace tokenmem::pool

namespace tokenmem::pool {

Pool::SharedView Pool::Shared() const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  SharedView view{d.shared->index_fd(),
                  d.shared->index_bytes(),
                  d.shared->client_area_fd(),
                  d.shared->client_area_bytes(),
                  {}};
  for (TierKind t : {TierKind::kDram, TierKind::kCxl}) {
    if (!d.HasTier(t)) continue;
    auto segments = d.arenas[Index(t)]->Segments();
    for (uint32_t i = 0; i < segments.size(); ++i) {
      view.segments.push_back({t, i, segments[i].fd, segments[i].size});
    }
  }
  return view;
}

std::vector<Pool::SegmentRef> Pool::Segments(TierKind tier, uint32_t first) const {
  const Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  std::vector<SegmentRef> out;
  if (!IsMemory(tier) || !d.HasTier(tier)) return out;
  auto segments = d.arenas[Index(tier)]->Segments();
  for (uint32_t i = first; i < segments.size(); ++i) {
    out.push_back({tier, i, segments[i].fd, segments[i].size});
  }
  return out;
}

Result<std::vector<Pool::Grant>> Pool::Reserve(uint64_t owner, uint32_t count,
                                               std::shared_ptr<LeaseAccount> lease,
                                               ReserveRoom room_policy) {
  Impl& d = *impl_;
  std::optional<TierKind> fastest;
  for (TierKind t : {TierKind::kDram, TierKind::kCxl}) {
    if (d.HasTier(t) && !fastest) fastest = t;
  }
  if (!fastest) {
    return FailedPrecondition("pool '" + spec_.name +
                              "' has no memory tier; clients cannot write into it directly");
  }
  std::unique_lock lock(d.mu);
  if (d.shared->closed()) {
    return FailedPrecondition("pool '" + spec_.name + "' was deleted or replaced");
  }
  const uint64_t need = uint64_t{count} * spec_.block_size;
  if (lease && !lease->TryCharge(need)) {
    ++d.counters.quota_rejections;
    return ResourceExhausted("lease '" + lease->id() +
                             "' quota exceeded: " + FormatByteSize(lease->used_bytes()) + " of " +
                             FormatByteSize(lease->options().quota_bytes) + " used, " +
                             std::to_string(count) + " blocks need " + FormatByteSize(need));
  }
  std::vector<Grant> grants;
  grants.reserve(count);
  Status failure;
  for (uint32_t i = 0; i < count && failure.ok(); ++i) {
    std::optional<uint32_t> slot;
    TierKind tier = *fastest;
    for (TierKind t : {TierKind::kDram, TierKind::kCxl}) {
      if (!d.HasTier(t)) continue;
      Status room = room_policy == ReserveRoom::kNoNvmeIo && !d.RoomWithoutIo(t)
                        ? ResourceExhausted("making room would wait for an NVMe write")
                        : d.EnsureFree(t, lock, 0);
      if (!room.ok()) {
        failure = room;
        continue;
      }
      auto s = d.arenas[Index(t)]->Allocate();
      if (s.ok()) {
        slot = *s;
        tier = t;
        failure = Status::Ok();
        break;
      }
      failure = s.status();
    }
    if (!slot) break;
    const uint64_t id = d.next_reservation++;
    // Each reservation carries no charge of its own: the batch charge is
    // split back out on commit or abort.
    d.reservations.emplace(id, Impl::Reservation{tier, *slot, owner, lease});
    grants.push_back({tier, *slot, id, d.MemorySlot(tier, *slot)});
  }
  if (grants.size() < count) {
    for (const Grant& g : grants) {
      auto it = d.reservations.find(g.reservation);
      d.arenas[Index(it->second.tier)]->Free(it->second.slot);
      d.reservations.erase(it);
    }
    if (lease) lease->Refund(need);
    ++d.counters.capacity_rejections;
    return Status(failure.ok() ? StatusCode::kResourceExhausted : failure.code(),
                  "pool '" + spec_.name + "' cannot reserve " + std::to_string(count) +
                      " slots: " + (failure.ok() ? std::string("no room") : failure.message()));
  }
  return grants;
}

std::vector<Status> Pool::Commit(uint64_t owner, std::span<const CommitItem> items,
                                 Checksum check) {
  Impl& d = *impl_;
  std::unique_lock lock(d.mu);
  std::vector<Status> results;
  results.reserve(items.size());
  const int64_t now = d.Now();
  const bool closed = d.shared->closed();
  for (const CommitItem& item : items) {
    auto r = d.reservations.find(item.reservation);
    if (closed) {
      results.push_back(FailedPrecondition("pool '" + spec_.name + "' was deleted or replaced"));
      if (r != d.reservations.end() && r->second.owner == owner) d.FreeReservation(r);
      continue;
    }
    if (r == d.reservations.end() || r->second.owner != owner) {
      results.push_back(InvalidArgument("reservation " + std::to_string(item.reservation) +
                                        " is not held by this connection"));
      continue;
    }
    if (item.length > spec_.block_size) {
      results.push_back(InvalidArgument("length " + std::to_string(item.length) +
                                        " exceeds the block size " +
                                        std::to_string(spec_.block_size)));
      d.FreeReservation(r);
      continue;
    }
    const TierKind tier = r->second.tier;
    const uint32_t slot = r->second.slot;
    if (check == Checksum::kVerify &&
        Crc32c(d.MemorySlot(tier, slot).first(item.length)) != item.checksum) {
      results.push_back(Corruption("block " + item.key.ToHex() +
                                   ": the slot does not hold the bytes the checksum names"));
      d.FreeReservation(r);
      continue;
    }
    std::shared_ptr<LeaseAccount> lease = std::move(r->second.lease);
    d.reservations.erase(r);
    if (auto old = d.index.find(item.key); old != d.index.end()) d.Drop(old);
    Block b;
    b.tier = tier;
    b.slot = slot;
    b.length = item.length;
    b.checksum = item.checksum;
    b.generation = d.next_generation++;
    b.stored_ms = now;
    b.owner = std::move(lease);
    auto [it, inserted] = d.index.emplace(item.key, std::move(b));
    d.Link(item.key, it->second);
    ++d.counters.puts;
    d.counters.tiers[Index(tier)].bytes_written += item.length;
    results.push_back(Status::Ok());
  }
  return results;
}

void Pool::Abort(uint64_t owner, std::span<const uint64_t> ids) {
  Impl& d = *impl_;
  std::lock_guard lock(d.mu);
  if (ids.empty()) {
    for (auto it = d.reservations.begin(); it != d.reservations.end();) {
      auto next = std::next(it);
      if (it->second.owner == owner) d.FreeReservation(it);
      it = next;
    }
    return;
  }
  for (uint64_t id : ids) {
    auto it = d.reservations.find(id);
    if (it != d.reservations.end() && it->second.owner == owner) d.FreeReservation(it);
  }
}

std::vector<Status> Pool::Fetch(std::span<const BlockKey> keys) {
  Impl& d = *impl_;
  std::unique_lock lock(d.mu);
  std::vector<Status> results;
  results.reserve(keys.size());
  std::vector<std::byte> buffer;
  for (const BlockKey& key : keys) {
    Status result = d.Missing(key);
    // A block that moves (or goes) while it is read is looked up again.
    for (int attempt = 0; attempt < 4; ++attempt) {
      auto it = d.index.find(key);
      if (it == d.index.end()) break;
      if (IsMemory(it->second.tier)) {
        result = Status::Ok();
        break;
      }
      buffer.resize(spec_.block_size);
      uint64_t generation = 0;
      auto read = d.ReadNvme(it, buffer, lock, &generation);
      if (!read.ok()) {
        if (read.status().code() == StatusCode::kUnavailable) continue;
        if (!read.status().IsNotFound()) result = read.status();
        break;
      }
      // Not a hit yet: the client counts one (as NVMe) when it reads the block.
      d.PlaceInMemory(key, generation, std::span(buffer).first(*read), lock, true);
      auto now_it = d.index.find(key);
      if (now_it == d.index.end()) break;
      if (IsMemory(now_it->second.tier)) {
        result = Status::Ok();
        break;
      }
      result = ResourceExhausted("no memory slot could be freed for block " + key.ToHex() +
                                 " (every block in memory is pinned or busy)");
    }
    results.push_back(std::move(result));
  }
  return results;
}

}  // namespace tokenmem::pool
