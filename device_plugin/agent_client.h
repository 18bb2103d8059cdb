// AgentClient: everything the device plugin asks of the node's agent, over
// the agent's gRPC control API (the only way the plugin reaches it).
//
// The interface exists so that the plugin's logic can be tested with a fake;
// GrpcAgentClient is the real one. Every call has a deadline and returns the
// agent's answer or a Status: kUnavailable when the agent is not there (or
// did not answer in time), otherwise the agent's own code mapped by
// wire::FromRpcStatus ("CreateLease: RESOURCE_EXHAUSTED: ..." style
// messages). Lease secrets never appear in messages or logs.
//
// Thread-safety: implementations must be callable from any thread at once.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

enum class TierKind { kDram, kCxl, kNvme, kUnknown };

struct TierReport {
  TierKind kind = TierKind::kUnknown;
  std::vector<int> numa_nodes;  // memory tiers only; may be empty
  uint64_t capacity_bytes = 0;
  uint64_t reserved_bytes = 0;  // promised to pools
};

struct AgentStatus {
  std::string node_name;
  std::string version;
  std::vector<TierReport> tiers;
};

struct LeaseRequest {
  uint64_t quota_bytes = 0;
  std::vector<std::string> pools;  // empty: every pool
  std::string owner;               // free text the agent keeps and lists
  // The Kubernetes namespace of the pod using the lease; empty: none.
  std::string pod_namespace;
  // The namespace is bound later (BindLease): until then pools that admit
  // only some namespaces answer UNAVAILABLE (retry) instead of refusing.
  bool namespace_pending = false;
};

struct GrantedLease {
  std::string id;
  std::string secret;
  uint64_t quota_bytes = 0;
};

// A lease as ListLeases shows it (never with its secret).
struct LeaseRecord {
  std::string id;
  std::string owner;
  uint64_t quota_bytes = 0;
  uint64_t used_bytes = 0;
  int64_t created_unix_seconds = 0;
  std::string pod_namespace;       // empty: none (yet)
  bool namespace_pending = false;  // created to be bound later
};

class AgentClient {
 public:
  virtual ~AgentClient() = default;

  virtual Result<AgentStatus> GetStatus() = 0;
  virtual Result<GrantedLease> CreateLease(const LeaseRequest& request) = 0;
  // kNotFound when the agent has no such lease (already released).
  virtual Status ReleaseLease(const std::string& id) = 0;
  virtual Result<std::vector<LeaseRecord>> ListLeases() = 0;
  // Gives lease `id` its namespace. OK also when it already has that one;
  // kFailedPrecondition when it has another, kNotFound when there is no
  // such lease; an agent without BindLease answers UNIMPLEMENTED, which
  // reads kInternal ("BindLease: UNIMPLEMENTED: ...").
  virtual Status BindLease(const std::string& id, const std::string& pod_namespace) = 0;
};

// An AgentClient on the agent's control socket. The channel connects lazily
// and reconnects by itself (backoff at most about a second), so one client
// serves across agent restarts. kInvalidArgument for an unusable path.
Result<std::unique_ptr<AgentClient>> ConnectAgent(const std::string& control_socket,
                                                  std::chrono::milliseconds timeout);

}  // namespace tokenmem::device_plugin
