// ClusterRouter: what makes a pool with scope: cluster shared across nodes.
//
// It owns the cluster's membership (heartbeats are PING requests over the
// remote protocol), the connections to peer agents (logged in with the
// cluster's shared secret) and the queue of puts forwarded to key owners.
//   - OnStored: a block stored here whose owner (rendezvous hashing over the
//     live members) is another agent is queued for that owner. The queue is
//     bounded: when it is full the block is dropped from forwarding (it is
//     still stored here) and counted.
//   - FetchFromOwners: local misses ask their keys' owners, one request
//     per owner (split at max_batch_bytes); a hit is stored here too, so
//     the next get is local.
//   - Handoff: when the live set changes, the blocks here whose owner
//     changed to another agent are sent to it through the same queue (a
//     background pass that leaves room in the queue for puts), so a block
//     stays reusable across nodes when its owner joins or leaves.
// Requests that come from peers are never forwarded again, so differing
// views of the membership cannot make blocks circle.
//
// Thread-safe.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "cluster/forward_queue.h"
#include "cluster/membership.h"
#include "config/agent_config.h"
#include "remote/request_handler.h"
#include "tokenmem/transport/remote_connection.h"

namespace tokenmem::remote {

struct ClusterRouterOptions {
  config::ClusterConfig cluster;
  std::string node_name;
  std::string self_address;  // this agent's remote listener, as peers dial it
  std::string secret;        // the shared secret (contents of cluster.secret_file)
  pool::PoolManager* pools = nullptr;
  // The most block bytes one request to an owner asks for: the peers'
  // remote.max_batch_bytes (one value across the cluster, as the chart sets it).
  uint64_t max_batch_bytes = 64ull << 20;
};

struct ClusterRouterCounters {
  std::atomic<uint64_t> owner_gets{0};      // local misses asked of an owner
  std::atomic<uint64_t> owner_hits{0};      // ... that the owner had
  std::atomic<uint64_t> owner_failures{0};  // ... that failed (owner unreachable)
  std::atomic<uint64_t> forward_batches_failed{0};
  std::atomic<uint64_t> handoff_blocks{0};  // blocks queued for a new owner after a change
};

class ClusterRouter : public ClusterHooks {
 public:
  static Result<std::unique_ptr<ClusterRouter>> Start(ClusterRouterOptions options);
  ~ClusterRouter() override;  // stops heartbeats and the queue, closes peer connections

  void OnStored(const pool::Pool& pool, const BlockKey& key,
                std::span<const std::byte> data) override;
  void FetchFromOwners(pool::Pool& pool, std::span<OwnerFetch> fetches) override;

  cluster::Membership& membership() { return *membership_; }
  cluster::ForwardQueueCounters forward_counters() const { return queue_->counters(); }
  const ClusterRouterCounters& counters() const { return counters_; }

 private:
  explicit ClusterRouter(ClusterRouterOptions options);

  // A live connection to the peer at `address` (made on demand, replaced
  // when it broke) and the handle of `pool` on it.
  Result<std::shared_ptr<transport::RemoteConnection>> Peer(const std::string& address);
  Result<uint32_t> PeerPool(const std::string& address, transport::RemoteConnection& conn,
                            const std::string& pool);
  Result<std::string> Ping(const std::string& address);
  Status Send(const std::string& address, const std::string& pool,
              std::span<cluster::ForwardItem> items);
  // The live set changed from the last one seen: queue a handoff pass.
  void OnMembershipChange(const std::vector<cluster::Member>& live);
  void RunHandoffs(std::stop_token stop);
  // Queues the blocks of cluster pools whose owner moved from `before` to
  // another agent of `after`.
  void HandOff(const std::vector<cluster::Member>& before,
               const std::vector<cluster::Member>& after, const std::stop_token& stop);
  // One GET to the owner at `address` for fetches[i], i in `items`.
  void FetchBatch(pool::Pool& pool, const std::string& address, std::span<const size_t> items,
                  std::span<OwnerFetch> fetches);

  ClusterRouterOptions options_;
  ClusterRouterCounters counters_;
  std::shared_ptr<pool::LeaseAccount> account_;  // blocks fetched from owners are charged here
  std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<transport::RemoteConnection>> peers_;
  // (address, pool) -> handle, valid for the connection it was made on
  std::unordered_map<std::string, std::pair<transport::RemoteConnection*, uint32_t>> handles_;
  std::unique_ptr<cluster::ForwardQueue> queue_;
  std::unique_ptr<cluster::Membership> membership_;
  // Handoffs: (before, after) live sets waiting for the handoff thread.
  std::mutex handoff_mu_;
  std::condition_variable_any handoff_cv_;
  std::vector<cluster::Member> last_live_;  // guarded by handoff_mu_
  std::deque<std::pair<std::vector<cluster::Member>, std::vector<cluster::Member>>>
      handoffs_;                 // guarded by handoff_mu_
  std::jthread handoff_thread_;  // declared last: stopped and joined first
};

}  // namespace tokenmem::remote
