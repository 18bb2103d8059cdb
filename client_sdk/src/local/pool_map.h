// PoolMap: one attached pool's memory in this process: its block index
// (read-only), its client area (read-write), the memory segments of its
// DRAM and CXL tiers (read-only: the agent seals them against every other
// writer) and, for a writable lease, this connection's staging segment
// (read-write), where puts are written before COMMIT copies them in.
//
// Thread safety: Locate() and the accessors are lock-free and may run on any
// thread at any time. AddSegment() and Drop() must be serialized by the
// caller; AddSegment publishes a segment with a release store that Locate()
// pairs with an acquire load. Nothing is unmapped before the PoolMap is
// destroyed, so an address that Locate() returned stays valid as long as the
// PoolMap; Drop() replaces the contents behind those addresses with zero
// pages (so readers racing it copy zeros, which closed() then disowns).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "local/fd.h"
#include "tokenmem/client.h"
#include "tokenmem/common/status.h"
#include "tokenmem/layout/local_protocol.h"
#include "tokenmem/layout/shm_index.h"

namespace tokenmem::client_internal {

inline constexpr uint32_t kMemoryTiers = 2;  // 0 DRAM, 1 CXL; NVMe is never mapped

class PoolMap {
 public:
  // Maps the index and the client area that ATTACH sent, and checks the
  // index header: magic, version, entry size, capacity, sizes, tier
  // geometry and pool name. kInternal when the agent sent something that
  // does not fit the layout; kIoError when a mapping fails.
  static Result<std::unique_ptr<PoolMap>> Create(std::string_view pool_name,
                                                 const layout::AttachReply& reply,
                                                 UniqueFd index_fd, UniqueFd client_area_fd);

  const void* index() const { return index_.base(); }
  const layout::IndexHeader& header() const {
    return *static_cast<const layout::IndexHeader*>(index_.base());
  }
  uint64_t capacity() const { return capacity_; }
  uint64_t block_size() const { return block_size_; }
  bool read_only() const { return read_only_; }
  // Writes go through the staging segment (layout::kAttachStaging).
  bool staging() const { return staging_slots_ != 0; }
  uint32_t staging_slots() const { return staging_slots_; }
  // The pool has scope: cluster: misses are worth a FETCH (the agent asks
  // the key's owner on another node).
  bool cluster() const { return cluster_; }
  layout::ClientArea& client_area() const {
    return *static_cast<layout::ClientArea*>(client_area_.base());
  }
  // One byte per index entry, set by readers (CLOCK's second chance).
  uint8_t* accessed() const {
    return static_cast<uint8_t*>(client_area_.base()) + sizeof(layout::ClientArea);
  }

  enum class Where { kMapped, kUnmapped, kInvalid };
  // The agent closed the pool (deleted or replaced it), or Drop() ran.
  bool closed() const {
    return dropped_.load(std::memory_order_acquire) ||
           header().state.load(std::memory_order_acquire) == layout::kIndexClosed;
  }
  // Lets go of the pool's memory so the agent's deletion can free it: every
  // mapping is replaced in place (MAP_FIXED) by anonymous zero pages, which
  // cost nothing until written. closed() is true from before the first
  // replacement on.
  void Drop();
  bool dropped() const { return dropped_.load(std::memory_order_acquire); }

  // Where `length` bytes of memory-tier slot `slot` are: kMapped with
  // *address; kUnmapped with *segment (ask the agent for it); kInvalid when
  // the tier, slot or length cannot be right for this pool.
  Where Locate(uint32_t tier, uint32_t slot, uint64_t length, std::byte** address,
               uint32_t* segment) const;

  // True when segment `segment` of `tier` is mapped.
  bool HasSegment(uint32_t tier, uint32_t segment) const;

  // Every memory segment mapped now: its address and length.
  std::vector<tokenmem::IoVec> MappedSegments() const;

  // Maps one segment (PROT_READ for read-only pools, else read-write). A
  // segment already mapped is left as it is. kInternal for a tier or
  // segment number outside the pool's geometry or a descriptor smaller
  // than `info.bytes`; kIoError when mmap fails.
  Status AddSegment(const layout::SegmentInfo& info, UniqueFd fd);

  // Maps the staging segment that ATTACH sent (read-write). kInternal when
  // its geometry does not fit the pool's block size or the descriptor.
  Status AddStaging(const layout::StagingInfo& info, UniqueFd fd);
  // Staging slot `slot`, or nullptr when it cannot hold `length` bytes.
  std::byte* StagingSlot(uint32_t slot, uint64_t length) const;

 private:
  struct Segment {
    std::atomic<std::byte*> base{nullptr};
    uint64_t bytes = 0;  // written before `base` is published
  };
  struct TierMap {
    // The geometry as attach found it: read once, so nothing the shared
    // header says later can send a reader out of bounds.
    layout::TierGeometry geometry{};
    uint32_t count = 0;  // segments the geometry allows
    std::unique_ptr<Segment[]> segments;
  };

  PoolMap() = default;

  Mapping index_;
  Mapping client_area_;
  uint64_t capacity_ = 0;
  uint64_t block_size_ = 0;
  bool read_only_ = false;
  bool cluster_ = false;
  uint32_t flags_ = 0;  // AttachReply::flags
  std::atomic<bool> dropped_{false};
  Mapping staging_;
  uint32_t staging_slots_ = 0;
  uint64_t staging_slot_bytes_ = 0;
  TierMap tiers_[kMemoryTiers];
  std::vector<Mapping> segment_mappings_;  // owned; appended under the caller's lock
};

}  // namespace tokenmem::client_internal
