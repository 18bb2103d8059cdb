// MemoryArena: fixed-size slots carved from MemorySegments of one memory tier
// (one arena per pool and tier). Segments are created lazily, in slot order,
// when Allocate first needs a slot in them, and live until the arena dies.
// The arena knows nothing of keys; callers refer to slots by index, and
// other processes by (segment fd, offset) from Segments().
//
// Thread-safety: NOT thread-safe. The caller serialises all calls with its own
// lock, except Slot(), Generation(), options(), slot_size(), capacity_slots()
// and slots_per_segment(), which any thread may call at any time, concurrently
// with Allocate and Free.
//
// Generations: every Free bumps the slot's generation before the slot can be
// reused. A reader that copies a slot without the caller's lock does:
//   g1 = Generation(s); copy Slot(s); std::atomic_thread_fence(acquire);
//   g2 = Generation(s); the copy is valid only if g1 == g2 (and g1 is the
//   generation the reader's index entry recorded).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "tier/memory_segment.h"
#include "tokenmem/common/status.h"

namespace tokenmem::tier {

struct MemoryArenaOptions {
  std::string name;  // memfd name prefix, e.g. "tokenmem:chat:dram"; segment i is "<name>:<i>"
  uint64_t slot_size = 0;       // bytes per slot; a positive multiple of 4096
  uint64_t capacity_bytes = 0;  // capacity_slots = capacity_bytes / slot_size (at least 1)
  // Target segment size, rounded down to a multiple of slot_size (at least one
  // slot); the last segment may be smaller. Larger segments mean fewer fds and
  // mappings per client, smaller ones less memory committed ahead of use.
  uint64_t segment_bytes = 64ull << 20;
  std::vector<int> numa_nodes;  // empty: no binding
};

// One mapped segment as a client sees it: slot s of the segment lies at
// offset (s - first_slot) * slot_size in the fd.
struct SegmentView {
  int fd;
  uint64_t size;
  uint32_t first_slot;
  uint32_t slot_count;
};

class MemoryArena {
 public:
  // Checks the options and reserves the bookkeeping (about 13 bytes per slot);
  // maps nothing yet. kInvalidArgument when the name is empty, slot_size is 0
  // or not a multiple of 4096, capacity_bytes is below one slot, the slot
  // count exceeds 2^32 - 2, or a NUMA node is rejected by ValidateNumaNodes.
  static Result<std::unique_ptr<MemoryArena>> Create(MemoryArenaOptions options);

  MemoryArena(const MemoryArena&) = delete;
  MemoryArena& operator=(const MemoryArena&) = delete;
  ~MemoryArena();  // unmaps every segment: no Slot() span may outlive the arena

  const MemoryArenaOptions& options() const { return options_; }
  uint32_t capacity_slots() const { return capacity_slots_; }
  uint32_t used_slots() const { return used_slots_; }
  uint32_t free_slots() const { return capacity_slots_ - used_slots_; }
  uint64_t slot_size() const { return options_.slot_size; }
  uint32_t slots_per_segment() const { return slots_per_segment_; }

  // A free slot: the most recently freed one (its bytes are likely still in
  // cache), else the lowest never-used slot, creating its segment when needed.
  // Slot contents are left as they were (zero for a fresh segment).
  // kResourceExhausted when all slots are in use; kIoError (with the reason)
  // when a new segment cannot be created, in which case nothing changes.
  Result<uint32_t> Allocate();

  // Returns an allocated slot to the free list and bumps its generation.
  // Freeing a slot that is not allocated (or out of range) is a programming
  // error: it asserts in debug builds and is otherwise ignored.
  void Free(uint32_t slot);

  // The slot_size() bytes of `slot` when its segment is mapped (true of every
  // slot Allocate has returned); an empty span for any other slot.
  std::span<std::byte> Slot(uint32_t slot) const;

  // The slot's generation (acquire load); 0 until its first Free. 0 for a slot
  // out of range.
  uint64_t Generation(uint32_t slot) const;

  // Whether `slot` is currently allocated (false when out of range).
  bool IsAllocated(uint32_t slot) const;

  // The segments mapped so far, in slot order.
  std::vector<SegmentView> Segments() const;

 private:
  MemoryArena(MemoryArenaOptions options, uint32_t capacity_slots, uint32_t slots_per_segment);
  Status MapNextSegment();

  const MemoryArenaOptions options_;
  const uint32_t capacity_slots_;
  const uint32_t slots_per_segment_;
  const uint32_t segment_count_;  // segments needed for the full capacity

  uint32_t used_slots_ = 0;
  uint32_t next_unused_slot_ = 0;    // slots below it have been handed out at least once
  std::vector<uint32_t> free_list_;  // stack: back() is the most recently freed slot
  std::vector<bool> allocated_;
  std::unique_ptr<std::atomic<uint64_t>[]> generations_;
  // Base address of each segment (nullptr until mapped), read lock-free by Slot().
  std::unique_ptr<std::atomic<std::byte*>[]> bases_;
  std::vector<MemorySegment> segments_;
};

}  // namespace tokenmem::tier
