// FakeAgent: a small stand-in for the agent's local data server, for the
// SDK's tests. It speaks the local protocol (layout/local_protocol.h) on a
// Unix SOCK_SEQPACKET socket and keeps each pool the way the agent does:
// a block index and a client area in memfds (shm_index.h), DRAM segments
// in memfds created as slots in them are first used, and an "NVMe" tier
// held in process memory (FETCH and LOOKUP bring blocks into DRAM).
//
// One server thread answers every connection, one request at a time.
// Test-side calls (Store, Evict, ...) may come from any thread; they take
// the same lock as the server, and change the index with the agent's
// seqlock writes, so clients may read concurrently.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"
#include "tokenmem/layout/shm_index.h"

namespace tokenmem::testing {

struct FakeAgentOptions {
  std::string socket_path;  // required
  std::string lease_id = "lease1";
  std::string lease_secret = "secret1";
  bool read_only = false;  // the lease is read-only
  // The pools are cluster pools (ATTACH says so): FETCH of a key the pool
  // lacks looks among the blocks given to StoreElsewhere.
  bool cluster = false;
  std::vector<std::string> pools = {"p1"};
  uint64_t block_size = 4096;
  uint32_t dram_slots = 64;
  uint32_t slots_per_segment = 8;  // DRAM slots per segment
  uint32_t nvme_slots = 64;
  uint64_t index_capacity = 256;  // a power of two
  // Slots handed out by RESERVE in one reply at most (0: no limit), to
  // test partial grants.
  uint32_t max_grant = 0;
};

class FakeAgent {
 public:
  explicit FakeAgent(FakeAgentOptions options);
  ~FakeAgent();  // Stop()
  FakeAgent(const FakeAgent&) = delete;
  FakeAgent& operator=(const FakeAgent&) = delete;

  // Creates the pools, binds and listens, starts the server thread.
  Status Start();
  // Stops the server, closes every connection, removes the socket.
  void Stop();

  const std::string& socket_path() const { return options_.socket_path; }

  // Closes every client connection, as a dying agent would (the pools'
  // memory stays mapped in the clients).
  void DropConnections();
  // While true, requests are read and never answered.
  void SetSilent(bool silent) { silent_.store(silent); }

  // Stores a block as if a client had committed it: tier 0 (DRAM) or 2 (NVMe).
  Status Store(const std::string& pool, const BlockKey& key, const std::string& bytes,
               uint32_t tier = 0);
  // Keeps a block as another node's agent would: with options.cluster, a
  // FETCH of the key stores it in DRAM here and answers OK.
  void StoreElsewhere(const std::string& pool, const BlockKey& key, const std::string& bytes);
  // Keys that FETCH looked for elsewhere (missing here) so far.
  uint64_t ElsewhereAsks() const { return elsewhere_asks_.load(); }
  // Removes a block (tombstone) and frees its slot; false when absent.
  bool Evict(const std::string& pool, const BlockKey& key);
  // Changes the entry's sequence (odd, then even again) without changing
  // the block: what a reader sees when the agent touched the entry.
  void BumpSeq(const std::string& pool, const BlockKey& key);
  // Overwrites the block's bytes in place under the entry's seqlock.
  void Rewrite(const std::string& pool, const BlockKey& key, const std::string& bytes);

  // The block's bytes as the fake holds them (any tier); NotFound if absent.
  Result<std::string> Read(const std::string& pool, const BlockKey& key);
  // The tier holding the block, or -1.
  int TierOf(const std::string& pool, const BlockKey& key);
  bool Pinned(const std::string& pool, const BlockKey& key);
  uint8_t Accessed(const std::string& pool, const BlockKey& key);
  layout::ClientArea* client_area(const std::string& pool);
  // Requests of `type` seen so far.
  uint64_t Requests(uint16_t type) const;
  // Reservations outstanding (granted, neither committed nor aborted).
  size_t OpenReservations();
  // DRAM segments created so far.
  uint32_t Segments(const std::string& pool);

 private:
  struct Pool;
  struct Connection;

  void Serve();
  void Handle(Connection& c, const std::byte* msg, size_t n);
  void CloseConnection(size_t i);
  Pool* FindPool(const std::string& name);
  Pool* PoolById(uint32_t id);

  FakeAgentOptions options_;
  std::mutex mu_;
  std::vector<std::unique_ptr<Pool>> pools_;
  std::vector<std::unique_ptr<Connection>> connections_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: wakes the server thread
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> drop_{false};
  std::atomic<bool> silent_{false};
  std::atomic<uint64_t> requests_[16] = {};
  std::atomic<uint64_t> elsewhere_asks_{0};
  uint64_t next_reservation_ = 1;
};

}  // namespace tokenmem::testing
