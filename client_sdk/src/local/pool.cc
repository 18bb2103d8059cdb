// The read and write paths of tokenmem::Pool (see tokenmem/client.h).
#include <algorithm>
#include <cstring>
#include <string>

#include "local/pool_impl.h"
#include "local/wire.h"
#include "tokenmem/common/crc32c.h"
#include "tokenmem/layout/local_protocol.h"
#include "tokenmem/layout/shm_index.h"

namespace tokenmem {
namespace {

using client_internal::ItemError;
using client_internal::NoteFailure;
using client_internal::PayloadReader;
using client_internal::PayloadWriter;
using client_internal::PiecesBytes;
using client_internal::PoolMap;
using client_internal::RemotePool;

// Attempts at one block before a reader that keeps losing the race to the
// agent reports a miss.
constexpr int kReadAttempts = 16;
// Rounds of FETCH for blocks that keep landing back on NVMe.
constexpr int kFetchRounds = 2;
// How many keys ahead LookupPrefix prefetches index entries.
constexpr size_t kPrefetchAhead = 16;
// LookupPrefix in a cluster pool asks the agent for the unmatched rest of
// the chain in growing windows: the agent asks the owners key by key, so a
// tail that no node holds costs one small window, and a long hit costs a
// few cheap local round trips. At most kClusterPrefixKeys keys per call,
// since each hit takes a slot of this node's memory.
constexpr size_t kClusterPrefixFirstWindow = 16;
constexpr size_t kClusterPrefixKeys = 256;

void CopyOut(std::span<const IoVec> pieces, const std::byte* src, size_t length) {
  for (const IoVec& p : pieces) {
    if (length == 0) break;
    const size_t n = std::min(p.len, length);
    layout::CopyFromSlot(p.data, src, n);
    src += n;
    length -= n;
  }
}

// Copies the pieces into the slot and returns their CRC32C.
uint32_t CopyIn(std::span<const IoVec> pieces, std::byte* dst) {
  uint32_t crc = 0;
  for (const IoVec& p : pieces) {
    if (p.len == 0) continue;
    layout::CopyToSlot(dst, p.data, p.len);
    crc = Crc32c(std::span<const std::byte>(static_cast<const std::byte*>(p.data), p.len), crc);
    dst += p.len;
  }
  return crc;
}

}  // namespace

Pool::Impl& PoolImplForTesting(Pool& pool) { return *pool.impl_; }

Pool::Pool(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Pool::~Pool() = default;

const std::string& Pool::name() const { return impl_->name; }
uint64_t Pool::block_size() const {
  return impl_->remote ? impl_->remote->block_size() : impl_->map->block_size();
}
bool Pool::read_only() const {
  return impl_->remote ? impl_->remote->read_only() : impl_->map->read_only();
}
bool Pool::remote() const { return impl_->remote != nullptr; }

Status Pool::Impl::Live() {
  TM_RETURN_IF_ERROR(session->LeaseStatus());
  if (map->closed()) {
    bool first = false;
    {
      std::lock_guard lock(map_mu);
      first = !map->dropped();
      map->Drop();
    }
    if (first && !session->broken()) {
      // Lets the agent free this connection's staging segment for the pool
      // now (any request naming the pool does; an empty ABORT is harmless).
      PayloadWriter w;
      w.Put(layout::AbortRequest{pool_id, 0});
      (void)session->Call(layout::kAbort, w.bytes());
    }
    return FailedPrecondition("pool '" + name +
                              "' was deleted or replaced on the agent; attach it again");
  }
  return Status::Ok();
}

void Pool::Impl::AddTally(const Tally& t) {
  if (map->closed()) return;  // the client area may be zero pages now
  layout::ClientArea& area = map->client_area();
  for (uint32_t i = 0; i < layout::kTierCount; ++i) {
    if (t.hits[i] != 0) area.hits[i].fetch_add(t.hits[i], std::memory_order_relaxed);
    if (t.bytes[i] != 0) area.bytes_read[i].fetch_add(t.bytes[i], std::memory_order_relaxed);
  }
  if (t.misses != 0) area.misses.fetch_add(t.misses, std::memory_order_relaxed);
}

template <typename Copy>
Pool::Impl::LocalRead Pool::Impl::ReadLocalVia(const BlockKey& key, size_t capacity, Tally* tally,
                                               Copy&& copy) {
  LocalRead out;
  const void* index = map->index();
  for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
    layout::EntryView v;
    const layout::FindResult found = layout::FindEntry(index, key.hi, key.lo, &v);
    if (found == layout::FindResult::kMissing) break;
    if (found == layout::FindResult::kBusy) continue;
    if (v.tier >= client_internal::kMemoryTiers) {
      out.on_nvme = true;
      return out;
    }
    if (v.length > capacity) {
      out.result = {StatusCode::kInvalidArgument, v.length};
      return out;
    }
    std::byte* src = nullptr;
    uint32_t segment = 0;
    switch (map->Locate(v.tier, v.slot, v.length, &src, &segment)) {
      case PoolMap::Where::kMapped:
        break;
      case PoolMap::Where::kUnmapped: {
        Status s = MapSegment(v.tier, segment);
        if (!s.ok()) {
          out.result = {s.code(), 0};
          return out;
        }
        continue;
      }
      case PoolMap::Where::kInvalid:
        // A consistent entry that names no valid slot: the index is wrong.
        if (layout::StillValid(index, v)) {
          out.result = {StatusCode::kInternal, 0};
          return out;
        }
        continue;
    }
    if (!copy(std::span<const std::byte>(src, v.length))) {
      out.result = {StatusCode::kInternal, 0};
      return out;
    }
    if (after_copy_for_testing) after_copy_for_testing(key);
    if (!layout::StillValid(index, v)) continue;
    if (map->closed()) {
      // The copy may have raced Drop() and read zeros: never hand it out.
      out.result = {StatusCode::kFailedPrecondition, 0};
      return out;
    }
    uint8_t* accessed = map->accessed() + v.position;
    if (__atomic_load_n(accessed, __ATOMIC_RELAXED) == 0) {
      __atomic_store_n(accessed, uint8_t{1}, __ATOMIC_RELAXED);
    }
    tally->hits[v.tier] += 1;
    tally->bytes[v.tier] += v.length;
    out.result = {StatusCode::kOk, v.length};
    return out;
  }
  out.result = {StatusCode::kNotFound, 0};
  return out;
}

Pool::Impl::LocalRead Pool::Impl::ReadLocal(const BlockKey& key, std::span<const IoVec> pieces,
                                            size_t capacity, Tally* tally) {
  return ReadLocalVia(key, capacity, tally, [&](std::span<const std::byte> bytes) {
    CopyOut(pieces, bytes.data(), bytes.size());
    return true;
  });
}

Status Pool::Impl::MapSegment(uint32_t tier, uint32_t segment) {
  std::lock_guard lock(map_mu);
  if (map->HasSegment(tier, segment)) return Status::Ok();  // another thread mapped it
  PayloadWriter w;
  w.Put(layout::SegmentsRequest{pool_id, tier, segment, 0});
  auto reply = session->Call(layout::kSegments, w.bytes());
  if (!reply.ok()) return reply.status().WithContext("SEGMENTS");
  PayloadReader r(reply->payload);
  layout::SegmentsReply head{};
  std::vector<layout::SegmentInfo> infos;
  if (!r.Get(&head) || !r.GetArray(head.segment_count, &infos) ||
      reply->fds.size() != head.segment_count) {
    return Internal("malformed SEGMENTS reply from the agent");
  }
  for (size_t i = 0; i < infos.size(); ++i) {
    TM_RETURN_IF_ERROR(map->AddSegment(infos[i], std::move(reply->fds[i])));
  }
  if (!map->HasSegment(tier, segment)) {
    return Internal("the agent did not send segment " + std::to_string(segment) + " of tier " +
                    std::to_string(tier));
  }
  return Status::Ok();
}

Status Pool::Impl::KeysCall(uint16_t type, std::span<const BlockKey> keys,
                            std::span<StatusCode> codes) {
  const bool per_key = type != layout::kLookup;
  if (Status live = Live(); !live.ok()) {
    for (StatusCode& c : codes) c = live.code();
    return live;
  }
  Status first;
  for (size_t begin = 0; begin < keys.size(); begin += layout::kMaxBatch) {
    const size_t n = std::min<size_t>(layout::kMaxBatch, keys.size() - begin);
    PayloadWriter w;
    w.Reserve(sizeof(layout::KeysRequest) + n * sizeof(layout::Key));
    w.Put(layout::KeysRequest{pool_id, static_cast<uint32_t>(n)});
    for (size_t i = 0; i < n; ++i) w.Put(layout::Key{keys[begin + i].hi, keys[begin + i].lo});
    auto reply = session->Call(type, w.bytes());
    Status batch = reply.status();
    std::vector<int32_t> item_codes;
    if (reply.ok()) {
      PayloadReader r(reply->payload);
      layout::BatchReply head{};
      if (!r.Get(&head) || (per_key && (head.count != n || !r.GetArray(n, &item_codes)))) {
        batch = Internal("malformed batch reply from the agent");
      }
    }
    for (size_t i = 0; i < n && !codes.empty(); ++i) {
      StatusCode c = batch.code();
      if (batch.ok() && per_key) {
        const int32_t raw = item_codes[i];
        c = raw >= 0 && raw <= static_cast<int32_t>(StatusCode::kInternal)
                ? static_cast<StatusCode>(raw)
                : StatusCode::kInternal;
      }
      codes[begin + i] = c;
      NoteFailure(&first, c, keys[begin + i]);
    }
    if (!batch.ok() && first.ok()) first = batch;
  }
  return first;
}

Status Pool::Put(const BlockKey& key, std::span<const std::byte> data) {
  const IoVec piece{const_cast<std::byte*>(data.data()), data.size()};
  const BlockIo item{key, std::span<const IoVec>(&piece, 1)};
  IoResult result;
  Status s = PutMany(std::span<const BlockIo>(&item, 1), std::span<IoResult>(&result, 1));
  if (!s.ok()) return s;
  return Status::Ok();
}

Result<size_t> Pool::Get(const BlockKey& key, std::span<std::byte> out) {
  const IoVec piece{out.data(), out.size()};
  const BlockIo item{key, std::span<const IoVec>(&piece, 1)};
  IoResult result;
  Status s = GetMany(std::span<const BlockIo>(&item, 1), std::span<IoResult>(&result, 1));
  if (!s.ok()) return s;
  if (result.code == StatusCode::kNotFound) return NotFound("block " + key.ToHex() + " not found");
  return result.length;
}

std::vector<IoVec> Pool::MappedRegions() const {
  if (impl_->remote) return {};
  return impl_->map->MappedSegments();
}

Result<size_t> Pool::ReadInPlace(const BlockKey& key, const InPlaceCopy& copy) {
  if (impl_->remote) {
    return FailedPrecondition("in-place reads need the local path (the pool is remote)");
  }
  TM_RETURN_IF_ERROR(impl_->Live());
  Impl::Tally tally;
  Status copy_error;
  auto via = [&](std::span<const std::byte> bytes) {
    copy_error = copy(bytes);
    return copy_error.ok();
  };
  // A block on NVMe (or, in a cluster pool, on another node) is fetched
  // into memory first, as GetMany does.
  for (int round = 0; round <= kFetchRounds; ++round) {
    Impl::LocalRead r = impl_->ReadLocalVia(key, impl_->map->block_size(), &tally, via);
    if (!copy_error.ok()) return copy_error;
    const bool missing = r.result.code == StatusCode::kNotFound;
    const bool ask = r.on_nvme || (missing && impl_->map->cluster() && round == 0);
    if (!ask || round == kFetchRounds) {
      if (r.result.code == StatusCode::kOk) {
        impl_->AddTally(tally);
        return r.result.length;
      }
      if (missing || r.on_nvme) {
        ++tally.misses;
        impl_->AddTally(tally);
        return NotFound("block " + key.ToHex() + " not found");
      }
      if (Status live = impl_->Live(); !live.ok()) return live;
      return Status(r.result.code, "in-place read of block " + key.ToHex() + " failed");
    }
    StatusCode code = StatusCode::kOk;
    Status fetch = impl_->KeysCall(layout::kFetch, std::span<const BlockKey>(&key, 1),
                                   std::span<StatusCode>(&code, 1));
    if (code != StatusCode::kOk) {
      ++tally.misses;
      impl_->AddTally(tally);
      if (code == StatusCode::kNotFound) return NotFound("block " + key.ToHex() + " not found");
      return fetch.ok() ? Status(code, "FETCH of block " + key.ToHex() + " failed") : fetch;
    }
  }
  return NotFound("block " + key.ToHex() + " not found");
}

Status Pool::GetMany(std::span<const BlockIo> items, std::span<IoResult> results) {
  if (items.size() != results.size()) {
    return InvalidArgument("GetMany: " + std::to_string(items.size()) + " items but " +
                           std::to_string(results.size()) + " results");
  }
  if (impl_->remote) return impl_->remote->GetMany(items, results);
  if (Status live = impl_->Live(); !live.ok()) {
    for (IoResult& r : results) r = {live.code(), 0};
    return live;
  }
  Impl::Tally tally;
  std::vector<size_t> on_nvme;
  // Cluster pools: keys missing here, which another node may hold.
  std::vector<size_t> elsewhere;
  const bool cluster = impl_->map->cluster();
  for (size_t i = 0; i < items.size(); ++i) {
    Impl::LocalRead r =
        impl_->ReadLocal(items[i].key, items[i].pieces, PiecesBytes(items[i].pieces), &tally);
    if (r.on_nvme) {
      on_nvme.push_back(i);
      results[i] = {StatusCode::kNotFound, 0};
    } else {
      results[i] = r.result;
      if (cluster && r.result.code == StatusCode::kNotFound) elsewhere.push_back(i);
    }
  }
  Status first;
  // Blocks read after a FETCH were served from NVMe (the agent brought them
  // into memory for this read): they count as NVMe hits, once. Blocks that
  // came from another node count where they are read from.
  Impl::Tally fetched;
  for (int round = 0; round < kFetchRounds && (!on_nvme.empty() || !elsewhere.empty()); ++round) {
    // One FETCH for both kinds: the NVMe keys first, then the missing ones.
    std::vector<size_t> wanted = std::move(on_nvme);
    const size_t nvme_count = wanted.size();
    wanted.insert(wanted.end(), elsewhere.begin(), elsewhere.end());
    elsewhere.clear();
    std::vector<BlockKey> keys;
    keys.reserve(wanted.size());
    for (size_t i : wanted) keys.push_back(items[i].key);
    std::vector<StatusCode> codes(keys.size());
    Status fetch = impl_->KeysCall(layout::kFetch, keys, codes);
    // Keep the agent's own message for a whole-request failure (the NVMe
    // keys come first, so it is about one of them, as they report it).
    if (!fetch.ok() && first.ok() && fetch.code() != StatusCode::kNotFound && nvme_count > 0 &&
        (wanted.size() == nvme_count || codes[0] == fetch.code())) {
      first = fetch.WithContext("FETCH");
    }
    std::vector<size_t> again;
    for (size_t j = 0; j < wanted.size(); ++j) {
      const size_t i = wanted[j];
      const bool from_nvme = j < nvme_count;
      if (codes[j] != StatusCode::kOk) {
        // A key missing here stays a miss whatever asking the cluster gave.
        if (from_nvme) results[i] = {codes[j], 0};
        continue;
      }
      Impl::LocalRead r =
          impl_->ReadLocal(items[i].key, items[i].pieces, PiecesBytes(items[i].pieces),
                           from_nvme ? &fetched : &tally);
      if (r.on_nvme) {
        again.push_back(i);
      } else {
        results[i] = r.result;
      }
    }
    on_nvme = std::move(again);
  }
  for (size_t t = 0; t < layout::kTierCount; ++t) {
    tally.hits[layout::kTierCount - 1] += fetched.hits[t];
    tally.bytes[layout::kTierCount - 1] += fetched.bytes[t];
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (results[i].code == StatusCode::kNotFound) ++tally.misses;
    if (results[i].code == StatusCode::kInvalidArgument && first.ok()) {
      first =
          client_internal::TooSmall(items[i].key, PiecesBytes(items[i].pieces), results[i].length);
    }
    NoteFailure(&first, results[i].code, items[i].key);
  }
  impl_->AddTally(tally);
  if (Status live = impl_->Live(); !live.ok()) return live;  // closed mid-call
  return first;
}

Status Pool::PutMany(std::span<const BlockIo> items, std::span<IoResult> results) {
  if (items.size() != results.size()) {
    return InvalidArgument("PutMany: " + std::to_string(items.size()) + " items but " +
                           std::to_string(results.size()) + " results");
  }
  if (read_only()) {
    for (IoResult& r : results) r = {StatusCode::kPermissionDenied, 0};
    return PermissionDenied("pool '" + impl_->name + "' is attached with a read-only lease");
  }
  if (impl_->remote) return impl_->remote->PutMany(items, results);
  if (Status live = impl_->Live(); !live.ok()) {
    for (IoResult& r : results) r = {live.code(), 0};
    return live;
  }
  Status first;
  const uint64_t limit = block_size();
  std::vector<size_t> todo;
  todo.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    const size_t bytes = PiecesBytes(items[i].pieces);
    results[i] = {StatusCode::kOk, bytes};
    if (bytes > limit) {
      results[i].code = StatusCode::kInvalidArgument;
      if (first.ok()) {
        first = ItemError(
            StatusCode::kInvalidArgument, items[i].key,
            std::to_string(bytes) + " bytes exceed the pool's block size " + std::to_string(limit));
      }
      continue;
    }
    todo.push_back(i);
  }

