#include "index/shm_index_writer.h"

#include <new>

namespace tokenmem::index {

using layout::IndexEntry;

ShmIndexWriter::ShmIndexWriter(tier::MemorySegment index, tier::MemorySegment client,
                               uint64_t capacity)
    : index_(std::move(index)),
      client_segment_(std::move(client)),
      capacity_(capacity),
      entries_(layout::Entries(static_cast<void*>(index_.data()))),
      client_area_(reinterpret_cast<layout::ClientArea*>(client_segment_.data())),
      accessed_(reinterpret_cast<std::atomic<uint8_t>*>(client_segment_.data() +
                                                        sizeof(layout::ClientArea))) {}

Result<std::unique_ptr<ShmIndexWriter>> ShmIndexWriter::Create(
    const std::string& pool_name, uint64_t max_blocks, uint64_t block_size,
    const layout::TierGeometry (&tiers)[3]) {
  if (max_blocks == 0) return InvalidArgument("an index needs room for at least one block");
  uint64_t capacity = 16;
  while (capacity < 2 * max_blocks) capacity <<= 1;
  TM_ASSIGN_OR_RETURN(auto index, tier::MemorySegment::Create("tokenmem:" + pool_name + ":index",
                                                              layout::IndexBytes(capacity), {}));
  TM_ASSIGN_OR_RETURN(auto client,
                      tier::MemorySegment::Create("tokenmem:" + pool_name + ":clients",
                                                  layout::ClientAreaBytes(capacity), {},
                                                  tier::SegmentWriters::kAnyHolder));
  // Memory from a fresh memfd is zero: every entry is empty with seq 0.
  auto* header = new (index.data()) layout::IndexHeader{};
  header->magic = layout::kIndexMagic;
  header->version = layout::kIndexVersion;
  header->entry_bytes = sizeof(IndexEntry);
  header->capacity = capacity;
  header->block_size = block_size;
  for (int t = 0; t < 3; ++t) header->tiers[t] = tiers[t];
  pool_name.copy(header->pool_name, sizeof(header->pool_name) - 1);
  auto* entries = layout::Entries(static_cast<void*>(index.data()));
  for (uint64_t i = 0; i < capacity; ++i) new (&entries[i]) IndexEntry{};
  new (client.data()) layout::ClientArea{};
  // The index segment is sealed against writers other than this mapping
  // (SegmentWriters::kAgentOnly): clients can only read it.
  return std::unique_ptr<ShmIndexWriter>(
      new ShmIndexWriter(std::move(index), std::move(client), capacity));
}

void ShmIndexWriter::MarkClosed() {
  auto* header = reinterpret_cast<layout::IndexHeader*>(index_.data());
  header->state.store(layout::kIndexClosed, std::memory_order_release);
}

bool ShmIndexWriter::closed() const {
  const auto* header = reinterpret_cast<const layout::IndexHeader*>(index_.data());
  return header->state.load(std::memory_order_acquire) == layout::kIndexClosed;
}

void ShmIndexWriter::Write(IndexEntry& e, uint32_t state, const BlockKey* key,
                           const EntryFields* fields) {
  const uint32_t seq = e.seq.load(std::memory_order_relaxed);
  e.seq.store(seq + 1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  e.state.store(state, std::memory_order_relaxed);
  if (key) {
    e.key_hi.store(key->hi, std::memory_order_relaxed);
    e.key_lo.store(key->lo, std::memory_order_relaxed);
  }
  if (fields) {
    e.tier.store(fields->tier, std::memory_order_relaxed);
    e.length.store(fields->length, std::memory_order_relaxed);
    e.slot.store(fields->slot, std::memory_order_relaxed);
    e.checksum.store(fields->checksum, std::memory_order_relaxed);
    e.generation.store(fields->generation, std::memory_order_relaxed);
  }
  e.seq.store(seq + 2, std::memory_order_release);
}

Result<uint64_t> ShmIndexWriter::Insert(const BlockKey& key, const EntryFields& fields) {
  uint64_t pos = layout::Home(key.hi, key.lo, capacity_);
  for (uint64_t probes = 0; probes < capacity_; ++probes, pos = (pos + 1) & (capacity_ - 1)) {
    IndexEntry& e = entries_[pos];
    if (e.state.load(std::memory_order_relaxed) != layout::kEntryLive) {
      accessed_[pos].store(0, std::memory_order_relaxed);
      Write(e, layout::kEntryLive, &key, &fields);
      ++live_;
      return pos;
    }
  }
  return ResourceExhausted("the shared index is full");
}

void ShmIndexWriter::Update(uint64_t position, const EntryFields& fields) {
  Write(entries_[position], layout::kEntryLive, nullptr, &fields);
}

void ShmIndexWriter::Remove(uint64_t position) {
  Write(entries_[position], layout::kEntryTombstone, nullptr, nullptr);
  --live_;
}

bool ShmIndexWriter::TakeAccessed(uint64_t position) {
  if (accessed_[position].load(std::memory_order_relaxed) == 0) return false;
  accessed_[position].store(0, std::memory_order_relaxed);
  return true;
}

}  // namespace tokenmem::index
