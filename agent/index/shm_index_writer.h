// ShmIndexWriter: the agent's side of a pool's shared-memory block index
// (layout and reader protocol: proto/include/tokenmem/layout/shm_index.h).
//
// The pool publishes every block here so that clients can find and read
// memory-tier blocks without asking the agent. Positions never move: the
// pool remembers each block's position and updates or tombstones it there.
//
// Not thread-safe: one writer, under the pool's lock. Readers in any thread
// or process may run concurrently (that is the point).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "tier/memory_segment.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"
#include "tokenmem/layout/shm_index.h"

namespace tokenmem::index {

struct EntryFields {
  uint32_t tier = 0;
  uint32_t slot = 0;
  uint32_t length = 0;
  uint32_t checksum = 0;
  uint64_t generation = 0;
};

class ShmIndexWriter {
 public:
  // A table with room for `max_blocks` live blocks (capacity: the next power
  // of two >= 2 * max_blocks, so probes stay short).
  static Result<std::unique_ptr<ShmIndexWriter>> Create(const std::string& pool_name,
                                                        uint64_t max_blocks, uint64_t block_size,
                                                        const layout::TierGeometry (&tiers)[3]);

  // Publishes a new block; returns its position. RESOURCE_EXHAUSTED only if
  // the table is full (cannot happen while blocks <= max_blocks).
  Result<uint64_t> Insert(const BlockKey& key, const EntryFields& fields);
  // Changes where the block at `position` lives (or its length...).
  void Update(uint64_t position, const EntryFields& fields);
  // Removes the block at `position`; readers see a miss from now on.
  void Remove(uint64_t position);

  // Tells every client that the pool is gone (IndexHeader::state becomes
  // kIndexClosed, release): their SDKs drop their mappings and report it.
  void MarkClosed();
  bool closed() const;

  // Whether a client read the entry since the last call (clears the mark).
  bool TakeAccessed(uint64_t position);

  const layout::ClientArea& client_area() const { return *client_area_; }
  int index_fd() const { return index_.fd(); }
  int client_area_fd() const { return client_segment_.fd(); }
  uint64_t index_bytes() const { return index_.size(); }
  uint64_t client_area_bytes() const { return client_segment_.size(); }
  uint64_t capacity() const { return capacity_; }
  uint64_t live() const { return live_; }
  const void* base() const { return index_.data(); }

 private:
  ShmIndexWriter(tier::MemorySegment index, tier::MemorySegment client, uint64_t capacity);
  void Write(layout::IndexEntry& e, uint32_t state, const BlockKey* key, const EntryFields* fields);

  tier::MemorySegment index_;
  tier::MemorySegment client_segment_;
  uint64_t capacity_;
  layout::IndexEntry* entries_;
  layout::ClientArea* client_area_;
  std::atomic<uint8_t>* accessed_;
  uint64_t live_ = 0;
};

}  // namespace tokenmem::index