  Impl& impl = *impl_;
  // With a staging segment a round is at most its slot count, and rounds
  // of concurrent callers take turns (they share the slots).
  const bool staged = impl.map->staging();
  const size_t per_round = staged ? impl.map->staging_slots() : layout::kMaxBatch;
  std::unique_lock<std::mutex> staging_lock(impl.put_mu, std::defer_lock);
  if (staged) staging_lock.lock();
  for (size_t begin = 0; begin < todo.size(); begin += per_round) {
    const size_t n = std::min<size_t>(per_round, todo.size() - begin);
    const std::span<const size_t> batch(todo.data() + begin, n);
    auto fail_batch = [&](const Status& s, size_t from) {
      for (size_t j = from; j < n; ++j) results[batch[j]].code = s.code();
      if (first.ok()) first = s;
    };

    PayloadWriter reserve;
    reserve.Put(layout::ReserveRequest{impl.pool_id, static_cast<uint32_t>(n)});
    auto reserved = impl.session->Call(layout::kReserve, reserve.bytes());
    if (!reserved.ok()) {
      fail_batch(reserved.status().WithContext("RESERVE"), 0);
      continue;
    }
    PayloadReader rr(reserved->payload);
    layout::ReserveReply head{};
    std::vector<layout::SlotGrant> grants;
    if (!rr.Get(&head) || head.count > n || !rr.GetArray(head.count, &grants)) {
      fail_batch(Internal("malformed RESERVE reply from the agent"), 0);
      continue;
    }
    if (grants.size() < n) {
      fail_batch(ResourceExhausted("the agent granted " + std::to_string(grants.size()) + " of " +
                                   std::to_string(n) + " slots"),
                 grants.size());
    }

    std::vector<layout::CommitItem> commits;
    std::vector<size_t> committed;  // item index of each commit
    std::vector<uint64_t> aborts;
    commits.reserve(grants.size());
    committed.reserve(grants.size());
    for (size_t j = 0; j < grants.size(); ++j) {
      const size_t i = batch[j];
      const layout::SlotGrant& g = grants[j];
      const size_t bytes = results[i].length;
      std::byte* dst = nullptr;
      uint32_t segment = 0;
      PoolMap::Where where = PoolMap::Where::kInvalid;
      if (g.tier == layout::kStagingTier && staged) {
        dst = impl.map->StagingSlot(g.slot, bytes);
        if (dst != nullptr) where = PoolMap::Where::kMapped;
      } else if (!staged) {
        where = impl.map->Locate(g.tier, g.slot, bytes, &dst, &segment);
      }
      Status s;
      if (where == PoolMap::Where::kUnmapped) {
        s = impl.MapSegment(g.tier, segment);
        if (s.ok()) where = impl.map->Locate(g.tier, g.slot, bytes, &dst, &segment);
      }
      if (s.ok() && where != PoolMap::Where::kMapped) {
        s = Internal("the agent granted slot " + std::to_string(g.slot) + " of tier " +
                     std::to_string(g.tier) + ", which cannot hold " + std::to_string(bytes) +
                     " bytes");
      }
      if (!s.ok()) {
        results[i].code = s.code();
        if (first.ok()) first = s.WithContext("block " + items[i].key.ToHex());
        aborts.push_back(g.reservation);
        continue;
      }
      const uint32_t crc = CopyIn(items[i].pieces, dst);
      commits.push_back(
          {g.reservation, items[i].key.hi, items[i].key.lo, static_cast<uint32_t>(bytes), crc});
      committed.push_back(i);
    }

    if (!commits.empty()) {
      PayloadWriter w;
      w.Reserve(sizeof(layout::CommitRequest) + commits.size() * sizeof(layout::CommitItem));
      w.Put(layout::CommitRequest{impl.pool_id, static_cast<uint32_t>(commits.size())});
      for (const auto& c : commits) w.Put(c);
      auto reply = impl.session->Call(layout::kCommit, w.bytes());
      Status whole = reply.status().WithContext("COMMIT");
      std::vector<int32_t> codes;
      if (reply.ok()) {
        PayloadReader r(reply->payload);
        layout::BatchReply bh{};
        if (!r.Get(&bh) || bh.count != commits.size() || !r.GetArray(bh.count, &codes)) {
          whole = Internal("malformed COMMIT reply from the agent");
        }
      }
      for (size_t k = 0; k < committed.size(); ++k) {
        const size_t i = committed[k];
        if (!whole.ok()) {
          results[i].code = whole.code();
          if (!impl.session->broken()) aborts.push_back(commits[k].reservation);
          continue;
        }
        const int32_t raw = codes[k];
        results[i].code = raw >= 0 && raw <= static_cast<int32_t>(StatusCode::kInternal)
                              ? static_cast<StatusCode>(raw)
                              : StatusCode::kInternal;
        NoteFailure(&first, results[i].code, items[i].key);
      }
      if (!whole.ok() && first.ok()) first = whole;
    }

    if (!aborts.empty() && !impl.session->broken()) {
      PayloadWriter w;
      w.Put(layout::AbortRequest{impl.pool_id, static_cast<uint32_t>(aborts.size())});
      for (uint64_t a : aborts) w.Put(a);
      // Best effort: the agent also frees uncommitted slots when we disconnect.
      (void)impl.session->Call(layout::kAbort, w.bytes());
    }
  }
  for (size_t i = 0; i < items.size(); ++i) {
    if (results[i].code != StatusCode::kOk) results[i].length = 0;
  }
  if (!first.ok()) {
    if (Status live = impl.Live(); !live.ok()) return live;  // the reason behind the failures
  }
  return first;
}

