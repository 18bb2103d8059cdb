// NvmeStore: one pool's blocks on NVMe, in fixed-size slots of preallocated
// segment files (format: nvme/block_format.h), written with O_DIRECT through
// io_uring. The store knows slots, keys and bytes; which key lives in which
// slot is the caller's index, rebuilt at start from what Open recovers.
//
// Thread safety:
// - Read, Write, Invalidate, stats, used_slots, free_slots and the other
//   const accessors may run from any number of threads at once, so callers
//   can do I/O outside their own locks.
// - Allocate and Release must be serialised by the caller (e.g. called only
//   under the pool's lock); they never block on I/O.
// - Writing or invalidating a slot while another thread reads or writes the
//   same slot is the caller's bug: the reader may see kCorruption.
// - No call may be running when the store is destroyed.
//
// Durability:
// - Write and Invalidate return after one O_DIRECT write has reached the
//   device (header and data in the same write). The files are preallocated
//   at Open and their sizes made durable then (fdatasync once per created or
//   resized file, fsync of the directory), so no later write changes file
//   metadata that finding the data depends on. Hence no fdatasync per
//   write: once Write returns, the block survives kill -9 of the agent.
// - Power loss may lose writes still in the device's volatile cache, and a
//   first write into a preallocated region (an unwritten extent) may read
//   back as zeros afterwards. Neither is ever served wrongly: a torn or lost
//   write leaves a header whose checksum fails (not recovered), a data area
//   whose CRC fails (Read says kCorruption) or a blank or older slot. Sync()
//   (and the destructor, when anything was written) flushes the device cache
//   for callers that want more.
// - A tombstone lost to power loss can bring a deleted block back at the
//   next Open; it is the exact block that was written under that key.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <mutex>
#include <span>
#include <utility>
#include <vector>

#include "nvme/aligned_buffer.h"
#include "nvme/block_format.h"
#include "nvme/uring_file.h"
#include "nvme/uring_queue.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::nvme {

struct NvmeStoreOptions {
  // The pool's directory; created if missing (its parent must exist, else
  // kNotFound). Only files named seg-NNNNNN.tmd (and leftovers named
  // seg-NNNNNN.tmd.tmp from an interrupted creation) are the store's.
  std::filesystem::path directory;
  uint64_t block_size = 0;      // largest block, a multiple of 4096
  uint64_t capacity_bytes = 0;  // capacity_slots = capacity_bytes / block_size (>= 1)
  // Bytes per segment file (segment header + slots), rounded down to whole
  // slots, at least one slot. Fixed when the first segment is created: an
  // existing directory keeps its own value.
  uint64_t segment_bytes = 256ull << 20;
  uint32_t queue_depth = 32;  // I/Os in flight per ring
  uint32_t io_rings = 4;      // threads that can have I/O in flight at once
};

// A live block found by Open.
struct RecoveredBlock {
  BlockKey key;
  uint32_t slot = 0;
  uint32_t length = 0;    // data bytes
  uint32_t checksum = 0;  // CRC32C of the data, as stored in the header
  uint64_t generation = 0;
  uint64_t stored_unix_ms = 0;
};

struct NvmeIoStats {
  uint64_t reads = 0;              // Read calls that reached the device
  uint64_t writes = 0;             // Write and Invalidate calls that reached the device
  uint64_t bytes_read = 0;         // device bytes (header + data rounded up to 4096)
  uint64_t bytes_written = 0;      // device bytes (header + data rounded up to 4096)
  uint64_t checksum_failures = 0;  // Reads that returned kCorruption
  uint64_t io_errors = 0;          // reads and writes that failed in the kernel or device
  uint64_t read_ns_total = 0;      // time spent in those reads
  uint64_t write_ns_total = 0;     // time spent in those writes
};

class NvmeStore {
 public:
  // Opens or creates the store in options.directory and recovers it.
  //
  // Creates the segment files the capacity needs (preallocated), grows a
  // short last segment, and shrinks or deletes segment files that lie
  // beyond a reduced capacity (their blocks are dropped; a log line says how
  // many slots). Other files in the directory are left alone. The directory
  // is locked (flock) while the store is open: a second Open of it, from
  // this process or another, fails with kFailedPrecondition.
  //
  // Then reads every slot header (large reads, many in flight) and puts the
  // live blocks in *recovered (cleared first; may be null); their slots are
  // allocated, all others free. Headers failing their checksum count as
  // free (one log line gives the count). When one key is in several slots
  // the highest generation wins (then the latest stored_unix_ms, then the
  // highest slot); the others are tombstoned and freed.
  //
  // Errors: kInvalidArgument for bad options; kNotFound when the parent of
  // the directory is missing; kFailedPrecondition when the directory was
  // made with another block_size (the message names both) or is locked;
  // kCorruption when a segment file's own header is unreadable;
  // kResourceExhausted when the disk is full; kIoError otherwise.
  static Result<std::unique_ptr<NvmeStore>> Open(const NvmeStoreOptions& options,
                                                 std::vector<RecoveredBlock>* recovered);
  ~NvmeStore();  // syncs the files when anything was written, then closes them
  NvmeStore(const NvmeStore&) = delete;
  NvmeStore& operator=(const NvmeStore&) = delete;

