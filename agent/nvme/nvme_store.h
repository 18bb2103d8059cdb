// NvmeStore: one pool's blocks on NVMe, in fixed-size slots of preallocated
// segment files (format: nvme/block_format.h), written with O_DIRECT through
// io_uring. The store knows slots, keys and bytes; which key lives in which
// slot is the caller's index, rebuilt at start from what Open recovers.
//
// Each segment file starts with a compact slot table (64 bytes per slot:
// key, length, data CRC32C, generation). The store keeps the tables in
// memory (64 bytes per slot of capacity), so Open reads only the tables,
// not the data, and Read checks key and length without touching the disk;
// the data's CRC is still verified against the entry on every Read.
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
// - Write returns after the data and the slot's table page have both been
//   written with O_DIRECT (the two writes are in flight together; the
//   table page is written with every entry on it that was already
//   acknowledged, so concurrent writers to one table page never undo each
//   other). Invalidate writes the table page alone. The files are
//   preallocated at Open and their sizes made durable then (fdatasync once
//   per created or resized file, fsync of the directory), so no later write
//   changes file metadata that finding the data depends on. Hence no
//   fdatasync per write: once Write returns, the block survives kill -9 of
//   the agent.
// - A crash or power loss during a Write never serves wrong bytes: a table
//   entry that reached the disk without its data (or with part of it)
//   describes data whose CRC fails, so Read reports kCorruption (a counted
//   miss); a data write without its entry leaves the old entry, whose CRC
//   fails against the new bytes, or a free slot; a torn table page leaves
//   each entry either old, new or failing its own checksum (free). Power
//   loss may lose writes still in the device's volatile cache and revert a
//   first write into a preallocated region to zeros, with the same
//   outcomes. Sync() (and the destructor, when anything was written)
//   flushes the device cache for callers that want more.
// - A tombstone lost to power loss can bring a deleted block back at the
//   next Open; it is the exact block that was written under that key.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <map>
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
  uint64_t bytes_read = 0;         // device bytes (data rounded up to 4096)
  uint64_t bytes_written = 0;      // device bytes (data rounded up to 4096, table pages)
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
  // Then reads every segment's slot table (large reads, many in flight; the
  // data areas are not read) and puts the live blocks in *recovered
  // (cleared first; may be null); their slots are allocated, all others
  // free. Entries failing their checksum count as free (one log line gives
  // the count). When one key is in several slots the highest generation
  // wins (then the latest stored_unix_ms, then the highest slot); the
  // others are tombstoned and freed.
  //
  // Errors: kInvalidArgument for bad options; kNotFound when the parent of
  // the directory is missing; kFailedPrecondition when the directory was
  // made with another block_size (the message names both), holds segment
  // files of another format version (the message says what to do) or is
  // locked;
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

  // Stores `data` (at most block_size bytes) in `slot` under `key`: the
  // data (straight from `data` when it is whole 4 KiB pages at a 4 KiB-
  // aligned address, else through a bounce buffer) in a few large writes
  // in flight together, and the slot's table entry, whose CRC32C of the
  // data is computed while the data is in flight. kInvalidArgument for a
  // slot beyond the capacity or data longer than block_size; kIoError when
  // a write fails (the slot then holds nothing, its old contents or a
  // block that fails its checksum). Does not check that the slot is
  // allocated.
  Status Write(uint32_t slot, const BlockKey& key, uint64_t generation, uint64_t stored_unix_ms,
               std::span<const std::byte> data);

  // Reads the block in `slot` and puts its data at the start of `out`;
  // returns the data length. When `out` is 4096-aligned and holds the
  // block rounded up to 4096 bytes, the data is read straight into it (no
  // copy); on any error its contents are unspecified. Key and length come
  // from the in-memory table (no I/O for a miss); the data's CRC32C is
  // computed as its pieces arrive and checked against the table entry.
  // kNotFound: the slot holds another key, a tombstone or nothing.
  // kInvalidArgument: slot beyond the capacity, or out.size() is smaller
  //   than the block (the message gives the block's length).
  // kCorruption: the data fails its checksum (counted in
  //   stats().checksum_failures).
  // kIoError: the read failed.
  Result<uint32_t> Read(uint32_t slot, const BlockKey& expected, std::span<std::byte> out);

  // Overwrites the slot's table entry with a tombstone (one table page
  // write) so the block is never recovered (the data area is not touched).
  // Does not free the slot.
  Status Invalidate(uint32_t slot);

  // fdatasync of every segment file: flushes the device's write cache so
  // completed writes also survive power loss.
  Status Sync();

  NvmeIoStats stats() const;

  // The segment file and byte offset of `slot`'s data area. For tests and
  // tools. slot < capacity_slots().
  std::pair<std::filesystem::path, uint64_t> SlotLocation(uint32_t slot) const;
  // The segment file and byte offset of `slot`'s 64-byte table entry.
  std::pair<std::filesystem::path, uint64_t> SlotEntryLocation(uint32_t slot) const;

 private:
  // Counts one finished write (time, bytes, errors) and passes its status on.
  Status CountWrite(uint32_t slot, std::chrono::steady_clock::time_point started, uint64_t bytes,
                    const Status& s);
  struct Segment {
    std::unique_ptr<UringFile> file;
    uint32_t slots = 0;
    // Table entries below this index may describe blocks; the others are
    // left from a larger capacity and are cleared at Open.
    uint32_t valid_entries = 0;
    bool created = false;  // made by this Open: its table is all zeros
    AlignedBuffer table;   // the segment's slot table, as on disk
  };
  // Group commit of one table page: changed counts entry updates, durable
  // the last update known to be on disk; one write of a page is in flight
  // at a time, so the page that lands last holds every update before it.
  struct PageState {
    uint64_t changed = 0;
    uint64_t durable = 0;
    bool writing = false;
  };
  struct Stripe {
    std::mutex mu;  // guards the PageStates and table bytes of its pages
    std::condition_variable cv;
  };
  static constexpr size_t kStripes = 64;
  struct Counters {
    std::atomic<uint64_t> reads{0}, writes{0}, bytes_read{0}, bytes_written{0};
    std::atomic<uint64_t> checksum_failures{0}, io_errors{0};
    std::atomic<uint64_t> read_ns_total{0}, write_ns_total{0};
  };
  class ScopedBuffer;

  NvmeStore(const NvmeStoreOptions& options, uint32_t capacity_slots, int lock_fd);
  Status OpenSegments();
  // Segment files all of an older format version move to a subdirectory
  // (format-<v>-moved-<unix ms>) and leave `existing`; the tier starts
  // empty. Newer versions, mixed versions and damaged files stay for the
  // full check to refuse.
  Status MoveAsideOlderFormat(std::map<uint32_t, std::filesystem::path>* existing);
  Status Recover(std::vector<RecoveredBlock>* recovered);
  UringFile& FileOf(uint32_t slot) const { return *segments_[slot / slots_per_segment_].file; }
  uint64_t OffsetOf(uint32_t slot) const {
    return data_offset_ + uint64_t{slot % slots_per_segment_} * block_size_;
  }
  std::byte* EntryOf(uint32_t slot) {
    return segments_[slot / slots_per_segment_].table.data() +
           uint64_t{slot % slots_per_segment_} * kTableEntrySize;
  }
  // Puts `entry` in the in-memory table and returns once a write of its
  // table page holding it has completed; adds the bytes this call wrote.
  Status CommitEntry(const SlotEntry& entry, uint64_t* bytes_written);
  // One O_DIRECT write of a 4096-byte table page (not through the rings:
  // it runs while the caller holds one for its data).
  Status WriteTablePage(uint32_t segment, uint32_t page, const std::byte* bytes);
  Result<AlignedBuffer> TakeBuffer();
  void ReturnBuffer(AlignedBuffer buffer);

  const std::filesystem::path directory_;
  const uint64_t block_size_;
  const uint32_t capacity_slots_;
  const uint64_t requested_segment_bytes_;
  const uint32_t queue_depth_;
  const uint32_t io_rings_;
  uint32_t slots_per_segment_ = 0;  // fixed by Open
  uint64_t data_offset_ = 0;        // fixed by Open: DataOffset(slots_per_segment_)
  uint32_t pages_per_segment_ = 0;  // table pages per segment file
  int lock_fd_;                     // the directory, flock-ed while open

  std::shared_ptr<UringQueue> queue_;
  std::vector<Segment> segments_;
  std::vector<PageState> pages_;  // segment * pages_per_segment_ + page; under its stripe
  mutable std::array<Stripe, kStripes> stripes_;

  // Allocation state: caller-serialised; used_ is atomic so it can be read
  // from any thread.
  std::vector<uint32_t> free_list_;  // a stack of free slots
  std::vector<uint8_t> allocated_;   // per slot: 1 when allocated
  std::atomic<uint32_t> used_{0};

  // Reusable bounce buffers of block_size_ bytes, so a Read or Write does
  // not allocate.
  std::mutex buffers_mu_;
  std::vector<AlignedBuffer> buffers_;  // guarded by buffers_mu_
  size_t max_pooled_buffers_;

  std::atomic<bool> dirty_{false};  // written since Open or the last Sync
  Counters counters_;
};

}  // namespace tokenmem::nvme