bool Pool::Contains(const BlockKey& key) const {
  if (impl_->remote) return impl_->remote->Contains(key);
  if (!impl_->Live().ok()) return false;
  auto probe = [&] {
    layout::EntryView v;
    for (int attempt = 0; attempt < kReadAttempts; ++attempt) {
      const layout::FindResult r = layout::FindEntry(impl_->map->index(), key.hi, key.lo, &v);
      if (r != layout::FindResult::kBusy) return r == layout::FindResult::kFound;
    }
    return false;
  };
  if (probe()) return true;
  if (!impl_->map->cluster()) return false;
  // Another node may hold it: FETCH brings it here when it does.
  StatusCode code = StatusCode::kNotFound;
  (void)impl_->KeysCall(layout::kFetch, std::span<const BlockKey>(&key, 1),
                        std::span<StatusCode>(&code, 1));
  return code == StatusCode::kOk && probe();
}

uint32_t Pool::LookupPrefix(std::span<const BlockKey> keys) {
  if (impl_->remote) return impl_->remote->LookupPrefix(keys);
  if (!impl_->Live().ok()) return 0;
  const void* index = impl_->map->index();
  const layout::IndexEntry* entries = layout::Entries(index);
  const uint64_t capacity = impl_->map->capacity();
  auto prefetch = [&](size_t i) {
    __builtin_prefetch(&entries[layout::Home(keys[i].hi, keys[i].lo, capacity)], 0, 3);
  };
  const size_t n = std::min<size_t>(keys.size(), UINT32_MAX);
  std::vector<BlockKey> on_nvme;
  uint32_t matched = 0;
  // Extends `matched` over keys[matched, end) while the index holds them.
  auto probe = [&](size_t end) {
    for (size_t i = matched; i < std::min(end, matched + kPrefetchAhead); ++i) prefetch(i);
    for (size_t i = matched; i < end; ++i) {
      if (i + kPrefetchAhead < end) prefetch(i + kPrefetchAhead);
      layout::EntryView v;
      layout::FindResult r = layout::FindResult::kBusy;
      for (int attempt = 0; attempt < kReadAttempts && r == layout::FindResult::kBusy; ++attempt) {
        r = layout::FindEntry(index, keys[i].hi, keys[i].lo, &v);
      }
      if (r != layout::FindResult::kFound) break;
      if (v.tier >= client_internal::kMemoryTiers) on_nvme.push_back(keys[i]);
      ++matched;
    }
  };
  probe(n);
  if (matched < n && impl_->map->cluster()) {
    // Asks for the rest of the chain in growing windows; each FETCH brings
    // the blocks other nodes hold into this node's memory, then the index
    // is probed again from where it stopped.
    const size_t limit = std::min(n, matched + kClusterPrefixKeys);
    size_t window = kClusterPrefixFirstWindow;
    while (matched < limit) {
      const size_t end = std::min(limit, matched + window);
      std::vector<StatusCode> codes(end - matched);
      // The index tells what arrived, whatever the request answered.
      (void)impl_->KeysCall(layout::kFetch, keys.subspan(matched, end - matched), codes);
      probe(end);
      if (matched < end) break;  // the chain ends in this window
      window = std::min<size_t>(window * 2, layout::kMaxBatch);
    }
  }
  layout::ClientArea& area = impl_->map->client_area();
  area.prefix_lookups.fetch_add(1, std::memory_order_relaxed);
  area.prefix_keys_matched.fetch_add(matched, std::memory_order_relaxed);
  if (!on_nvme.empty()) {
    // Starts the agent promoting; the count stands whatever it answers.
    (void)impl_->KeysCall(layout::kLookup, on_nvme, {});
  }
  return matched;
}

