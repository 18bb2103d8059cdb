#include "remote/cluster_router.h"

#include <algorithm>
#include <ctime>
#include <limits>
#include <thread>

#include "cluster/rendezvous.h"
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
  membership_options.on_change = [self](const std::vector<cluster::Member>& live,
                                        uint64_t generation) {
    std::string names;
    for (const auto& m : live) names += (names.empty() ? "" : ", ") + m.node;
    TM_LOG(INFO, "cluster") << "live members (generation " << generation << "): " << names;
    self->OnMembershipChange(live);
  };
  router->last_live_ = {cluster::Member{
      .node = router->options_.node_name, .address = router->options_.self_address, .self = true}};
  router->handoff_thread_ = std::jthread([self](std::stop_token stop) { self->RunHandoffs(stop); });
  router->membership_ = std::make_unique<cluster::Membership>(
      std::move(membership_options), std::make_unique<cluster::Discovery>(router->options_.cluster),
      [self](const std::string& address) { return self->Ping(address); });
  TM_RETURN_IF_ERROR(router->membership_->Start());
  return router;
}

ClusterRouter::~ClusterRouter() {
  if (membership_) membership_->Stop();
  if (handoff_thread_.joinable()) {
    handoff_thread_.request_stop();
    handoff_cv_.notify_all();
    handoff_thread_.join();
  }
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

void ClusterRouter::FetchFromOwners(pool::Pool& pool, std::span<OwnerFetch> fetches) {
  // Keys by owner, in the order first seen.
  std::vector<std::pair<std::string, std::vector<size_t>>> by_owner;
  for (size_t i = 0; i < fetches.size(); ++i) {
    auto owner = membership_->OwnerOf(fetches[i].key);
    if (!owner || owner->self) {
      fetches[i].length = Status(StatusCode::kNotFound, "not stored");
      continue;
    }
    auto it = std::find_if(by_owner.begin(), by_owner.end(),
                           [&](const auto& g) { return g.first == owner->address; });
    if (it == by_owner.end()) it = by_owner.insert(by_owner.end(), {owner->address, {}});
    it->second.push_back(i);
  }
  const size_t per_request =
      std::max<size_t>(1, options_.max_batch_bytes / std::max<uint64_t>(1, pool.spec().block_size));
  for (const auto& [address, items] : by_owner) {
    for (size_t start = 0; start < items.size(); start += per_request) {
      const size_t n = std::min(per_request, items.size() - start);
      FetchBatch(pool, address, std::span<const size_t>(items).subspan(start, n), fetches);
    }
  }
}

void ClusterRouter::FetchBatch(pool::Pool& pool, const std::string& address,
                               std::span<const size_t> items, std::span<OwnerFetch> fetches) {
  counters_.owner_gets += items.size();
  Request get{.op = Op::kGet};
  std::vector<std::vector<Piece>> pieces;
  std::vector<std::span<const Piece>> dests;
  pieces.reserve(items.size());
  dests.reserve(items.size());
  get.gets.reserve(items.size());
  for (size_t i : items) {
    get.gets.push_back({fetches[i].key, static_cast<uint32_t>(fetches[i].out.size())});
    pieces.push_back({{fetches[i].out.data(), fetches[i].out.size()}});
  }
  for (const auto& p : pieces) dests.emplace_back(p);
  auto reply = [&]() -> Result<transport::Reply> {
    TM_ASSIGN_OR_RETURN(auto conn, Peer(address));
    TM_ASSIGN_OR_RETURN(get.pool, PeerPool(address, *conn, pool.spec().name));
    return conn->Call(std::move(get), {}, dests);
  }();
  if (!reply.ok() || reply->items.size() != items.size()) {
    counters_.owner_failures += items.size();
    TM_LOG(DEBUG, "cluster") << "asking " << address << " for " << items.size()
                             << " blocks failed: "
                             << (reply.ok() ? "a short reply" : reply.status().message());
    for (size_t i : items) {
      fetches[i].length =
          Status(StatusCode::kNotFound, "not stored here; its owner did not answer");
    }
    return;
  }
  for (size_t k = 0; k < items.size(); ++k) {
    OwnerFetch& f = fetches[items[k]];
    const transport::ItemResult& r = reply->items[k];
    if (r.code != StatusCode::kOk) {
      f.length = Status(StatusCode::kNotFound, "not stored here, nor by its owner");
      continue;
    }
    counters_.owner_hits++;
    f.length = static_cast<size_t>(r.length);
    // Kept here too, so the next get is local; failing to keep it is fine.
    (void)pool.Put(f.key, f.out.first(r.length), account_);
  }
}

void ClusterRouter::OnMembershipChange(const std::vector<cluster::Member>& live) {
  {
    std::lock_guard lock(handoff_mu_);
    handoffs_.emplace_back(last_live_, live);
    last_live_ = live;
  }
  handoff_cv_.notify_all();
}

void ClusterRouter::RunHandoffs(std::stop_token stop) {
  while (!stop.stop_requested()) {
    std::pair<std::vector<cluster::Member>, std::vector<cluster::Member>> change;
    {
      std::unique_lock lock(handoff_mu_);
      if (!handoff_cv_.wait(lock, stop, [&] { return !handoffs_.empty(); })) return;
      change = std::move(handoffs_.front());
      handoffs_.pop_front();
    }
    HandOff(change.first, change.second, stop);
  }
}

void ClusterRouter::HandOff(const std::vector<cluster::Member>& before,
                            const std::vector<cluster::Member>& after,
                            const std::stop_token& stop) {
  // Both sets hold this agent at least (Membership's guarantee).
  if (options_.pools == nullptr || before.empty() || after.empty()) return;
  std::vector<std::string> before_ids, after_ids;
  for (const auto& m : before) before_ids.push_back(m.node);
  for (const auto& m : after) after_ids.push_back(m.node);
  // Puts keep at least half the queue.
  const uint64_t room = std::max<uint64_t>(1, options_.cluster.forward_queue_blocks / 2);
  uint64_t handed = 0;
  for (const auto& pool : options_.pools->List()) {
    if (pool->spec().scope != pool::PoolScope::kCluster) continue;
    std::vector<std::byte> buffer(pool->spec().block_size);
    for (const BlockKey& key : pool->Keys()) {
      if (stop.stop_requested()) return;
      const cluster::Member& now = after[cluster::OwnerIndex(after_ids, key)];
      if (now.self) continue;
      if (before[cluster::OwnerIndex(before_ids, key)].node == now.node) {
        continue;  // the owner did not change: it has the block already
      }
      auto got = pool->Get(key, buffer);
      if (!got.ok()) continue;  // left meanwhile
      while (queue_->counters().queued >= room && !stop.stop_requested()) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
      }
      cluster::ForwardItem item;
      item.pool = pool->spec().name;
      item.key = key;
      item.data.assign(buffer.begin(), buffer.begin() + got->length);
      item.owner_address = now.address;
      if (queue_->TryPush(std::move(item))) {
        ++handed;
        counters_.handoff_blocks++;
      }
    }
  }
  if (handed > 0) {
    TM_LOG(INFO, "cluster") << "handed " << handed << " blocks to their new owners";
  }
}

}  // namespace tokenmem::remote
