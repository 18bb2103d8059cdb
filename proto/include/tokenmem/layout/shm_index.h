// The shared-memory block index of one pool: its layout, and the lock-free
// read that clients run against it. Written only by the agent; mapped
// read-only by clients of the pool. Format version 1; values are frozen.
//
// Memory (one memfd, mapped at any address: offsets only, never pointers):
//   [0, 4096)                      IndexHeader
//   [4096, 4096 + 64 * capacity)   IndexEntry[capacity], open addressing,
//                                  linear probing from Home(key)
// A second memfd, the pool's "client area", is mapped read-write by every
// client of the pool: ClientArea followed by one access byte per entry.
// The index memfd (and every data segment) is sealed F_SEAL_FUTURE_WRITE:
// no client can map it writable, however it reopens the descriptor.
//
// One writer (the agent, under its pool lock), many readers. An entry is
// a seqlock: the writer makes `seq` odd, changes the fields, makes `seq`
// even again (release). The agent changes an entry BEFORE it frees or
// reuses the slot the entry named, so a reader that copied a slot and then
// finds `seq` unchanged knows the copy holds the committed bytes. Readers
// never write the index, take no lock and pin nothing: a dead reader leaks
// nothing and never blocks the agent.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>

namespace tokenmem::layout {

inline constexpr uint64_t kIndexMagic = 0x31584449'4D4B5454ull;  // "TTKMIDX1"
inline constexpr uint32_t kIndexVersion = 1;
inline constexpr size_t kIndexHeaderBytes = 4096;
inline constexpr uint32_t kTierCount = 3;  // 0 DRAM, 1 CXL, 2 NVMe

enum EntryState : uint32_t {
  kEntryEmpty = 0,      // never used: ends a probe
  kEntryLive = 1,       // holds a block
  kEntryTombstone = 2,  // held a block: probing continues past it
};

// Per memory tier: how a slot number becomes (segment, offset).
struct TierGeometry {
  uint32_t present;            // 1 when the pool has this tier
  uint32_t slots_per_segment;  // segment = slot / slots_per_segment
  uint64_t slot_bytes;         // offset = (slot % slots_per_segment) * slot_bytes
  uint64_t capacity_slots;
};

// IndexHeader::state. Added after version 1 shipped, in bytes that were
// zero, so 0 must mean "open".
enum IndexState : uint32_t {
  kIndexOpen = 0,
  // The pool was deleted or replaced: its blocks are gone from the agent and
  // the memory is released once clients unmap it. A client that sees this
  // drops its mappings and reports the pool as deleted; attaching again gets
  // the new pool, if there is one.
  kIndexClosed = 1,
};

struct IndexHeader {
  uint64_t magic;
  uint32_t version;
  uint32_t entry_bytes;  // sizeof(IndexEntry)
  uint64_t capacity;     // entries; a power of two
  uint64_t block_size;   // the pool's block size
  TierGeometry tiers[kTierCount];
  char pool_name[64];
  std::atomic<uint32_t> state;  // IndexState; written by the agent (release)
};
static_assert(offsetof(IndexHeader, state) == 168, "frozen layout");

struct alignas(64) IndexEntry {
  std::atomic<uint32_t> seq;    // odd while the agent writes the entry
  std::atomic<uint32_t> state;  // EntryState
  std::atomic<uint64_t> key_hi;
  std::atomic<uint64_t> key_lo;
  std::atomic<uint32_t> tier;  // 0 DRAM, 1 CXL, 2 NVMe (not readable in place)
  std::atomic<uint32_t> length;
  std::atomic<uint32_t> slot;      // slot number within the tier
  std::atomic<uint32_t> checksum;  // CRC32C of the data
  std::atomic<uint64_t> generation;
};
static_assert(sizeof(IndexEntry) == 64, "an index entry is one cache line");
static_assert(std::atomic<uint64_t>::is_always_lock_free &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "shared-memory atomics must be lock-free");

// Counters clients add to, read by the agent for its statistics.
struct ClientArea {
  std::atomic<uint64_t> hits[kTierCount];
  std::atomic<uint64_t> bytes_read[kTierCount];
  std::atomic<uint64_t> misses;
  std::atomic<uint64_t> prefix_lookups;
  std::atomic<uint64_t> prefix_keys_matched;
  uint8_t reserved[4096 - 9 * 8];
  // Followed by uint8_t accessed[capacity]: a client sets accessed[i] = 1
  // when it reads entry i; the agent's eviction gives such blocks a second
  // chance (CLOCK) and clears the byte.
};
static_assert(sizeof(ClientArea) == 4096);

inline size_t IndexBytes(uint64_t capacity) { return kIndexHeaderBytes + 64 * capacity; }
inline size_t ClientAreaBytes(uint64_t capacity) {
  return (sizeof(ClientArea) + capacity + 4095) / 4096 * 4096;
}

// Where probing for a key starts.
inline uint64_t Home(uint64_t key_hi, uint64_t key_lo, uint64_t capacity) {
  uint64_t h = key_lo ^ (key_hi * 0x9E3779B97F4A7C15ull);
  h ^= h >> 29;
  return h & (capacity - 1);
}

inline IndexEntry* Entries(void* index_base) {
  return reinterpret_cast<IndexEntry*>(static_cast<char*>(index_base) + kIndexHeaderBytes);
}
inline const IndexEntry* Entries(const void* index_base) {
  return reinterpret_cast<const IndexEntry*>(static_cast<const char*>(index_base) +
                                             kIndexHeaderBytes);
}

// A consistent copy of one live entry.
struct EntryView {
  uint64_t position;  // index of the entry in the table
  uint32_t seq;       // the even sequence the copy was taken at
  uint32_t tier;
  uint32_t length;
  uint32_t slot;
  uint32_t checksum;
  uint64_t generation;
};

enum class FindResult { kFound, kMissing, kBusy };

// Finds `key` without locks. kBusy when the entry kept changing (the caller
// may retry or treat it as a miss). Probes at most `capacity` entries.
inline FindResult FindEntry(const void* index_base, uint64_t key_hi, uint64_t key_lo,
                            EntryView* out) {
  const auto* header = static_cast<const IndexHeader*>(index_base);
  const uint64_t capacity = header->capacity;
  const IndexEntry* entries = Entries(index_base);
  uint64_t pos = Home(key_hi, key_lo, capacity);
  for (uint64_t probes = 0; probes < capacity; ++probes, pos = (pos + 1) & (capacity - 1)) {
    const IndexEntry& e = entries[pos];
    for (int attempt = 0;; ++attempt) {
      if (attempt == 64) return FindResult::kBusy;
      uint32_t s1 = e.seq.load(std::memory_order_acquire);
      if (s1 & 1) continue;
      uint32_t state = e.state.load(std::memory_order_relaxed);
      uint64_t hi = e.key_hi.load(std::memory_order_relaxed);
      uint64_t lo = e.key_lo.load(std::memory_order_relaxed);
      EntryView v{pos,
                  s1,
                  e.tier.load(std::memory_order_relaxed),
                  e.length.load(std::memory_order_relaxed),
                  e.slot.load(std::memory_order_relaxed),
                  e.checksum.load(std::memory_order_relaxed),
                  e.generation.load(std::memory_order_relaxed)};
      std::atomic_thread_fence(std::memory_order_acquire);
      if (e.seq.load(std::memory_order_relaxed) != s1) continue;
      if (state == kEntryEmpty) return FindResult::kMissing;
      if (state == kEntryLive && hi == key_hi && lo == key_lo) {
        *out = v;
        return FindResult::kFound;
      }
      break;  // another key or a tombstone: next position
    }
  }
  return FindResult::kMissing;
}

// True when the entry still holds what `view` saw: call after copying the
// block's bytes to know the copy is the committed block.
inline bool StillValid(const void* index_base, const EntryView& view) {
  std::atomic_thread_fence(std::memory_order_acquire);
  return Entries(index_base)[view.position].seq.load(std::memory_order_relaxed) == view.seq;
}

// Copies between slots and buffers. A reader may copy a slot while the
// agent reuses it (the copy is then discarded by StillValid); under
// ThreadSanitizer that race is spelled with relaxed atomics so the tool
// checks everything else.
inline void CopyFromSlot(void* dst, const void* src, size_t n) {
#if defined(__SANITIZE_THREAD__)
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < n; ++i) {
    d[i] = __atomic_load_n(s + i, __ATOMIC_RELAXED);
  }
#else
  std::memcpy(dst, src, n);
#endif
}

inline void CopyToSlot(void* dst, const void* src, size_t n) {
#if defined(__SANITIZE_THREAD__)
  auto* d = static_cast<unsigned char*>(dst);
  const auto* s = static_cast<const unsigned char*>(src);
  for (size_t i = 0; i < n; ++i) __atomic_store_n(d + i, s[i], __ATOMIC_RELAXED);
#else
  std::memcpy(dst, src, n);
#endif
}

}  // namespace tokenmem::layout
