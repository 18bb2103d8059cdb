// RemoteCollector: the remote data path's and the cluster's metrics, read
// at scrape time from a snapshot function the agent provides (so this
// library does not depend on UCX). No labels carry addresses or keys: peers
// are counted, not named.
//
// docs/observability.md lists the families.
#pragma once

#include <prometheus/collectable.h>

#include <cstdint>
#include <functional>
#include <vector>

namespace tokenmem::http {

struct RemoteSnapshot {
  // The remote listener (remote.listen).
  uint64_t connections = 0;
  uint64_t connections_accepted = 0;
  uint64_t connections_rejected = 0;
  uint64_t protocol_errors = 0;
  uint64_t requests = 0;
  uint64_t bytes_received = 0;
  uint64_t bytes_sent = 0;
  uint64_t put_blocks_in_place = 0;  // received straight into pool slots
  uint64_t put_blocks_buffered = 0;  // received into a buffer, then copied
  // The cluster (when it is on).
  bool cluster = false;
  uint64_t peers_known = 0;
  uint64_t peers_live = 0;
  uint64_t heartbeats_failed = 0;
  uint64_t membership_generation = 0;
  uint64_t forwarded_puts = 0;    // blocks delivered to their owners
  uint64_t forward_drops = 0;     // blocks not forwarded: queue full
  uint64_t forward_failures = 0;  // blocks whose forwarding failed
  uint64_t forward_queued = 0;    // waiting now
  uint64_t owner_gets = 0;        // local misses asked of the owner
  uint64_t owner_hits = 0;        // ... that the owner served
  uint64_t owner_failures = 0;    // ... that failed (owner unreachable)
  uint64_t handoff_blocks = 0;    // blocks queued for a new owner after a membership change
};

class RemoteCollector final : public prometheus::Collectable {
 public:
  explicit RemoteCollector(std::function<RemoteSnapshot()> snapshot)
      : snapshot_(std::move(snapshot)) {}
  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  std::function<RemoteSnapshot()> snapshot_;
};

}  // namespace tokenmem::http
