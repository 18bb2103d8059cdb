#include "local/pool_map.h"

#include <sys/mman.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace tokenmem::client_internal {
namespace {

constexpr uint64_t kMaxSegmentsPerTier = 1u << 20;

Result<uint64_t> FdSize(int fd, std::string_view what) {
  struct stat st {};
  if (::fstat(fd, &st) != 0) return ErrnoError("fstat of the " + std::string(what), errno);
  return static_cast<uint64_t>(st.st_size);
}

Result<Mapping> MapFd(int fd, uint64_t bytes, int prot, std::string_view what) {
  TM_ASSIGN_OR_RETURN(uint64_t size, FdSize(fd, what));
  if (size < bytes) {
    return Internal("the agent sent a " + std::string(what) + " of " + std::to_string(size) +
                    " bytes, expected " + std::to_string(bytes));
  }
  // MAP_POPULATE: the page tables are filled now, not by faults during the
  // first gets (a writer used to fault them in by writing its slots; with
  // staging nobody in this process touches a segment before reading it).
  void* base = ::mmap(nullptr, bytes, prot, MAP_SHARED | MAP_POPULATE, fd, 0);
  if (base == MAP_FAILED) return ErrnoError("mmap of the " + std::string(what), errno);
  return Mapping(base, bytes);
}

}  // namespace

Result<std::unique_ptr<PoolMap>> PoolMap::Create(std::string_view pool_name,
                                                 const layout::AttachReply& reply,
                                                 UniqueFd index_fd, UniqueFd client_area_fd) {
  std::unique_ptr<PoolMap> map(new PoolMap());
  map->read_only_ = (reply.flags & layout::kAttachReadOnly) != 0;
  map->flags_ = reply.flags;
  map->cluster_ = (reply.flags & layout::kAttachClusterScope) != 0;
  if (reply.index_bytes < layout::kIndexHeaderBytes) {
    return Internal("the agent reported an index of " + std::to_string(reply.index_bytes) +
                    " bytes");
  }
  TM_ASSIGN_OR_RETURN(map->index_,
                      MapFd(index_fd.get(), reply.index_bytes, PROT_READ, "block index"));
  const auto& h = map->header();
  if (h.magic != layout::kIndexMagic || h.version != layout::kIndexVersion ||
      h.entry_bytes != sizeof(layout::IndexEntry)) {
    return Internal("the pool's block index has an unknown format (magic, version or entry size)");
  }
  const uint64_t capacity = h.capacity;
  if (capacity == 0 || (capacity & (capacity - 1)) != 0 || capacity > (1ull << 40) ||
      layout::IndexBytes(capacity) > reply.index_bytes) {
    return Internal("the pool's block index has a bad capacity " + std::to_string(capacity));
  }
  map->capacity_ = capacity;
  map->block_size_ = h.block_size;
  if (map->block_size_ == 0) return Internal("the pool's block index has block size 0");
  const size_t name_length = strnlen(h.pool_name, sizeof(h.pool_name));
  if (std::string_view(h.pool_name, name_length) != pool_name) {
    return Internal("the agent sent the index of pool '" + std::string(h.pool_name, name_length) +
                    "' for pool '" + std::string(pool_name) + "'");
  }
  for (uint32_t t = 0; t < kMemoryTiers; ++t) {
    const layout::TierGeometry g = h.tiers[t];  // a copy: validated, then kept
    if (!g.present) continue;
    if (g.slots_per_segment == 0 || g.slot_bytes == 0 || g.capacity_slots > (1ull << 32)) {
      return Internal("the pool's block index has a bad geometry for tier " + std::to_string(t));
    }
    const uint64_t count = (g.capacity_slots + g.slots_per_segment - 1) / g.slots_per_segment;
    if (count > kMaxSegmentsPerTier) {
      return Internal("the pool's tier " + std::to_string(t) + " has too many segments");
    }
    map->tiers_[t].geometry = g;
    map->tiers_[t].count = static_cast<uint32_t>(count);
    map->tiers_[t].segments = std::make_unique<Segment[]>(count);
  }
  if (reply.client_area_bytes < layout::ClientAreaBytes(capacity)) {
    return Internal("the agent reported a client area of " +
                    std::to_string(reply.client_area_bytes) + " bytes; the index needs " +
                    std::to_string(layout::ClientAreaBytes(capacity)));
  }
  TM_ASSIGN_OR_RETURN(map->client_area_, MapFd(client_area_fd.get(), reply.client_area_bytes,
                                               PROT_READ | PROT_WRITE, "client area"));
  return map;
}

