#include "local/local_session.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "tokenmem/common/log.h"
#include "tokenmem/layout/shm_index.h"

namespace tokenmem::local {
namespace {

namespace L = layout;

// The most owner bytes one FETCH holds at once while it asks the owners.
constexpr size_t kOwnerFetchBytes = 64ull << 20;

// A writable connection's staging segment per attached pool: about this
// many bytes, and between kMinStagingSlots and kMaxBatch slots. It is what
// one reserve/commit round trip can carry; larger puts take more rounds.
constexpr uint64_t kStagingBytes = 16ull << 20;
constexpr uint32_t kMinStagingSlots = 2;

template <typename T>
bool ReadStruct(const Message& m, size_t offset, T* out) {
  if (m.payload.size() < offset + sizeof(T)) return false;
  std::memcpy(out, m.payload.data() + offset, sizeof(T));
  return true;
}

template <typename T>
void Append(std::vector<std::byte>* out, const T& value) {
  const auto* p = reinterpret_cast<const std::byte*>(&value);
  out->insert(out->end(), p, p + sizeof(T));
}

std::string FixedString(const char* data, size_t size) {
  return std::string(data, strnlen(data, size));
}

// An O_RDONLY descriptor for the same memfd. The seals are what keep a
// client from writing (it could reopen this one O_RDWR through /proc); the
// read-only descriptor states the intent and refuses writable mmap early.
Result<int> ReopenReadOnly(int fd) {
  std::string path = "/proc/self/fd/" + std::to_string(fd);
  int ro = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (ro < 0) return ErrnoError("reopen " + path + " read-only", errno);
  return ro;
}

// The operation label a request is timed under.
std::string_view OperationName(uint16_t type) {
  switch (type) {
    case L::kReserve:
    case L::kCommit:
    case L::kAbort:
      return "put";
    case L::kFetch:
      return "get";
    case L::kLookup:
      return "lookup_prefix";
    case L::kRemove:
      return "delete";
    case L::kPin:
      return "pin";
    case L::kUnpin:
      return "unpin";
    default:
      return "other";
  }
}

// Closes the descriptors it owns when the reply has gone out.
struct OwnedFds {
  std::vector<int> fds;
  ~OwnedFds() {
    for (int fd : fds) ::close(fd);
  }
};

}  // namespace

LocalSession::LocalSession(int fd, uint64_t owner, pool::PoolManager* pools,
                           pool::LeaseTable* leases, RequestObserver observer,
                           const std::atomic<remote::ClusterHooks*>* cluster)
    : fd_(fd),
      owner_(owner),
      pools_(pools),
      leases_(leases),
      observer_(std::move(observer)),
      cluster_(cluster) {}

LocalSession::~LocalSession() {
  for (const auto& a : attached_) {
    if (auto pool = a.pool.lock()) pool->Abort(owner_, {});
  }
}

void LocalSession::Run() {
  for (;;) {
    auto m = ReceiveMessage(fd_);
    if (!m.ok()) {
      if (m.status().code() != StatusCode::kUnavailable) {
        TM_LOG(WARN, "local") << "closing connection " << owner_ << ": " << m.status().ToString();
        SendError(fd_, L::kReply, 0, m.status()).ok();
      }
      return;
    }
    const auto started = std::chrono::steady_clock::now();
    Status s = Handle(*m);
    if (observer_) {
      observer_(OperationName(m->header.type), std::chrono::steady_clock::now() - started, s.ok());
    }
    if (!s.ok()) {
      TM_LOG(WARN, "local") << "closing connection " << owner_ << ": " << s.ToString();
      return;
    }
  }
}

Status LocalSession::Reply(const Message& m, std::span<const std::byte> payload,
                           std::span<const int> fds) {
  return SendMessage(fd_, static_cast<uint16_t>(m.header.type | L::kReply), m.header.request_id,
                     payload, fds);
}

Status LocalSession::Fail(const Message& m, const Status& status) {
  return SendError(fd_, static_cast<uint16_t>(m.header.type | L::kReply), m.header.request_id,
                   status);
}

Status LocalSession::Handle(const Message& m) {
  if (!lease_ && m.header.type != L::kHello) {
    Status s = FailedPrecondition("the first request must be HELLO");
    Fail(m, s).ok();
    return s;
  }
  // A released lease ends its connections: the request is refused and the
  // connection closed (the SDK learned it from the state page already).
  if (lease_ && lease_->released()) {
    Status s = PermissionDenied("lease '" + lease_->id() + "' was released");
    Fail(m, s).ok();
    return s;
  }
  switch (m.header.type) {
    case L::kHello:
      return Hello(m);
    case L::kAttach:
      return Attach(m);
    case L::kSegments:
      return Segments(m);
    case L::kReserve:
      return Reserve(m);
    case L::kCommit:
      return Commit(m);
    case L::kAbort:
      return Abort(m);
    case L::kFetch:
    case L::kRemove:
    case L::kPin:
    case L::kUnpin:
    case L::kLookup:
      return KeysCall(m);
    default: {
      Status s = InvalidArgument("unknown message type " + std::to_string(m.header.type));
      Fail(m, s).ok();
      return s;
    }
  }
}

Status LocalSession::Hello(const Message& m) {
  L::HelloRequest req;
  if (lease_ || !ReadStruct(m, 0, &req) || m.payload.size() != sizeof(req)) {
    Status s = InvalidArgument(lease_ ? "HELLO was already sent" : "malformed HELLO");
    Fail(m, s).ok();
    return s;
  }
  const std::string id = FixedString(req.lease_id, sizeof(req.lease_id));
  const std::string secret = FixedString(req.secret, sizeof(req.secret));
  // No pool yet: attach checks the lease against each pool it opens.
  auto account = leases_->Login(id, secret);
  if (!account.ok()) {
    Fail(m, account.status()).ok();
    return account.status();
  }
  auto state_fd = (*account)->StateFd();
  if (!state_fd.ok()) return Fail(m, state_fd.status());
  auto state_ro = ReopenReadOnly(*state_fd);
  if (!state_ro.ok()) return Fail(m, state_ro.status());
  OwnedFds owned{{*state_ro}};
  lease_ = std::move(account).value();
  secret_ = secret;
  TM_LOG(INFO, "local") << "connection " << owner_ << " uses lease " << id;
  L::StatusReply ok{0, 0};
  return Reply(m, std::as_bytes(std::span(&ok, 1)), owned.fds);
}

Result<std::shared_ptr<pool::Pool>> LocalSession::PoolById(uint32_t id) {
  if (id >= attached_.size()) {
    return InvalidArgument("pool id " + std::to_string(id) + " was not attached");
  }
  std::shared_ptr<pool::Pool> pool = attached_[id].pool.lock();
  if (pool == nullptr || pool->closed()) {
    // The connection's staging segment for the pool goes with it.
    attached_[id].staging.reset();
    return FailedPrecondition("pool '" + attached_[id].name +
                              "' was deleted or replaced on the agent; attach it again");
  }
  return pool;
}

Result<std::unique_ptr<LocalSession::Staging>> LocalSession::MakeStaging(
    const pool::Pool& pool) const {
  const uint64_t slot_bytes = (pool.spec().block_size + 4095) / 4096 * 4096;
  const auto slots = static_cast<uint32_t>(
      std::clamp<uint64_t>(kStagingBytes / slot_bytes, kMinStagingSlots, L::kMaxBatch));
  // Writable by the client (kAnyHolder), but sealed against resizing so the
  // agent's copy at COMMIT can never fault.
  TM_ASSIGN_OR_RETURN(
      tier::MemorySegment segment,
      tier::MemorySegment::Create(
          "tokenmem:staging:" + std::to_string(owner_) + ":" + pool.spec().name,
          slots * slot_bytes, {}, tier::SegmentWriters::kAnyHolder));
  std::unique_ptr<Staging> staging(new Staging{std::move(segment), slots, slot_bytes, {}, {}});
  staging->free.reserve(staging->slots);
  for (uint32_t i = staging->slots; i > 0; --i) staging->free.push_back(i - 1);
  return staging;
}

Status LocalSession::SendSegments(const Message& m, std::vector<std::byte> head,
                                  const std::vector<pool::Pool::SegmentRef>& segments,
                                  std::vector<int> leading_fds,
                                  std::span<const std::byte> trailer, int trailer_fd) {
  OwnedFds owned;
  std::vector<int> fds = std::move(leading_fds);
  for (const auto& seg : segments) {
    if (fds.size() >= L::kMaxFdsPerMessage) break;
    L::SegmentInfo info{static_cast<uint32_t>(seg.tier), seg.segment, seg.bytes};
    Append(&head, info);
    // Every lease gets the pool's segments read-only: writers write into
    // their staging segment (kAttachStaging).
    auto ro = ReopenReadOnly(seg.fd);
    if (!ro.ok()) return Fail(m, ro.status());
    owned.fds.push_back(*ro);
    fds.push_back(*ro);
  }
  if (!trailer.empty()) {
    head.insert(head.end(), trailer.begin(), trailer.end());
    fds.push_back(trailer_fd);
  }
  return Reply(m, head, fds);
}

Status LocalSession::Attach(const Message& m) {
  L::AttachRequest req;
  if (!ReadStruct(m, 0, &req) || m.payload.size() != sizeof(req)) {
    Status s = InvalidArgument("malformed ATTACH");
    Fail(m, s).ok();
    return s;
  }
  const std::string name = FixedString(req.pool, sizeof(req.pool));
  if (Status s = pool::ValidatePoolName(name); !s.ok()) return Fail(m, s);
  // The secret is checked again: a released lease cannot attach.
  auto lease = leases_->Authenticate(lease_->id(), secret_, name, false);
  if (!lease.ok()) return Fail(m, lease.status());
  auto pool = pools_->Find(name);
  if (!pool.ok()) return Fail(m, pool.status());
  if (Status s = (*lease)->AdmittedTo(name, (*pool)->spec().allowed_namespaces); !s.ok()) {
    return Fail(m, s);
  }
  auto view = (*pool)->Shared();
  auto index_ro = ReopenReadOnly(view.index_fd);
  if (!index_ro.ok()) return Fail(m, index_ro.status());
  OwnedFds owned{{*index_ro}};
  L::AttachReply reply{};
  reply.code = 0;
  reply.pool_id = static_cast<uint32_t>(attached_.size());
  reply.index_bytes = view.index_bytes;
  reply.client_area_bytes = view.client_area_bytes;
  const bool read_only = lease_->options().read_only;
  // By the pool's scope, not by whether the hooks are installed yet: a
  // client may attach before the cluster has started, and keeps its flags.
  const bool cluster_scope = (*pool)->spec().scope == pool::PoolScope::kCluster;
  std::unique_ptr<Staging> staging;
  if (!read_only) {
    auto made = MakeStaging(**pool);
    if (!made.ok()) return Fail(m, made.status());
    staging = std::move(made).value();
  }
  reply.flags = (read_only ? L::kAttachReadOnly : L::kAttachStaging) |
                (cluster_scope ? L::kAttachClusterScope : 0u);
  const size_t room = L::kMaxFdsPerMessage - 3;
  reply.segment_count = static_cast<uint32_t>(std::min(view.segments.size(), room));
  std::vector<std::byte> head;
  Append(&head, reply);
  view.segments.resize(reply.segment_count);
  std::vector<std::byte> trailer;
  int staging_fd = -1;
  if (staging) {
    Append(&trailer, L::StagingInfo{staging->segment.size(), staging->slots,
                                    static_cast<uint32_t>(staging->slot_bytes)});
    staging_fd = staging->segment.fd();
  }
  attached_.push_back({name, *pool, std::move(staging)});
  TM_LOG(INFO, "local") << "connection " << owner_ << " attached pool " << name
                        << (read_only ? " read-only" : "")
                        << (cluster_scope ? " (cluster scope)" : "");
  return SendSegments(m, std::move(head), view.segments, {*index_ro, view.client_area_fd}, trailer,
                      staging_fd);
}

Status LocalSession::Segments(const Message& m) {
  L::SegmentsRequest req;
  if (!ReadStruct(m, 0, &req) || m.payload.size() != sizeof(req) || req.tier > 1) {
    Status s = InvalidArgument("malformed SEGMENTS");
    Fail(m, s).ok();
    return s;
  }
  auto pool = PoolById(req.pool_id);
  if (!pool.ok()) return Fail(m, pool.status());
  auto segments = (*pool)->Segments(static_cast<pool::TierKind>(req.tier), req.first_segment);
  if (segments.size() > L::kMaxFdsPerMessage) segments.resize(L::kMaxFdsPerMessage);
  L::SegmentsReply reply{0, static_cast<uint32_t>(segments.size())};
  std::vector<std::byte> head;
  Append(&head, reply);
  return SendSegments(m, std::move(head), segments, {});
}

Status LocalSession::Reserve(const Message& m) {
  L::ReserveRequest req;
  if (!ReadStruct(m, 0, &req) || m.payload.size() != sizeof(req) || req.count == 0 ||
      req.count > L::kMaxBatch) {
    Status s = InvalidArgument("malformed RESERVE (count must be 1.." +
                               std::to_string(L::kMaxBatch) + ")");
    Fail(m, s).ok();
    return s;
  }
  auto pool = PoolById(req.pool_id);
  if (!pool.ok()) return Fail(m, pool.status());
  if (lease_->options().read_only) return Fail(m, PermissionDenied("the lease is read-only"));
  Staging* staging = attached_[req.pool_id].staging.get();
  if (staging != nullptr && req.count > staging->free.size()) {
    return Fail(m, ResourceExhausted("RESERVE of " + std::to_string(req.count) + " blocks: " +
                                     std::to_string(staging->free.size()) + " of this "
                                     "connection's " + std::to_string(staging->slots) +
                                     " staging slots are free; commit or abort first"));
  }
  auto grants = (*pool)->Reserve(owner_, req.count, lease_);
  if (!grants.ok()) return Fail(m, grants.status());
  std::vector<std::byte> payload;
  Append(&payload, L::ReserveReply{0, static_cast<uint32_t>(grants->size())});
  for (const auto& g : *grants) {
    if (staging == nullptr) {
      Append(&payload, L::SlotGrant{static_cast<uint32_t>(g.tier), g.slot, g.reservation});
      continue;
    }
    const uint32_t s = staging->free.back();
    staging->free.pop_back();
    staging->lent.emplace(g.reservation, Staging::Lent{s, g.bytes});
    Append(&payload, L::SlotGrant{L::kStagingTier, s, g.reservation});
  }
  return Reply(m, payload);
}

Status LocalSession::Commit(const Message& m) {
  L::CommitRequest req;
  if (!ReadStruct(m, 0, &req) || req.count > L::kMaxBatch ||
      m.payload.size() != sizeof(req) + req.count * sizeof(L::CommitItem)) {
    Status s = InvalidArgument("malformed COMMIT");
    Fail(m, s).ok();
    return s;
  }
  auto pool = PoolById(req.pool_id);
  if (!pool.ok()) return Fail(m, pool.status());
  std::vector<pool::Pool::CommitItem> items(req.count);
  for (uint32_t i = 0; i < req.count; ++i) {
    L::CommitItem item;
    ReadStruct(m, sizeof(req) + i * sizeof(item), &item);
    items[i] = {item.reservation, BlockKey{item.key_hi, item.key_lo}, item.length, item.checksum};
  }
  if (Staging* staging = attached_[req.pool_id].staging.get()) {
    // Copy each staged block into its pool slot, which only the agent can
    // write; Commit then checks the checksum on that copy. Whatever the
    // client writes into its staging slot from now on changes nothing.
    const std::byte* base = staging->segment.data();
    for (const auto& item : items) {
      auto lent = staging->lent.find(item.reservation);
      if (lent == staging->lent.end()) continue;  // not this connection's: Commit refuses it
      if (item.length <= lent->second.pool_slot.size() && item.length <= staging->slot_bytes) {
        layout::CopyToSlot(lent->second.pool_slot.data(),
                           base + uint64_t{lent->second.staging_slot} * staging->slot_bytes,
                           item.length);
      }
      staging->free.push_back(lent->second.staging_slot);
      staging->lent.erase(lent);
    }
  }
  auto results = (*pool)->Commit(owner_, items);
  if (remote::ClusterHooks* cluster = ClusterFor(**pool)) Forward(*cluster, **pool, items, results);
  std::vector<std::byte> payload;
  Append(&payload, L::BatchReply{0, req.count, 0});
  for (const auto& r : results) Append(&payload, static_cast<int32_t>(r.code()));
  return Reply(m, payload);
}

remote::ClusterHooks* LocalSession::ClusterFor(const pool::Pool& pool) const {
  if (cluster_ == nullptr || pool.spec().scope != pool::PoolScope::kCluster) return nullptr;
  return cluster_->load();
}

void LocalSession::Forward(remote::ClusterHooks& cluster, pool::Pool& pool,
                           std::span<const pool::Pool::CommitItem> items,
                           std::span<const Status> results) {
  // The block may be replaced or evicted meanwhile, so the bytes are read
  // back through the pool (one copy, counted as a get in the pool's
  // statistics) rather than taken from the slot.
  std::vector<std::byte> buffer;
  for (size_t i = 0; i < items.size(); ++i) {
    if (!results[i].ok()) continue;
    if (buffer.empty()) buffer.resize(pool.spec().block_size);
    auto got = pool.Get(items[i].key, buffer);
    if (!got.ok()) continue;  // gone already: nothing to forward
    cluster.OnStored(pool, items[i].key, std::span<const std::byte>(buffer).first(got->length));
  }
}

void LocalSession::FetchFromOwners(remote::ClusterHooks& cluster, pool::Pool& pool,
                                   std::span<const BlockKey> keys, std::vector<Status>* results) {
  std::vector<size_t> missing;
  for (size_t i = 0; i < keys.size(); ++i) {
    if ((*results)[i].code() == StatusCode::kNotFound) missing.push_back(i);
  }
  // The owners' bytes land in a buffer of at most kOwnerFetchBytes per round.
  const size_t block = pool.spec().block_size;
  const size_t per_round = std::max<size_t>(1, kOwnerFetchBytes / block);
  std::vector<std::byte> buffer;
  std::vector<BlockKey> fetched;
  std::vector<size_t> positions;
  for (size_t start = 0; start < missing.size(); start += per_round) {
    const size_t n = std::min(per_round, missing.size() - start);
    buffer.resize(n * block);
    std::vector<remote::ClusterHooks::OwnerFetch> round;
    for (size_t j = 0; j < n; ++j) {
      round.push_back({.key = keys[missing[start + j]],
                       .out = std::span<std::byte>(buffer).subspan(j * block, block)});
    }
    // A hit is stored in this pool by the hooks; the reply is what the
    // pool says about it afterwards (storing may have failed).
    cluster.FetchFromOwners(pool, round);
    for (size_t j = 0; j < n; ++j) {
      if (!round[j].length.ok()) continue;
      fetched.push_back(round[j].key);
      positions.push_back(missing[start + j]);
    }
  }
  if (fetched.empty()) return;
  // Stored blocks normally land in memory; Fetch makes sure (and answers
  // NOT_FOUND for one that could not be kept).
  std::vector<Status> now = pool.Fetch(fetched);
  for (size_t j = 0; j < positions.size(); ++j) (*results)[positions[j]] = now[j];
}

Status LocalSession::Abort(const Message& m) {
  L::AbortRequest req;
  if (!ReadStruct(m, 0, &req) || req.count > L::kMaxBatch ||
      m.payload.size() != sizeof(req) + req.count * sizeof(uint64_t)) {
    Status s = InvalidArgument("malformed ABORT");
    Fail(m, s).ok();
    return s;
  }
  auto pool = PoolById(req.pool_id);
  if (!pool.ok()) return Fail(m, pool.status());
  std::vector<uint64_t> ids(req.count);
  if (req.count)
    std::memcpy(ids.data(), m.payload.data() + sizeof(req), req.count * sizeof(uint64_t));
  if (!ids.empty()) (*pool)->Abort(owner_, ids);
  if (Staging* staging = attached_[req.pool_id].staging.get()) {
    for (uint64_t id : ids) {
      auto lent = staging->lent.find(id);
      if (lent == staging->lent.end()) continue;
      staging->free.push_back(lent->second.staging_slot);
      staging->lent.erase(lent);
    }
  }
  std::vector<std::byte> payload;
  Append(&payload, L::BatchReply{0, 0, 0});
  return Reply(m, payload);
}

Status LocalSession::KeysCall(const Message& m) {
  L::KeysRequest req;
  if (!ReadStruct(m, 0, &req) || req.count > L::kMaxBatch ||
      m.payload.size() != sizeof(req) + req.count * sizeof(L::Key)) {
    Status s = InvalidArgument("malformed key list");
    Fail(m, s).ok();
    return s;
  }
  auto pool = PoolById(req.pool_id);
  if (!pool.ok()) return Fail(m, pool.status());
  const bool writes =
      m.header.type == L::kRemove || m.header.type == L::kPin || m.header.type == L::kUnpin;
  if (writes && lease_->options().read_only) {
    return Fail(m, PermissionDenied("the lease is read-only"));
  }
  std::vector<BlockKey> keys(req.count);
  for (uint32_t i = 0; i < req.count; ++i) {
    L::Key k;
    ReadStruct(m, sizeof(req) + i * sizeof(k), &k);
    keys[i] = {k.hi, k.lo};
  }
  std::vector<Status> results;
  uint64_t value = 0;
  switch (m.header.type) {
    case L::kFetch:
      results = (*pool)->Fetch(keys);
      if (remote::ClusterHooks* cluster = ClusterFor(**pool)) {
        FetchFromOwners(*cluster, **pool, keys, &results);
      }
      break;
    case L::kLookup:
      value = (*pool)->LookupPrefix(keys, nullptr);
      break;
    default:
      for (const BlockKey& key : keys) {
        results.push_back(m.header.type == L::kRemove ? (*pool)->Remove(key)
                          : m.header.type == L::kPin  ? (*pool)->Pin(key, lease_)
                                                      : (*pool)->Unpin(key, lease_));
      }
  }
  std::vector<std::byte> payload;
  Append(&payload, L::BatchReply{0, static_cast<uint32_t>(results.size()), value});
  for (const auto& r : results) Append(&payload, static_cast<int32_t>(r.code()));
  return Reply(m, payload);
}

}  // namespace tokenmem::local
