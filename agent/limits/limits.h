// Limits a tenant can hit, and who is told when one is.
//
// A pod holding a lease may be hostile (docs/limits.md): every budget it can
// run into (connections, HELLO deadlines, bytes and work in flight, request
// sizes, pins, HTTP connections) refuses with a clear error and reports the
// refusal here, so /metrics shows tokenmem_limit_rejections_total{limit} per
// kind. The servers take a LimitObserver* (null: nobody counts).
//
// Thread-safe: OnLimit may be called from any thread at once.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tokenmem::limits {

enum class Limit : uint8_t {
  kLocalConnections = 0,      // local data socket: connections in all
  kLocalPeerConnections,      // ... of one client process (SO_PEERCRED pid and uid)
  kLocalThreads,              // ... a session thread could not be created
  kLocalHelloTimeout,         // ... no HELLO within the deadline
  kRemoteConnections,         // UCX port: connections in all
  kRemotePeerConnections,     // ... from one address
  kRemoteHelloTimeout,        // ... no HELLO within the deadline
  kRemoteRequestsInFlight,    // ... requests in flight on one connection
  kRemoteBytesInFlight,       // ... payload bytes buffered for one connection
  kRemoteLeaseBytesInFlight,  // ... payload bytes buffered for one lease
  kRemoteQueue,               // ... the executor queue is full
  kRemoteQuota,               // ... a PUT refused before its payload was received
  kRequestSize,               // any request over its size limit
  kPins,                      // pinned blocks per lease
  kHttpConnections,           // HTTP: connections in all
  kHttpPeerConnections,       // ... from one address
  kHttpDeadline,              // ... a connection cut at its deadline
};
inline constexpr size_t kLimitCount = 17;

// The `limit` label value.
constexpr std::string_view LimitName(Limit limit) {
  constexpr std::array<std::string_view, kLimitCount> kNames = {
      "local_connections",      "local_peer_connections",
      "local_threads",          "local_hello_timeout",
      "remote_connections",     "remote_peer_connections",
      "remote_hello_timeout",   "remote_requests_in_flight",
      "remote_bytes_in_flight", "remote_lease_bytes_in_flight",
      "remote_queue",           "remote_quota",
      "request_size",           "pins",
      "http_connections",       "http_peer_connections",
      "http_deadline"};
  return kNames[static_cast<size_t>(limit)];
}

class LimitObserver {
 public:
  virtual ~LimitObserver() = default;
  virtual void OnLimit(Limit limit) = 0;
};

// Reports to `observer` when there is one.
inline void Note(LimitObserver* observer, Limit limit) {
  if (observer != nullptr) observer->OnLimit(limit);
}

// Counts in memory; for tests and for components without a registry.
class LimitCounters final : public LimitObserver {
 public:
  void OnLimit(Limit limit) override {
    counts_[static_cast<size_t>(limit)].fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t count(Limit limit) const {
    return counts_[static_cast<size_t>(limit)].load(std::memory_order_relaxed);
  }

 private:
  std::array<std::atomic<uint64_t>, kLimitCount> counts_{};
};

}  // namespace tokenmem::limits