PoolMap::Where PoolMap::Locate(uint32_t tier, uint32_t slot, uint64_t length, std::byte** address,
                               uint32_t* segment) const {
  if (tier >= kMemoryTiers || tiers_[tier].count == 0) return Where::kInvalid;
  const layout::TierGeometry& g = tiers_[tier].geometry;
  if (slot >= g.capacity_slots || length > g.slot_bytes) return Where::kInvalid;
  const uint32_t seg = slot / g.slots_per_segment;
  const uint64_t offset = static_cast<uint64_t>(slot % g.slots_per_segment) * g.slot_bytes;
  const Segment& s = tiers_[tier].segments[seg];
  std::byte* base = s.base.load(std::memory_order_acquire);
  if (base == nullptr) {
    *segment = seg;
    return Where::kUnmapped;
  }
  if (offset + length > s.bytes) return Where::kInvalid;
  *address = base + offset;
  return Where::kMapped;
}

bool PoolMap::HasSegment(uint32_t tier, uint32_t segment) const {
  return tier < kMemoryTiers && segment < tiers_[tier].count &&
         tiers_[tier].segments[segment].base.load(std::memory_order_acquire) != nullptr;
}

Status PoolMap::AddSegment(const layout::SegmentInfo& info, UniqueFd fd) {
  if (info.tier >= kMemoryTiers || info.segment >= tiers_[info.tier].count) {
    return Internal("the agent sent segment " + std::to_string(info.segment) + " of tier " +
                    std::to_string(info.tier) + ", outside the pool's geometry");
  }
  Segment& s = tiers_[info.tier].segments[info.segment];
  if (s.base.load(std::memory_order_relaxed) != nullptr) return Status::Ok();
  if (info.bytes == 0) return Internal("the agent sent an empty segment");
  // Only an agent without staging hands out writable segments; one that
  // stages seals them, so PROT_WRITE would fail.
  const bool writable = !read_only_ && (flags_ & layout::kAttachStaging) == 0;
  const int prot = writable ? PROT_READ | PROT_WRITE : PROT_READ;
  TM_ASSIGN_OR_RETURN(Mapping m, MapFd(fd.get(), info.bytes, prot, "pool segment"));
  s.bytes = info.bytes;
  s.base.store(static_cast<std::byte*>(m.base()), std::memory_order_release);
  segment_mappings_.push_back(std::move(m));
  return Status::Ok();
}

Status PoolMap::AddStaging(const layout::StagingInfo& info, UniqueFd fd) {
  if (info.slots == 0 || info.slot_bytes < block_size_ || info.slots > layout::kMaxBatch ||
      info.bytes < uint64_t{info.slots} * info.slot_bytes) {
    return Internal("the agent sent a staging segment that cannot hold the pool's blocks");
  }
  TM_ASSIGN_OR_RETURN(staging_, MapFd(fd.get(), info.bytes, PROT_READ | PROT_WRITE,
                                      "staging segment"));
  staging_slot_bytes_ = info.slot_bytes;
  staging_slots_ = info.slots;
  return Status::Ok();
}

std::byte* PoolMap::StagingSlot(uint32_t slot, uint64_t length) const {
  if (slot >= staging_slots_ || length > staging_slot_bytes_) return nullptr;
  return static_cast<std::byte*>(staging_.base()) + uint64_t{slot} * staging_slot_bytes_;
}

namespace {
// Replaces [base, base + bytes) with anonymous zero pages; the old file
// pages are released by the same call.
void ZeroInPlace(void* base, size_t bytes) {
  if (base == nullptr || bytes == 0) return;
  void* p = ::mmap(base, bytes, PROT_READ | PROT_WRITE,
                   MAP_FIXED | MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  // Failing leaves the file mapped: its memory is released when the
  // PoolMap is destroyed instead. Nothing else goes wrong.
  (void)p;
}
}  // namespace

void PoolMap::Drop() {
  if (dropped_.exchange(true, std::memory_order_acq_rel)) return;
  for (const TierMap& tier : tiers_) {
    for (uint32_t i = 0; i < tier.count; ++i) {
      std::byte* base = tier.segments[i].base.load(std::memory_order_acquire);
      if (base != nullptr) ZeroInPlace(base, tier.segments[i].bytes);
    }
  }
  ZeroInPlace(staging_.base(), staging_.bytes());
  ZeroInPlace(client_area_.base(), client_area_.bytes());
  // The index last: a reader that loaded the capacity before sees only
  // empty entries (misses), one that loads it after sees 0 and probes none.
  ZeroInPlace(index_.base(), index_.bytes());
}

std::vector<tokenmem::IoVec> PoolMap::MappedSegments() const {
  std::vector<tokenmem::IoVec> out;
  for (const TierMap& tier : tiers_) {
    for (uint32_t i = 0; i < tier.count; ++i) {
      std::byte* base = tier.segments[i].base.load(std::memory_order_acquire);
      if (base != nullptr) out.push_back({base, tier.segments[i].bytes});
    }
  }
  return out;
}

}  // namespace tokenmem::client_internal