namespace {
// Removing needs a writable lease, which the agent checks too; refusing
// here spares the round trip. Pins are the agent's to allow or refuse.
Status Single(Pool::Impl& impl, bool refuse, uint16_t type, const BlockKey& key) {
  if (refuse) {
    return PermissionDenied("pool '" + impl.name + "' is attached with a read-only lease");
  }
  StatusCode code = StatusCode::kOk;
  Status s =
      impl.KeysCall(type, std::span<const BlockKey>(&key, 1), std::span<StatusCode>(&code, 1));
  if (!s.ok()) return s;
  if (code == StatusCode::kNotFound) return NotFound("block " + key.ToHex() + " not found");
  return Status::Ok();
}

Status Many(Pool::Impl& impl, bool refuse, uint16_t type, std::span<const BlockKey> keys,
            std::span<StatusCode> results) {
  if (keys.size() != results.size()) {
    return InvalidArgument(std::to_string(keys.size()) + " keys but " +
                           std::to_string(results.size()) + " results");
  }
  if (refuse) {
    std::fill(results.begin(), results.end(), StatusCode::kPermissionDenied);
    return PermissionDenied("pool '" + impl.name + "' is attached with a read-only lease");
  }
  return impl.KeysCall(type, keys, results);
}
}  // namespace

