// The agent's /readyz checks and /v1/status document.
//
// Readiness: the agent is ready when it is not shutting down, its control
// socket accepts connections, it has at least one tier, and every NVMe tier
// directory is a writable directory. Memory tiers need no check: their
// segments are taken when pools are created, which already succeeded.
//
// /v1/status is one JSON object (docs/observability.md shows it): agent,
// readiness, tiers, pools with usage and counters, leases (ids, owners,
// quotas; never secrets), clients and peers (empty until the agent joins a
// cluster).
//
// Thread-safe: both functions only read, through the pools' and leases'
// own locks.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include "pool/lease_table.h"
#include "pool/pool_manager.h"

namespace tokenmem::http {

// What the agent tells the HTTP side about itself at start.
struct AgentFacts {
  struct Tier {
    pool::TierKind kind = pool::TierKind::kDram;
    std::vector<int> numa_nodes;
    uint64_t capacity_bytes = 0;
    std::string path;  // NVMe: the tier's directory
  };
  std::string version;
  std::string node_name;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  std::vector<Tier> tiers;
  std::filesystem::path control_socket;  // empty: not checked
  // Live cluster peers (this agent excluded); empty function: no cluster.
  struct Peer {
    std::string node;
    std::string address;
  };
  std::function<std::vector<Peer>()> peers;
};

// What keeps the agent from being ready; empty when ready.
std::vector<std::string> ReadinessProblems(const AgentFacts& facts, bool stopping);

// The /v1/status JSON document. `local_clients`: connections on the local
// data socket.
std::string StatusJson(const AgentFacts& facts, const pool::PoolManager& pools,
                       const pool::LeaseTable& leases, size_t local_clients,
                       const std::vector<std::string>& problems);

}  // namespace tokenmem::http