  uint32_t capacity_slots() const { return capacity_slots_; }
  uint32_t used_slots() const { return used_.load(std::memory_order_relaxed); }
  uint32_t free_slots() const { return capacity_slots_ - used_slots(); }
  uint64_t block_size() const { return block_size_; }
  std::filesystem::path directory() const { return directory_; }

  // Takes any free slot, in O(1). kResourceExhausted when none is free.
  // Caller-serialised (see the top of this file).
  Result<uint32_t> Allocate();
  // Frees `slot` in memory only; write a tombstone first (Invalidate) when
  // the block must not come back at the next Open. Releasing a slot that is
  // not allocated is ignored (and logged). Caller-serialised.
  void Release(uint32_t slot);

  // Stores `data` (at most block_size bytes) in `slot` under `key`, header
  // and data in one O_DIRECT write (or, for data that is whole 4 KiB pages
  // at a 4 KiB-aligned address, header and data side by side in one batch,
  // straight from `data`). kInvalidArgument for a slot beyond the
  // capacity or data longer than block_size; kIoError when the write fails
  // (the slot then holds either its old contents or a block that fails its
  // checksum). Does not check that the slot is allocated.
  Status Write(uint32_t slot, const BlockKey& key, uint64_t generation, uint64_t stored_unix_ms,
               std::span<const std::byte> data);

  // Reads the block in `slot` and puts its data at the start of `out`;
  // returns the data length. When `out` is 4096-aligned the data is read
  // straight into it (no copy); on any error its contents are unspecified.
  // kNotFound: the slot holds another key, a tombstone or nothing.
  // kInvalidArgument: slot beyond the capacity, or out.size() is smaller
  //   than the block (the message gives the block's length).
  // kCorruption: the header or the data fails its checksum or format
  //   (counted in stats().checksum_failures).
  // kIoError: the read failed.
  Result<uint32_t> Read(uint32_t slot, const BlockKey& expected, std::span<std::byte> out);

  // Overwrites the slot's header with a tombstone so the block is never
  // recovered (the data area is not touched). Does not free the slot.
  Status Invalidate(uint32_t slot);

  // fdatasync of every segment file: flushes the device's write cache so
  // completed writes also survive power loss.
  Status Sync();

  NvmeIoStats stats() const;

  // The segment file and byte offset of `slot`'s header; the data area
  // starts 4096 bytes later. For tests and tools. slot < capacity_slots().
  std::pair<std::filesystem::path, uint64_t> SlotLocation(uint32_t slot) const;

 private:
  Result<uint32_t> ReadSlot(uint32_t slot, const BlockKey& expected, std::span<std::byte> out,
                            bool allow_direct);
  Status WriteSlotPieces(uint32_t slot, std::span<const std::byte> header,
                         std::span<const std::byte> data);
  // Counts one finished write (time, bytes, errors) and passes its status on.
  Status CountWrite(uint32_t slot, std::chrono::steady_clock::time_point started, uint64_t bytes,
                    const Status& s);
  struct Segment {
    std::unique_ptr<UringFile> file;
    uint32_t slots = 0;
  };
  struct Counters {
    std::atomic<uint64_t> reads{0}, writes{0}, bytes_read{0}, bytes_written{0};
    std::atomic<uint64_t> checksum_failures{0}, io_errors{0};
    std::atomic<uint64_t> read_ns_total{0}, write_ns_total{0};
  };
  class ScopedBuffer;

  NvmeStore(const NvmeStoreOptions& options, uint32_t capacity_slots, int lock_fd);
  Status OpenSegments();
  Status Recover(std::vector<RecoveredBlock>* recovered);
  UringFile& FileOf(uint32_t slot) const { return *segments_[slot / slots_per_segment_].file; }
  uint64_t OffsetOf(uint32_t slot) const {
    return kSegmentHeaderSize + uint64_t{slot % slots_per_segment_} * slot_size_;
  }
  Result<AlignedBuffer> TakeBuffer();
  void ReturnBuffer(AlignedBuffer buffer);
  // One O_DIRECT write of `bytes` at the slot's header, timed and counted.
  Status WriteSlot(uint32_t slot, std::span<const std::byte> bytes);

  const std::filesystem::path directory_;
  const uint64_t block_size_;
  const uint64_t slot_size_;  // header + data area
  const uint32_t capacity_slots_;
  const uint64_t requested_segment_bytes_;
  const uint32_t queue_depth_;
  const uint32_t io_rings_;
  uint32_t slots_per_segment_ = 0;  // fixed by Open
  int lock_fd_;                     // the directory, flock-ed while open

  std::shared_ptr<UringQueue> queue_;
  std::vector<Segment> segments_;

  // Allocation state: caller-serialised; used_ is atomic so it can be read
  // from any thread.
  std::vector<uint32_t> free_list_;  // a stack of free slots
  std::vector<uint8_t> allocated_;   // per slot: 1 when allocated
  std::atomic<uint32_t> used_{0};

  // Reusable I/O buffers of slot_size_ bytes, so a Read or Write does not
  // allocate.
  std::mutex buffers_mu_;
  std::vector<AlignedBuffer> buffers_;  // guarded by buffers_mu_
  size_t max_pooled_buffers_;

  std::atomic<bool> dirty_{false};  // written since Open or the last Sync
  Counters counters_;
};

}  // namespace tokenmem::nvme