Status Pool::Remove(const BlockKey& key) {
  if (impl_->remote) return impl_->remote->Remove(key);
  return Single(*impl_, read_only(), layout::kRemove, key);
}
Status Pool::Pin(const BlockKey& key) {
  if (impl_->remote) return RemotePool::PinRefused();
  return Single(*impl_, false, layout::kPin, key);
}
Status Pool::Unpin(const BlockKey& key) {
  if (impl_->remote) return RemotePool::PinRefused();
  return Single(*impl_, false, layout::kUnpin, key);
}

Status Pool::RemoveMany(std::span<const BlockKey> keys, std::span<StatusCode> results) {
  if (impl_->remote) return impl_->remote->RemoveMany(keys, results);
  return Many(*impl_, read_only(), layout::kRemove, keys, results);
}
Status Pool::PinMany(std::span<const BlockKey> keys, std::span<StatusCode> results) {
  if (impl_->remote) return RemotePool::PinManyRefused(keys, results);
  return Many(*impl_, false, layout::kPin, keys, results);
}
Status Pool::UnpinMany(std::span<const BlockKey> keys, std::span<StatusCode> results) {
  if (impl_->remote) return RemotePool::PinManyRefused(keys, results);
  return Many(*impl_, false, layout::kUnpin, keys, results);
}

}  // namespace tokenmem
