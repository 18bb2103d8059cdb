#include "remote/request_handler.h"

#include <algorithm>
#include <cstring>
#include <ctime>
#include <limits>

#include "tokenmem/common/crc32c.h"
#include "tokenmem/common/log.h"

namespace tokenmem::remote {

using transport::ItemResult;
using transport::Op;
using transport::Reply;
using transport::Request;

namespace {

// The peer login: a fixed lease id and the cluster's shared secret.
constexpr char kPeerLeaseId[] = "@peer";

Reply ErrorReply(const Request& request, const Status& status) {
  Reply reply;
  reply.op = request.op;
  reply.id = request.id;
  reply.status = status.code();
  reply.message = status.message();
  return reply;
}

Reply OkReply(const Request& request) {
  Reply reply;
  reply.op = request.op;
  reply.id = request.id;
  return reply;
}

bool Forwards(const pool::Pool& pool) { return pool.spec().scope == pool::PoolScope::kCluster; }

}  // namespace

bool Session::authenticated() const {
  std::lock_guard lock(mu_);
  return lease_ != nullptr;
}

bool Session::is_peer() const {
  std::lock_guard lock(mu_);
  return peer_;
}

RequestHandler::RequestHandler(HandlerOptions options)
    : options_(std::move(options)), cluster_(options_.cluster) {
  pool::LeaseOptions peer_options;
  peer_options.quota_bytes = std::numeric_limits<uint64_t>::max() / 2;
  peer_options.owner = "cluster peers";
  // Its secret is the cluster's: peers log in by it (never with an empty one).
  peer_account_ =
      std::make_shared<pool::LeaseAccount>(kPeerLeaseId, options_.cluster_secret, peer_options,
                                           static_cast<int64_t>(std::time(nullptr)));
}

Reply RequestHandler::Handle(Session& session, const Request& request,
                             std::span<const std::byte> data, Payload* payload) {
  switch (request.op) {
    case Op::kHello:
      return Hello(session, request);
    case Op::kPing: {
      Reply reply = OkReply(request);
      reply.node = options_.node_name;
      return reply;
    }
    default:
      break;
  }
  if (!session.authenticated()) {
    return ErrorReply(request,
                      Status(StatusCode::kPermissionDenied, "HELLO with a lease must come first"));
  }
  if (request.op == Op::kAttach) return Attach(session, request);

  const bool write = request.op == Op::kPut || request.op == Op::kDelete;
  auto found = PoolFor(session, request.pool, write);
  if (!found.ok()) return ErrorReply(request, found.status());
  pool::Pool& pool = **found;

  switch (request.op) {
    case Op::kGet:
      return Get(session, *found, request, payload);
    case Op::kPut:
      return Put(session, pool, request, data);
    case Op::kExists: {
      Reply reply = OkReply(request);
      reply.items.resize(request.keys.size());
      for (size_t i = 0; i < request.keys.size(); ++i) {
        auto tier = pool.Locate(request.keys[i]);
        reply.items[i].code = tier.ok() ? StatusCode::kOk : tier.status().code();
      }
      return reply;
    }
    case Op::kLookupPrefix: {
      Reply reply = OkReply(request);
      reply.matched = pool.LookupPrefix(request.keys, nullptr);
      return reply;
    }
    case Op::kDelete: {
      Reply reply = OkReply(request);
      reply.items.resize(request.keys.size());
      for (size_t i = 0; i < request.keys.size(); ++i) {
        reply.items[i].code = pool.Remove(request.keys[i]).code();
      }
      return reply;
    }
    default:
      return ErrorReply(request, Status(StatusCode::kInvalidArgument, "unexpected op"));
  }
}

bool RequestHandler::IsQuick(Session& session, const Request& request) {
  switch (request.op) {
    case Op::kHello:
    case Op::kPing:
      return true;
    case Op::kGet:
    case Op::kPut:
    case Op::kExists:
    case Op::kLookupPrefix:
      break;
    default:
      return false;
  }
  std::shared_ptr<pool::Pool> pool;
  {
    std::lock_guard lock(session.mu_);
    if (request.pool == 0 || request.pool > session.pools_.size()) return true;  // an error reply
    pool = session.pools_[request.pool - 1].lock();
  }
  if (pool == nullptr) return true;  // deleted: an error reply
  const bool on_disk = pool->spec().capacity.nvme != 0;
  if (request.op == Op::kExists || request.op == Op::kLookupPrefix) return true;
  if (request.op == Op::kPut) return !on_disk && !Forwards(*pool);
  // A miss in a cluster pool asks the owner over the network.
  if (!on_disk && !Forwards(*pool)) return true;
  for (const auto& item : request.gets) {
    auto tier = pool->Locate(item.key);
    if (!tier.ok() || *tier == pool::TierKind::kNvme) return false;
  }
  return true;
}

Reply RequestHandler::Hello(Session& session, const Request& request) {
  std::lock_guard lock(session.mu_);
  if (session.lease_ != nullptr) {
    return ErrorReply(request, Status(StatusCode::kFailedPrecondition,
                                      "this connection has presented its lease already"));
  }
  if (request.lease_id == kPeerLeaseId) {
    if (options_.cluster_secret.empty() || !peer_account_->SecretMatches(request.lease_secret)) {
      return ErrorReply(request, Status(StatusCode::kPermissionDenied, "wrong cluster secret"));
    }
    session.lease_ = peer_account_;
    session.peer_ = true;
  } else {
    auto account = options_.leases->Login(request.lease_id, request.lease_secret);
    if (!account.ok()) return ErrorReply(request, account.status());
    session.lease_ = std::move(account).value();
    session.secret_ = request.lease_secret;
  }
  Reply reply = OkReply(request);
  reply.node = options_.node_name;
  return reply;
}

Reply RequestHandler::Attach(Session& session, const Request& request) {
  if (Status s = pool::ValidatePoolName(request.pool_name); !s.ok()) return ErrorReply(request, s);
  std::lock_guard lock(session.mu_);
  if (!session.peer_) {
    // Checked again at every attach: a released lease cannot attach.
    auto lease = options_.leases->Authenticate(session.lease_->id(), session.secret_,
                                               request.pool_name, false);
    if (!lease.ok()) return ErrorReply(request, lease.status());
  }
  auto pool = options_.pools->Find(request.pool_name);
  if (!pool.ok()) return ErrorReply(request, pool.status());
  if (!session.peer_) {
    Status admitted =
        session.lease_->AdmittedTo(request.pool_name, (*pool)->spec().allowed_namespaces);
    if (!admitted.ok()) return ErrorReply(request, admitted);
  }
  if (session.peer_ && !Forwards(**pool)) {
    return ErrorReply(request, Status(StatusCode::kPermissionDenied,
                                      "pool '" + request.pool_name + "' is not shared with peers"));
  }
  for (size_t i = 0; i < session.pools_.size(); ++i) {
    if (session.pools_[i].lock() == *pool) {
      Reply reply = OkReply(request);
      reply.pool = static_cast<uint32_t>(i + 1);
      reply.block_size = (*pool)->spec().block_size;
      reply.read_only = session.lease_->options().read_only;
      return reply;
    }
  }
  if (session.pools_.size() >= 1024) {
    return ErrorReply(request, Status(StatusCode::kResourceExhausted,
                                      "a connection attaches at most 1024 pools"));
  }
  session.pools_.push_back(*pool);
  Reply reply = OkReply(request);
  reply.pool = static_cast<uint32_t>(session.pools_.size());
  reply.block_size = (*pool)->spec().block_size;
  reply.read_only = session.lease_->options().read_only;
  return reply;
}

Result<std::shared_ptr<pool::Pool>> RequestHandler::PoolFor(Session& session, uint32_t handle,
                                                            bool write) {
  std::lock_guard lock(session.mu_);
  if (handle == 0 || handle > session.pools_.size()) {
    return Status(StatusCode::kInvalidArgument,
                  "pool handle " + std::to_string(handle) + " was not attached");
  }
  if (session.lease_->released()) {
    return Status(StatusCode::kPermissionDenied,
                  "lease '" + session.lease_->id() + "' was released");
  }
  if (write && session.lease_->options().read_only) {
    return Status(StatusCode::kPermissionDenied,
                  "lease '" + session.lease_->id() + "' is read-only");
  }
  std::shared_ptr<pool::Pool> pool = session.pools_[handle - 1].lock();
  if (pool == nullptr || pool->closed()) {
    return Status(StatusCode::kFailedPrecondition,
                  "the pool of handle " + std::to_string(handle) +
                      " was deleted or replaced on the agent; attach it again");
  }
  return pool;
}

Reply RequestHandler::Get(Session& session, const std::shared_ptr<pool::Pool>& pool_ref,
                          const Request& request, Payload* payload) {
  pool::Pool& pool = *pool_ref;
  const uint64_t block = pool.spec().block_size;
  if (block * request.gets.size() > options_.max_batch_bytes) {
    return ErrorReply(request,
                      Status(StatusCode::kInvalidArgument,
                             std::to_string(request.gets.size()) + " blocks of " +
                                 std::to_string(block) + " bytes could pass the limit of " +
                                 std::to_string(options_.max_batch_bytes) + " bytes per request"));
  }
  Reply reply = OkReply(request);
  reply.items.resize(request.gets.size());
  // Blocks in memory are sent from where they are, held until UCX has sent
  // them; the others (NVMe, or fetched from a cluster owner) are copied
  // once into `data`, allocated at the first such block, a block's room each.
  auto held = std::make_shared<std::vector<pool::Pool::HeldBlock>>();
  std::vector<std::span<const std::byte>> found(request.gets.size());
  size_t staged = 0;
  auto room = [&]() -> std::span<std::byte> {
    if (!payload->data) payload->data.reset(new std::byte[block * request.gets.size()]);
    std::span<std::byte> into(payload->data.get() + staged, block);
    staged += block;
    return into;
  };
  ClusterHooks* cluster = cluster_.load();
  const bool from_owner = Forwards(pool) && cluster != nullptr && !session.is_peer();
  std::vector<ClusterHooks::OwnerFetch> misses;  // asked of their owners together
  std::vector<size_t> miss_items;
  for (size_t i = 0; i < request.gets.size(); ++i) {
    const auto& item = request.gets[i];
    auto hold = pool.Hold(item.key);
    if (hold.ok()) {
      if (hold->bytes.size() > item.capacity) {
        reply.items[i].length = static_cast<uint32_t>(hold->bytes.size());
        reply.items[i].code = StatusCode::kInvalidArgument;  // the client's buffers are too small
        pool.Unhold(*hold);
        continue;
      }
      held->push_back(*hold);
      found[i] = hold->bytes;
      continue;
    }
    std::span<std::byte> into = room();
    auto got = pool.Get(item.key, into);
    if (got.ok()) {
      found[i] = into.first(got->length);
    } else if (got.status().code() == StatusCode::kNotFound && from_owner) {
      misses.push_back({.key = item.key, .out = into});
      miss_items.push_back(i);
    } else {
      reply.items[i].code = got.status().code();
    }
  }
  if (!misses.empty()) {
    cluster->FetchFromOwners(pool, misses);
    for (size_t j = 0; j < misses.size(); ++j) {
      if (misses[j].length.ok()) {
        found[miss_items[j]] = misses[j].out.first(*misses[j].length);
      } else {
        reply.items[miss_items[j]].code = misses[j].length.status().code();
      }
    }
  }
  // The payload carries the found blocks in request order.
  for (size_t i = 0; i < request.gets.size(); ++i) {
    ItemResult& result = reply.items[i];
    if (result.code != StatusCode::kOk) continue;
    result.length = static_cast<uint32_t>(found[i].size());
    if (found[i].size() > request.gets[i].capacity) {
      result.code = StatusCode::kInvalidArgument;
      continue;
    }
    payload->pieces.push_back({const_cast<std::byte*>(found[i].data()), found[i].size()});
    payload->size += found[i].size();
  }
  if (!held->empty()) {
    payload->holds = std::shared_ptr<void>(nullptr, [pool_ref, held](void*) {
      for (const auto& h : *held) pool_ref->Unhold(h);
    });
  }
  return reply;
}

Reply RequestHandler::Put(Session& session, pool::Pool& pool, const Request& request,
                          std::span<const std::byte> data) {
  Reply reply = OkReply(request);
  reply.items.resize(request.puts.size());
  std::shared_ptr<pool::LeaseAccount> lease;
  {
    std::lock_guard lock(session.mu_);
    lease = session.lease_;
  }
  ClusterHooks* cluster = cluster_.load();
  const bool forward = Forwards(pool) && cluster != nullptr && !session.is_peer();
  size_t offset = 0;
  for (size_t i = 0; i < request.puts.size(); ++i) {
    const auto& item = request.puts[i];
    auto bytes = data.subspan(offset, item.length);
    offset += item.length;
    auto stored = pool.Put(item.key, bytes, lease);
    reply.items[i].code = stored.ok() ? StatusCode::kOk : stored.status().code();
    reply.items[i].length = stored.ok() ? item.length : 0;
    if (stored.ok() && forward) cluster->OnStored(pool, item.key, bytes);
  }
  return reply;
}

std::optional<SlotPut> RequestHandler::ReserveSlots(Session& session, const Request& request,
                                                    uint64_t owner) {
  if (request.op != Op::kPut || request.puts.empty()) return std::nullopt;
  auto found = PoolFor(session, request.pool, /*write=*/true);
  if (!found.ok()) return std::nullopt;
  const std::shared_ptr<pool::Pool>& pool = *found;
  if (Forwards(*pool)) return std::nullopt;  // the owner needs the bytes as well
  for (const auto& item : request.puts) {
    if (item.length > pool->spec().block_size) return std::nullopt;
  }
  std::shared_ptr<pool::LeaseAccount> lease;
  {
    std::lock_guard lock(session.mu_);
    lease = session.lease_;
  }
  auto grants = pool->Reserve(owner, static_cast<uint32_t>(request.puts.size()), lease,
                              pool::Pool::ReserveRoom::kNoNvmeIo);
  if (!grants.ok()) return std::nullopt;
  return SlotPut{pool, owner, std::move(grants).value()};
}

Status RequestHandler::AdmitPut(Session& session, const Request& request) {
  if (request.op != Op::kPut) return Status::Ok();
  TM_ASSIGN_OR_RETURN(std::shared_ptr<pool::Pool> pool,
                      PoolFor(session, request.pool, /*write=*/true));
  std::shared_ptr<pool::LeaseAccount> lease;
  {
    std::lock_guard lock(session.mu_);
    if (session.peer_) return Status::Ok();  // the cluster's capacity, not a quota
    lease = session.lease_;
  }
  const uint64_t block = pool->spec().block_size;
  const uint64_t quota = lease->options().quota_bytes;
  if (lease->used_bytes() + block > quota) {
    return Status(StatusCode::kResourceExhausted,
                  "lease '" + lease->id() + "' quota of " + std::to_string(quota) +
                      " bytes is used up (" + std::to_string(lease->used_bytes()) +
                      " charged): the PUT was refused before its payload was received");
  }
  return Status::Ok();
}

Reply RequestHandler::CommitSlots(const Request& request, SlotPut& put) {
  std::vector<pool::Pool::CommitItem> items;
  items.reserve(request.puts.size());
  for (size_t i = 0; i < request.puts.size(); ++i) {
    const auto& item = request.puts[i];
    const auto& grant = put.grants[i];
    items.push_back(
        {grant.reservation, item.key, item.length, Crc32c(grant.bytes.first(item.length))});
  }
  // The checksums were computed here, from bytes no client can touch.
  auto results = put.pool->Commit(put.owner, items, pool::Pool::Checksum::kTrusted);
  put.grants.clear();
  Reply reply = OkReply(request);
  reply.items.resize(request.puts.size());
  for (size_t i = 0; i < results.size(); ++i) {
    reply.items[i].code = results[i].code();
    reply.items[i].length = results[i].ok() ? request.puts[i].length : 0;
  }
  return reply;
}

void RequestHandler::AbortSlots(SlotPut& put) {
  if (put.grants.empty()) return;
  std::vector<uint64_t> ids;
  ids.reserve(put.grants.size());
  for (const auto& grant : put.grants) ids.push_back(grant.reservation);
  put.pool->Abort(put.owner, ids);
  put.grants.clear();
}

}  // namespace tokenmem::remote
