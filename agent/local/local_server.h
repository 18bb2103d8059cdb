// LocalServer: the agent's data socket for clients on the same node
// (protocol: proto/include/tokenmem/layout/local_protocol.h).
//
// A Unix SOCK_SEQPACKET listener; one thread per connection, since a node
// has few client processes (one per inference engine). Tenants may be
// hostile, so connections are bounded (LocalLimits): in all, and per client
// process (SO_PEERCRED pid and uid); a connection over a limit, or one whose
// thread cannot be created, gets a RESOURCE_EXHAUSTED message and is closed
// while everyone else is served. A connection that sends no HELLO within
// the deadline is closed. A connection proves
// a lease (HELLO), attaches pools (the pool's index, client area and memory
// segments travel as SCM_RIGHTS, read-only where the lease is), and asks for
// writes, NVMe fetches, removals and pins. When a connection ends, however
// the client died, its uncommitted reservations are freed and refunded.
//
// Pools with scope: cluster (once SetCluster installed the hooks): each
// committed block is handed to ClusterHooks::OnStored (forwarded to its
// owner), and FETCH asks the owner for keys this node does not hold.
#pragma once

#include <atomic>
#include <chrono>
#include <filesystem>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>

#include "limits/limits.h"
#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "remote/cluster_hooks.h"
#include "tokenmem/common/status.h"

namespace tokenmem::local {

class LocalSession;

// Told about each request that reached the agent: operation ("put" for
// reserve/commit/abort, "get" for fetch, "lookup_prefix", "delete", "pin",
// "unpin", "other"), how long it took, and whether it succeeded. Reads
// served from shared memory never reach the agent and are not timed here.
using RequestObserver =
    std::function<void(std::string_view operation, std::chrono::nanoseconds elapsed, bool ok)>;

struct LocalLimits {
  uint32_t max_connections = 1024;
  uint32_t max_connections_per_client = 64;  // per (pid, uid)
  std::chrono::milliseconds hello_timeout{5000};
  limits::LimitObserver* observer = nullptr;  // told of each refusal
};

class LocalServer {
 public:
  // Listens on `socket_path` (a stale socket is replaced; one that answers
  // is an error) with the given file mode.
  static Result<std::unique_ptr<LocalServer>> Start(const std::filesystem::path& socket_path,
                                                    uint32_t socket_mode, pool::PoolManager* pools,
                                                    pool::LeaseTable* leases,
                                                    RequestObserver observer = {},
                                                    LocalLimits limits = {});
  ~LocalServer();  // Shutdown()

  // Stops accepting, closes every connection, waits for their threads and
  // removes the socket file.
  void Shutdown();

  size_t connections() const;

  // Installs the cluster's hooks (they exist only after the remote server
  // started); sessions already running use them from their next request.
  // nullptr removes them (requests already running may still use the old
  // ones): call Shutdown() before destroying the hooks.
  void SetCluster(remote::ClusterHooks* cluster) { cluster_.store(cluster); }

 private:
  LocalServer(std::filesystem::path path, int listen_fd, pool::PoolManager* pools,
              pool::LeaseTable* leases, RequestObserver observer, LocalLimits limits);
  void AcceptLoop();
  // Serves one connection on its own thread.
  void Serve(int fd, uint64_t owner);
  // Answers a connection it will not serve, then closes it.
  void Refuse(int fd, limits::Limit limit, const std::string& why);

  struct Connection {
    int fd;
    uint64_t client;  // pid and uid of the peer, for the per-client limit
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void ReapFinished();  // mu_ held

  std::filesystem::path path_;
  int listen_fd_;
  pool::PoolManager* pools_;
  pool::LeaseTable* leases_;
  RequestObserver observer_;
  LocalLimits limits_;
  std::atomic<remote::ClusterHooks*> cluster_{nullptr};
  mutable std::mutex mu_;
  std::list<Connection> connections_;
  std::atomic<bool> stopping_{false};
  uint64_t next_owner_ = 1;
  std::thread acceptor_;
};

}  // namespace tokenmem::local
