#include "tier/memory_arena.h"

#include <algorithm>
#include <cassert>
#include <utility>

#include "tokenmem/common/log.h"

namespace tokenmem::tier {
namespace {

constexpr uint64_t kSlotAlignment = 4096;
// UINT32_MAX stays free as an "invalid slot" value for callers.
constexpr uint64_t kMaxSlots = UINT32_MAX - 1;

}  // namespace

Result<std::unique_ptr<MemoryArena>> MemoryArena::Create(MemoryArenaOptions options) {
  const std::string what = "memory arena \"" + options.name + "\": ";
  if (options.name.empty()) return InvalidArgument("memory arena: name is empty");
  if (options.slot_size == 0 || options.slot_size % kSlotAlignment != 0) {
    return InvalidArgument(what + "slot size " + std::to_string(options.slot_size) +
                           " is not a positive multiple of " + std::to_string(kSlotAlignment));
  }
  const uint64_t slots = options.capacity_bytes / options.slot_size;
  if (slots == 0) {
    return InvalidArgument(what + "capacity " + std::to_string(options.capacity_bytes) +
                           " bytes is smaller than one slot (" + std::to_string(options.slot_size) +
                           " bytes)");
  }
  if (slots > kMaxSlots) {
    return InvalidArgument(what + std::to_string(slots) + " slots exceed the limit of " +
                           std::to_string(kMaxSlots));
  }
  Status nodes = ValidateNumaNodes(options.numa_nodes);
  if (!nodes.ok()) return nodes.WithContext("memory arena \"" + options.name + "\"");
  const uint64_t per_segment =
      std::clamp<uint64_t>(options.segment_bytes / options.slot_size, 1, slots);
  return std::unique_ptr<MemoryArena>(new MemoryArena(
      std::move(options), static_cast<uint32_t>(slots), static_cast<uint32_t>(per_segment)));
}

MemoryArena::MemoryArena(MemoryArenaOptions options, uint32_t capacity_slots,
                         uint32_t slots_per_segment)
    : options_(std::move(options)),
      capacity_slots_(capacity_slots),
      slots_per_segment_(slots_per_segment),
      segment_count_(static_cast<uint32_t>((uint64_t{capacity_slots} + slots_per_segment - 1) /
                                           slots_per_segment)),
      allocated_(capacity_slots, false),
      generations_(new std::atomic<uint64_t>[capacity_slots]),
      bases_(new std::atomic<std::byte*>[segment_count_]) {
  // Free and Allocate never allocate memory: the free list can hold every slot.
  free_list_.reserve(capacity_slots_);
  for (uint32_t i = 0; i < capacity_slots_; ++i)
    generations_[i].store(0, std::memory_order_relaxed);
  for (uint32_t i = 0; i < segment_count_; ++i) bases_[i].store(nullptr, std::memory_order_relaxed);
}

MemoryArena::~MemoryArena() = default;

Status MemoryArena::MapNextSegment() {
  const uint32_t index = static_cast<uint32_t>(segments_.size());
  assert(index < segment_count_);
  const uint32_t first = index * slots_per_segment_;
  const uint32_t count = std::min(slots_per_segment_, capacity_slots_ - first);
  const uint64_t bytes = uint64_t{count} * options_.slot_size;
  const std::string name = options_.name + ":" + std::to_string(index);
  Result<MemorySegment> seg = MemorySegment::Create(name, bytes, options_.numa_nodes);
  if (!seg.ok()) {
    return IoError("memory arena \"" + options_.name + "\": cannot create segment " +
                   std::to_string(index) + " (" + std::to_string(bytes) +
                   " bytes): " + seg.status().ToString());
  }
  std::byte* base = seg->data();
  segments_.push_back(std::move(seg).value());
  bases_[index].store(base, std::memory_order_release);
  return Status::Ok();
}

Result<uint32_t> MemoryArena::Allocate() {
  uint32_t slot;
  if (!free_list_.empty()) {
    slot = free_list_.back();
    free_list_.pop_back();
  } else if (next_unused_slot_ < capacity_slots_) {
    if (next_unused_slot_ / slots_per_segment_ >= segments_.size()) {
      TM_RETURN_IF_ERROR(MapNextSegment());
    }
    slot = next_unused_slot_++;
  } else {
    return ResourceExhausted("memory arena \"" + options_.name + "\": all " +
                             std::to_string(capacity_slots_) + " slots are in use");
  }
  allocated_[slot] = true;
  ++used_slots_;
  return slot;
}

void MemoryArena::Free(uint32_t slot) {
  if (slot >= capacity_slots_ || !allocated_[slot]) {
    TM_LOG(Error, "tier") << "memory arena \"" << options_.name << "\": Free of slot " << slot
                          << ", which is not allocated; ignored";
    assert(false && "MemoryArena::Free of a slot that is not allocated");
    return;
  }
  // The bump must be visible before the next owner's writes to the slot, so
  // that a reader who sees those writes also sees the new generation.
#if defined(__SANITIZE_THREAD__)
  // ThreadSanitizer does not model fences (and warns about them); the
  // stronger RMW keeps its view of the ordering without one.
  generations_[slot].fetch_add(1, std::memory_order_seq_cst);
#else
  generations_[slot].fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
#endif
  allocated_[slot] = false;
  --used_slots_;
  free_list_.push_back(slot);
}

std::span<std::byte> MemoryArena::Slot(uint32_t slot) const {
  if (slot >= capacity_slots_) return {};
  std::byte* base = bases_[slot / slots_per_segment_].load(std::memory_order_acquire);
  if (base == nullptr) return {};
  return {base + uint64_t{slot % slots_per_segment_} * options_.slot_size, options_.slot_size};
}

uint64_t MemoryArena::Generation(uint32_t slot) const {
  if (slot >= capacity_slots_) return 0;
  return generations_[slot].load(std::memory_order_acquire);
}

bool MemoryArena::IsAllocated(uint32_t slot) const {
  return slot < capacity_slots_ && allocated_[slot];
}

std::vector<SegmentView> MemoryArena::Segments() const {
  std::vector<SegmentView> views;
  views.reserve(segments_.size());
  for (size_t i = 0; i < segments_.size(); ++i) {
    const uint32_t first = static_cast<uint32_t>(i) * slots_per_segment_;
    views.push_back({segments_[i].fd(), segments_[i].size(), first,
                     std::min(slots_per_segment_, capacity_slots_ - first)});
  }
  return views;
}

}  // namespace tokenmem::tier
