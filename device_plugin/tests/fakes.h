// Fakes of the plugin's seams for unit tests: an agent (AgentClient), a
// kubelet's PodResources (PodResourcesSource) and Registration
// (Registrar). Each is scripted through public fields under its mutex and
// records what it was asked. Thread-safe.
#pragma once

#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "agent_client.h"
#include "pod_resources.h"
#include "registrar.h"

namespace tokenmem::device_plugin::testing {

class FakeAgent final : public AgentClient {
 public:
  // A DRAM tier of `bytes` on each of `nodes`, one tier per node.
  void SetDram(const std::vector<int>& nodes, uint64_t bytes_per_node) {
    std::lock_guard<std::mutex> lock(mu);
    status.tiers.clear();
    for (int node : nodes) status.tiers.push_back({TierKind::kDram, {node}, bytes_per_node, 0});
  }

  Result<AgentStatus> GetStatus() override {
    std::lock_guard<std::mutex> lock(mu);
    if (!up) return Unavailable("GetStatus: UNAVAILABLE: agent down");
    return status;
  }

  Result<GrantedLease> CreateLease(const LeaseRequest& request) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!up) return Unavailable("CreateLease: UNAVAILABLE: agent down");
    if (!create_error.ok()) return create_error;
    GrantedLease lease{"lease-" + std::to_string(++next_id), "secret-" + std::to_string(next_id),
                       request.quota_bytes};
    leases[lease.id] = {lease.id, request.owner, request.quota_bytes, 0, 0};
    requests.push_back(request);
    return lease;
  }

  Status ReleaseLease(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!up) return Unavailable("ReleaseLease: UNAVAILABLE: agent down");
    released.push_back(id);
    if (leases.erase(id) == 0) return NotFound("ReleaseLease: NOT_FOUND: no lease " + id);
    return Status::Ok();
  }

  Result<std::vector<LeaseRecord>> ListLeases() override {
    std::lock_guard<std::mutex> lock(mu);
    if (!up) return Unavailable("ListLeases: UNAVAILABLE: agent down");
    std::vector<LeaseRecord> out;
    for (const auto& [id, record] : leases) out.push_back(record);
    return out;
  }

  std::mutex mu;
  bool up = true;
  AgentStatus status;
  Status create_error;
  int next_id = 0;
  std::map<std::string, LeaseRecord> leases;
  std::vector<LeaseRequest> requests;
  std::vector<std::string> released;
};

class FakePods final : public PodResourcesSource {
 public:
  Result<std::set<std::string>> AssignedDevices(const std::string& resource_name) override {
    std::lock_guard<std::mutex> lock(mu);
    asked_for = resource_name;
    if (!up) return Unavailable("PodResources List: UNAVAILABLE: kubelet down");
    return held;
  }

  std::mutex mu;
  bool up = true;
  std::set<std::string> held;
  std::string asked_for;
};

class FakeRegistrar final : public Registrar {
 public:
  Status Register(const Registration& registration) override {
    std::lock_guard<std::mutex> lock(mu);
    calls.push_back(registration);
    if (failures_left > 0) {
      --failures_left;
      return Unavailable("Register: UNAVAILABLE: scripted failure");
    }
    return Status::Ok();
  }

  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return calls.size();
  }

  std::mutex mu;
  int failures_left = 0;
  std::vector<Registration> calls;
};

}  // namespace tokenmem::device_plugin::testing
