// RequestHandler: what the agent does with one remote request (frame.h),
// apart from moving its bytes. No UCX here, so it is tested alone.
//
// A connection's Session starts unauthenticated; HELLO with a lease (or,
// from a peer agent, the cluster's shared secret) authenticates it, and
// nothing but HELLO and PING is served before that. ATTACH checks the
// lease against the pool, as the local path does; puts are charged to the
// lease, so quotas hold exactly as on the local path. A released lease
// stops working at its next ATTACH and at every write.
//
// Thread-safe: Handle() may run for many sessions at once; one session's
// requests may also run concurrently (its attached pools are guarded).
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pool/lease_table.h"
#include "pool/pool.h"
#include "pool/pool_manager.h"
#include "remote/cluster_hooks.h"
#include "tokenmem/transport/frame.h"
#include "tokenmem/transport/remote_connection.h"

namespace tokenmem::remote {

// Bytes of a reply's payload (found GET blocks, concatenated). Not zeroed
// on allocation: they are overwritten by the blocks.
struct Payload {
  std::unique_ptr<std::byte[]> data;
  size_t size = 0;  // bytes in all
  // A GET reply's blocks in order, when set: pieces of pool memory held in
  // place (no copy) and of `data` (blocks that had to be read or fetched).
  std::vector<transport::Piece> pieces;
  // Releases the pool holds behind `pieces` when the payload is dropped,
  // that is once UCX has sent it.
  std::shared_ptr<void> holds;
};

class Session {
 public:
  bool authenticated() const;
  bool is_peer() const;

 private:
  friend class RequestHandler;
  mutable std::mutex mu_;
  std::shared_ptr<pool::LeaseAccount> lease_;
  std::string secret_;
  bool peer_ = false;
  // Handle h is pools_[h - 1]. Weak: a deleted or replaced pool is freed
  // at once, and its handle answers FAILED_PRECONDITION from then on.
  std::vector<std::weak_ptr<pool::Pool>> pools_;
};

struct HandlerOptions {
  pool::PoolManager* pools = nullptr;
  pool::LeaseTable* leases = nullptr;
  std::string node_name;
  std::string cluster_secret;  // empty: peers cannot authenticate
  ClusterHooks* cluster = nullptr;
  // A GET is refused when its blocks at full size could pass this (the
  // reply buffer is allocated up front).
  uint64_t max_batch_bytes = 64ull << 20;
};

// A PUT whose blocks UCX receives straight into reserved pool slots, so
// the agent neither buffers nor copies them.
struct SlotPut {
  std::shared_ptr<pool::Pool> pool;
  uint64_t owner = 0;                     // the reservations' owner
  std::vector<pool::Pool::Grant> grants;  // one per PUT item, in order
};

class RequestHandler {
 public:
  explicit RequestHandler(HandlerOptions options);

  // The reply to `request`; GET blocks go to `payload`. `data` is a PUT's
  // payload (already checked to be request.PayloadBytes() long). Requests a
  // peer sends are not forwarded again (no loops).
  transport::Reply Handle(Session& session, const transport::Request& request,
                          std::span<const std::byte> data, Payload* payload);

  // True when `request` needs no disk or network I/O to answer (index
  // lookups; gets of blocks in memory; puts to a pool without an NVMe
  // tier), so the network thread may answer it at once rather than hand it
  // to an executor thread and back.
  bool IsQuick(Session& session, const transport::Request& request);

  // Reserves a slot per item of `request` (a PUT) when its blocks can be
  // received in place: the pool has a memory tier, is not forwarded to a
  // cluster owner, every item fits a block, the lease may write and its
  // quota covers the whole batch, and no NVMe write is needed to make
  // room. Otherwise nullopt: the put takes the buffered path, which
  // answers each item on its own.
  std::optional<SlotPut> ReserveSlots(Session& session, const transport::Request& request,
                                      uint64_t owner);
  // Whether a PUT may be received at all: OK unless the connection may not
  // write to the pool (PERMISSION_DENIED, INVALID_ARGUMENT for a pool not
  // attached) or its lease has no room for even one more block
  // (RESOURCE_EXHAUSTED). Checked before the payload is buffered.
  Status AdmitPut(Session& session, const transport::Request& request);
  // Publishes the received slots; the reply is the one Handle() would give.
  transport::Reply CommitSlots(const transport::Request& request, SlotPut& put);
  // Frees the slots of a put whose bytes did not arrive.
  static void AbortSlots(SlotPut& put);

  // Installs the cluster's hooks once they exist (the router needs the
  // server's address first); until then pools behave as scope: local.
  void SetCluster(ClusterHooks* cluster) { cluster_.store(cluster); }

 private:
  transport::Reply Hello(Session& session, const transport::Request& request);
  transport::Reply Attach(Session& session, const transport::Request& request);
  transport::Reply Get(Session& session, const std::shared_ptr<pool::Pool>& pool,
                       const transport::Request& request, Payload* payload);
  transport::Reply Put(Session& session, pool::Pool& pool, const transport::Request& request,
                       std::span<const std::byte> data);
  Result<std::shared_ptr<pool::Pool>> PoolFor(Session& session, uint32_t handle, bool write);

  HandlerOptions options_;
  std::atomic<ClusterHooks*> cluster_{nullptr};
  // Blocks stored for peers are charged here: the cluster's capacity is
  // the pools', not a tenant's quota.
  std::shared_ptr<pool::LeaseAccount> peer_account_;
};

}  // namespace tokenmem::remote
