// RemoteServer: the agent's UCX listener for remote clients and peer
// agents (the remote data path; protocol in transport/frame.h).
//
// One progress thread owns the UCX worker, the listener and every
// endpoint; a small pool of executor threads runs the requests against
// the pools (an NVMe read must not stall the network). Per connection:
//   - HELLO is handled first and inline, so nothing else is served on a
//     connection that has not presented a lease;
//   - a malformed frame, an unknown op, an oversized payload or a PUT whose
//     payload does not match its items gets an error reply and the
//     connection is closed; everyone else is unaffected;
//   - at most `max_in_flight` requests run at once; more are refused
//     (RESOURCE_EXHAUSTED) rather than queued without bound;
//   - limits for hostile tenants (docs/limits.md): connections per address,
//     a HELLO deadline, buffered payload bytes per connection and per lease,
//     a bounded executor queue, and a PUT's permission and quota checked
//     before its payload is received; each refusal is a clear error reply
//     and a limits::Limit report.
// A peer that vanishes mid-transfer only ends its own connection: UCX
// completes its requests with an error and the connection is dropped.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "limits/limits.h"
#include "remote/request_handler.h"
#include "tokenmem/common/status.h"

namespace tokenmem::remote {

struct RemoteServerOptions {
  std::string listen;  // "host:port"; port 0 picks a free one
  uint32_t max_connections = 1024;
  uint32_t workers = 2;
  uint64_t max_batch_bytes = 64ull << 20;   // largest PUT payload accepted
  uint32_t max_in_flight = 256;             // per connection
  uint32_t max_connections_per_peer = 256;  // per client address
  std::chrono::milliseconds hello_timeout{5000};
  uint64_t max_bytes_per_connection = 256ull << 20;  // payloads buffered at once
  uint64_t max_bytes_per_lease = 1ull << 30;         // ... over a lease's connections
  uint32_t max_queued = 4096;                        // requests waiting for an executor
  limits::LimitObserver* limits = nullptr;           // told of each refusal
};

// Counters for /metrics; monotonic except `connections`.
struct RemoteServerStats {
  std::atomic<uint64_t> connections{0};
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_rejected{0};
  std::atomic<uint64_t> protocol_errors{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bytes_in{0};
  std::atomic<uint64_t> bytes_out{0};
  // PUT blocks received straight into pool slots, and through a buffer
  // (a cluster pool, a full quota, or no room without an NVMe write).
  std::atomic<uint64_t> put_blocks_in_place{0};
  std::atomic<uint64_t> put_blocks_buffered{0};
};

class RemoteServer {
 public:
  static Result<std::unique_ptr<RemoteServer>> Start(RemoteServerOptions options,
                                                     HandlerOptions handler);
  ~RemoteServer();  // closes every connection, then stops
  RemoteServer(const RemoteServer&) = delete;
  RemoteServer& operator=(const RemoteServer&) = delete;

  // The address it listens on, with the port it got ("127.0.0.1:40123").
  const std::string& address() const;
  const RemoteServerStats& stats() const;

  // Observes each request's op and duration (metrics); set before traffic.
  using Observer = std::function<void(transport::Op op, double seconds, bool ok)>;
  void SetObserver(Observer observer);
  // See RequestHandler::SetCluster.
  void SetCluster(ClusterHooks* cluster);

  struct Impl;

 private:
  explicit RemoteServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tokenmem::remote
