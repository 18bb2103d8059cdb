// LocalSession: one client connection on the data socket. Validates every
// request at the door, answers it, and frees what the client held when the
// connection ends.
#pragma once

#include <atomic>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "local/local_server.h"
#include "local/message_io.h"
#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "remote/cluster_hooks.h"
#include "tier/memory_segment.h"

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

  // Where a writable connection's puts land first (see kAttachStaging): a
  // memfd of its own that only it and the agent map writable. COMMIT copies
  // each slot into the reserved pool slot, which only the agent can write,
  // and the checksum is checked on that copy.
  struct Staging {
    tier::MemorySegment segment;
    uint32_t slots = 0;
    uint64_t slot_bytes = 0;
    std::vector<uint32_t> free;  // staging slots not lent to a reservation
    struct Lent {
      uint32_t staging_slot;
      std::span<std::byte> pool_slot;  // the agent's mapping of the reserved slot
    };
    std::unordered_map<uint64_t, Lent> lent;  // by reservation
  };
  struct Attached {
    std::string name;
    // Weak: a deleted or replaced pool is destroyed (and its memory
    // released) even while this connection stays open.
    std::weak_ptr<pool::Pool> pool;
    std::unique_ptr<Staging> staging;  // writable leases only
  };
  Result<std::unique_ptr<Staging>> MakeStaging(const pool::Pool& pool) const;

  // FAILED_PRECONDITION (and the pool's staging segment freed) once the
  // pool was deleted or replaced.
  Result<std::shared_ptr<pool::Pool>> PoolById(uint32_t id);
  // Sends `head`, one SegmentInfo per segment, then `trailer`; fds: the
  // leading ones, the segments' (read-only), then `trailer_fd` when the
  // trailer is not empty.
  Status SendSegments(const Message& m, std::vector<std::byte> head,
                      const std::vector<pool::Pool::SegmentRef>& segments,
                      std::vector<int> leading_fds, std::span<const std::byte> trailer = {},
                      int trailer_fd = -1);
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
  std::vector<Attached> attached_;  // pool_id = position
};

}  // namespace tokenmem::local
