#include "remote/cluster_router.h"

#include <ctime>
#include <limits>

#include "tokenmem/common/log.h"

namespace tokenmem::remote {

using transport::Op;
using transport::Piece;
using transport::Request;

namespace {
constexpr char kPeerLeaseId[] = "@peer";
}  // namespace

ClusterRouter::ClusterRouter(ClusterRouterOptions options) : options_(std::move(options)) {
  pool::LeaseOptions account;
  account.quota_bytes = std::numeric_limits<uint64_t>::max() / 2;
  account.owner = "blocks fetched from their owners";
  account_ = std::make_shared<pool::LeaseAccount>("@cluster", "", account,
                                                  static_cast<int64_t>(std::time(nullptr)));
}

Result<std::unique_ptr<ClusterRouter>> ClusterRouter::Start(ClusterRouterOptions options) {
  if (options.secret.empty()) {
    return Status(StatusCode::kInvalidArgument, "the cluster needs a shared secret");
  }
  std::unique_ptr<ClusterRouter> router(new ClusterRouter(std::move(options)));
  ClusterRouter* self = router.get();
  router->queue_ = std::make_unique<cluster::ForwardQueue>(
      router->options_.cluster.forward_queue_blocks,
      [self](const std::string& address, const std::string& pool,
             std::span<cluster::ForwardItem> items) { return self->Send(address, pool, items); });
  auto membership_options = cluster::MembershipOptionsFrom(
      router->options_.cluster, router->options_.node_name, router->options_.self_address);
  membership_options.on_change = [](const std::vector<cluster::Member>& live, uint64_t generation) {
    std::string names;
    for (const auto& m : live) names += (names.empty() ? "" : ", ") + m.node;
    TM_LOG(INFO, "cluster") << "live members (generation " << generation << "): " << names;
  };
  router->membership_ = std::make_unique<cluster::Membership>(
      std::move(membership_options), std::make_unique<cluster::Discovery>(router->options_.cluster),
      [self](const std::string& address) { return self->Ping(address); });
  TM_RETURN_IF_ERROR(router->membership_->Start());
  return router;
}

ClusterRouter::~ClusterRouter() {
  if (membership_) membership_->Stop();
  if (queue_) queue_->Stop();
  std::lock_guard lock(mu_);
  handles_.clear();
  peers_.clear();
}

Result<std::shared_ptr<transport::RemoteConnection>> ClusterRouter::Peer(
    const std::string& address) {
  {
    std::lock_guard lock(mu_);
    auto it = peers_.find(address);
    if (it != peers_.end() && it->second->connected()) return it->second;
  }
  // Bounded well under the heartbeat timeout, so a dead peer is noticed in
  // time and a miss does not wait long for it.
  auto timeout =
      std::chrono::milliseconds(std::max<uint32_t>(200, options_.cluster.heartbeat_timeout_ms / 2));
  TM_ASSIGN_OR_RETURN(auto conn,
                      transport::RemoteConnection::Connect({.address = address,
                                                            .lease_id = kPeerLeaseId,
                                                            .lease_secret = options_.secret,
                                                            .timeout = timeout,
                                                            .name = "tm-peer"}));
  std::lock_guard lock(mu_);
  peers_[address] = conn;
  return conn;
}

Result<uint32_t> ClusterRouter::PeerPool(const std::string& address,
                                         transport::RemoteConnection& conn,
                                         const std::string& pool) {
  const std::string slot = address + "/" + pool;
  {
    std::lock_guard lock(mu_);
    auto it = handles_.find(slot);
    if (it != handles_.end() && it->second.first == &conn) return it->second.second;
  }
  TM_ASSIGN_OR_RETURN(auto reply, conn.Call(Request{.op = Op::kAttach, .pool_name = pool}));
  std::lock_guard lock(mu_);
  handles_[slot] = {&conn, reply.pool};
  return reply.pool;
}

Result<std::string> ClusterRouter::Ping(const std::string& address) {
  TM_ASSIGN_OR_RETURN(auto conn, Peer(address));
  TM_ASSIGN_OR_RETURN(auto reply, conn->Call(Request{.op = Op::kPing}));
  return reply.node;
}

void ClusterRouter::OnStored(const pool::Pool& pool, const BlockKey& key,
                             std::span<const std::byte> data) {
  auto owner = membership_->OwnerOf(key);
  if (!owner || owner->self) return;
  cluster::ForwardItem item;
  item.pool = pool.spec().name;
  item.key = key;
  item.data.assign(data.begin(), data.end());
  item.owner_address = owner->address;
  queue_->TryPush(std::move(item));  // a full queue counts the drop
}

Status ClusterRouter::Send(const std::string& address, const std::string& pool,
                           std::span<cluster::ForwardItem> items) {
  auto result = [&]() -> Status {
    TM_ASSIGN_OR_RETURN(auto conn, Peer(address));
    TM_ASSIGN_OR_RETURN(uint32_t handle, PeerPool(address, *conn, pool));
    Request put{.op = Op::kPut, .pool = handle};
    std::vector<Piece> payload;
    for (auto& item : items) {
      put.puts.push_back({item.key, static_cast<uint32_t>(item.data.size())});
      payload.push_back({item.data.data(), item.data.size()});
    }
    TM_ASSIGN_OR_RETURN(auto reply, conn->Call(put, payload));
    for (const auto& r : reply.items) {
      if (r.code != StatusCode::kOk) {
        return Status(r.code, "the owner at " + address + " refused a forwarded block");
      }
    }
    return Status();
  }();
  if (!result.ok()) {
    counters_.forward_batches_failed++;
    TM_LOG(DEBUG, "cluster") << "forwarding " << items.size() << " blocks to " << address
                             << " failed: " << result.message();
  }
  return result;
}

Result<size_t> ClusterRouter::FetchFromOwner(pool::Pool& pool, const BlockKey& key,
                                             std::span<std::byte> out) {
  auto owner = membership_->OwnerOf(key);
  if (!owner || owner->self) return Status(StatusCode::kNotFound, "not stored");
  counters_.owner_gets++;
  auto fetched = [&]() -> Result<size_t> {
    TM_ASSIGN_OR_RETURN(auto conn, Peer(owner->address));
    TM_ASSIGN_OR_RETURN(uint32_t handle, PeerPool(owner->address, *conn, pool.spec().name));
    std::vector<Piece> dest = {{out.data(), out.size()}};
    std::vector<std::span<const Piece>> dests = {dest};
    TM_ASSIGN_OR_RETURN(auto reply,
                        conn->Call(Request{.op = Op::kGet,
                                           .pool = handle,
                                           .gets = {{key, static_cast<uint32_t>(out.size())}}},
                                   {}, dests));
    if (reply.items.size() != 1 || reply.items[0].code != StatusCode::kOk) {
      return Status(reply.items.empty() ? StatusCode::kNotFound : reply.items[0].code,
                    "the owner does not hold it");
    }
    return static_cast<size_t>(reply.items[0].length);
  }();
  if (!fetched.ok()) {
    if (fetched.status().code() != StatusCode::kNotFound) {
      counters_.owner_failures++;
      TM_LOG(DEBUG, "cluster") << "asking " << owner->node
                               << " for a block failed: " << fetched.status().message();
    }
    return Status(StatusCode::kNotFound, "not stored here, nor by its owner");
  }
  counters_.owner_hits++;
  // Kept here too, so the next get is local; failing to keep it is fine.
  (void)pool.Put(key, out.first(*fetched), account_);
  return *fetched;
}

}  // namespace tokenmem::remote
