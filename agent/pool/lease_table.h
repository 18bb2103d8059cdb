// Leases: byte quotas with a secret, the right to use pools.
//
// A lease is created with a quota and a random 128-bit secret; every data
// call presents (id, secret). Blocks are charged to the lease that put them
// (one pool block size per block, the space it occupies) and refunded when
// they leave the store. A put that would pass the quota fails before
// anything is evicted.
//
// Thread-safe: LeaseTable takes its own lock; LeaseAccount's counters are
// atomic and may be charged from any pool.
#pragma once

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "tier/memory_segment.h"
#include "tokenmem/common/status.h"

namespace tokenmem::pool {

struct LeaseOptions {
  uint64_t quota_bytes = 0;        // > 0
  std::vector<std::string> pools;  // pools the lease may use; empty: all
  bool read_only = false;
  std::string owner;  // free text shown to operators
  // The Kubernetes namespace of the pod using the lease; empty: none. Pools
  // with allowed_namespaces admit only leases in one of them.
  std::string namespace_name;
  // No namespace yet, but one will be bound (LeaseTable::Bind): restricted
  // pools answer UNAVAILABLE (retry) instead of PERMISSION_DENIED.
  bool namespace_pending = false;
};

class LeaseAccount {
 public:
  LeaseAccount(std::string id, std::string secret, LeaseOptions options, int64_t created_unix_s);

  const std::string& id() const { return id_; }
  const LeaseOptions& options() const { return options_; }
  int64_t created_unix_seconds() const { return created_unix_s_; }
  uint64_t used_bytes() const { return used_.load(std::memory_order_relaxed); }
  bool released() const { return released_.load(std::memory_order_acquire); }

  // Compares in constant time.
  bool SecretMatches(const std::string& secret) const;
  bool MayUsePool(const std::string& pool) const;

  // The namespace now (options() keeps what creation asked; Bind sets it later).
  std::string namespace_name() const;
  bool namespace_pending() const;
  // OK when a pool admitting `allowed` (empty: everyone) admits this lease.
  // PERMISSION_DENIED naming the pool and namespaces; UNAVAILABLE while the
  // namespace is pending.
  Status AdmittedTo(const std::string& pool, const std::vector<std::string>& allowed) const;

  // The lease's state page (layout::LeaseStatePage), created on first use:
  // a sealed memfd only the agent writes, which clients of the lease map
  // read-only to learn that it was released without asking the agent. The
  // fd stays owned by the account. kIoError / kResourceExhausted when the
  // memfd cannot be made.
  Result<int> StateFd();

  // Adds `bytes` if the quota allows it; false (and no change) otherwise.
  bool TryCharge(uint64_t bytes);
  void Refund(uint64_t bytes);

  // Blocks pinned on behalf of this lease, over every pool. A pool counts
  // a pin here when it records the lease as the block's pinner and uncounts
  // it when the pin goes (unpin, removal, replacement, lease release).
  uint64_t pinned_blocks() const { return pinned_.load(std::memory_order_relaxed); }
  // Counts one more pin when fewer than `max` are held (0: no limit);
  // false (and no change) otherwise.
  bool TryPin(uint64_t max);
  void Unpinned();

 private:
  friend class LeaseTable;
  // Sets released() and tells the clients through the state page.
  void MarkReleased();

  std::string id_;
  std::string secret_;
  LeaseOptions options_;
  int64_t created_unix_s_;
  std::atomic<uint64_t> used_{0};
  std::atomic<uint64_t> pinned_{0};
  std::atomic<bool> released_{false};
  mutable std::mutex namespace_mu_;
  std::string namespace_;   // guarded by namespace_mu_
  bool namespace_pending_;  // guarded by namespace_mu_
  std::mutex state_mu_;
  std::optional<tier::MemorySegment> state_page_;  // guarded by state_mu_
};

struct StoredLease;  // pool/lease_file.h

// Writes the whole lease list to the file (WriteLeaseFile); replaceable for
// tests that need a slow or failing disk.
using LeaseFileWriter =
    std::function<Status(const std::filesystem::path&, const std::vector<StoredLease>&)>;

struct CreatedLease {
  std::shared_ptr<LeaseAccount> account;
  std::string secret;  // handed out once
};

class LeaseTable {
 public:
  // Loads the leases kept in `file` (if it exists) and keeps the file up
  // to date from now on: every Create, Bind and Release rewrites it before
  // it answers. Without a call, leases live in memory only. `writer`
  // (empty: WriteLeaseFile) does the writing.
  //
  // The file is written outside the table's lock: a change takes a
  // numbered snapshot under the lock, and the write (with its fsync) runs
  // under a writer lock of its own, so Login and Authenticate (taken on the
  // remote server's network thread at HELLO) never wait for the disk. A
  // snapshot older than the one last written is skipped: the newer one
  // holds its change already.
  Status PersistTo(const std::filesystem::path& file, LeaseFileWriter writer = {});

  Result<CreatedLease> Create(LeaseOptions options);

  // Gives the lease its namespace: one without takes it (and is no longer
  // pending), the same again is accepted, another is FAILED_PRECONDITION.
  // NOT_FOUND for an unknown lease, INVALID_ARGUMENT for a bad name.
  Result<std::shared_ptr<LeaseAccount>> Bind(const std::string& id, const std::string& ns);

  // Marks the lease released and forgets it. Blocks charged to it stay in
  // their pools (they are cache contents); their charge is dropped. The
  // release hook then runs (outside the table's lock).
  Status Release(const std::string& id);

  // Called with every lease Release forgets, after it is marked released:
  // the agent drops the lease's pins there. Set before serving.
  void OnRelease(std::function<void(LeaseAccount&)> hook);

  // The lease, if `secret` is its secret (a connection presenting it).
  // NOT_FOUND / PERMISSION_DENIED otherwise.
  Result<std::shared_ptr<LeaseAccount>> Login(const std::string& id,
                                              const std::string& secret) const;

  // The lease, if `secret` is its secret, it may use `pool`, and it may
  // write when `write` is set. NOT_FOUND / PERMISSION_DENIED otherwise.
  Result<std::shared_ptr<LeaseAccount>> Authenticate(const std::string& id,
                                                     const std::string& secret,
                                                     const std::string& pool, bool write) const;

  std::vector<std::shared_ptr<LeaseAccount>> List() const;
  size_t size() const;

 private:
  struct Snapshot {
    uint64_t sequence = 0;  // 0: nothing to write (not persisted)
    std::filesystem::path file;
    std::vector<StoredLease> leases;
  };
  Snapshot TakeSnapshot() const;  // mu_ held
  // Writes `snapshot` unless a newer one was written already; mu_ not held.
  Status Write(Snapshot snapshot) const;

  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<LeaseAccount>> leases_;
  std::filesystem::path file_;      // guarded by mu_; empty: not persisted
  mutable uint64_t snapshots_ = 0;  // guarded by mu_: the last snapshot's number
  // mu_ and write_mu_ are never held together.
  mutable std::mutex write_mu_;
  mutable uint64_t written_ = 0;  // guarded by write_mu_: the last snapshot written
  LeaseFileWriter writer_;        // guarded by write_mu_
  std::function<void(LeaseAccount&)> on_release_;  // guarded by mu_
};

}  // namespace tokenmem::pool
