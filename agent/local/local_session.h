// LocalSession: one client connection on the data socket. Validates every
// request at the door, answers it, and frees what the client held when the
// connection ends.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <vector>

#include "local/local_server.h"
#include "local/message_io.h"
#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "remote/cluster_hooks.h"

namespace tokenmem::local {

class LocalSession {
 public:
  // `cluster` (may be null, or hold null) is read at each request, so hooks
  // installed later take effect on running sessions.
  LocalSession(int fd, uint64_t owner, pool::PoolManager* pools, pool::LeaseTable* leases,
               RequestObserver observer = {},
               const std::atomic<remote::ClusterHooks*>* cluster = nullptr);
  ~LocalSession();  // frees the connection's reservations

  // Serves requests until the peer goes away or sends something malformed.
  void Run();

 private:
  // An error status ends the session after its reply was sent.
  Status Handle(const Message& m);
  Status Hello(const Message& m);
  Status Attach(const Message& m);
  Status Segments(const Message& m);
  Status Reserve(const Message& m);
  Status Commit(const Message& m);
  Status Abort(const Message& m);
  Status KeysCall(const Message& m);

  // The hooks when `pool` has scope: cluster and the cluster is on.
  remote::ClusterHooks* ClusterFor(const pool::Pool& pool) const;
  // Hands committed blocks of a cluster pool to the hooks.
  void Forward(remote::ClusterHooks& cluster, pool::Pool& pool,
               std::span<const pool::Pool::CommitItem> items, std::span<const Status> results);
  // FETCH in a cluster pool: asks the owners for the keys that missed here
  // and brings what they had into memory; updates their results.
  void FetchFromOwners(remote::ClusterHooks& cluster, pool::Pool& pool,
                       std::span<const BlockKey> keys, std::vector<Status>* results);

  Result<std::shared_ptr<pool::Pool>> PoolById(uint32_t id) const;
  Status SendSegments(const Message& m, std::vector<std::byte> head,
                      const std::vector<pool::Pool::SegmentRef>& segments,
                      std::vector<int> leading_fds);
  Status Reply(const Message& m, std::span<const std::byte> payload, std::span<const int> fds = {});
  Status Fail(const Message& m, const Status& status);

  int fd_;
  uint64_t owner_;
  pool::PoolManager* pools_;
  pool::LeaseTable* leases_;
  RequestObserver observer_;
  const std::atomic<remote::ClusterHooks*>* cluster_;
  std::shared_ptr<pool::LeaseAccount> lease_;
  std::string secret_;
  std::vector<std::shared_ptr<pool::Pool>> attached_;  // pool_id = position
};

}  // namespace tokenmem::local
