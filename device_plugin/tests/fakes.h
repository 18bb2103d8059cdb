// Fakes of the plugin's seams for unit tests: an agent (AgentClient), a
// kubelet's PodResources (PodResourcesSource) and Registration
// (Registrar). Each is scripted through public fields under its mutex and
// records what it was asked. Thread-safe.
#pragma once

#include <algorithm>
#include <atomic>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <utility>
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
    LeaseRecord record{lease.id, request.owner, request.quota_bytes, 0, 0};
    record.pod_namespace = request.pod_namespace;
    record.namespace_pending = request.namespace_pending && request.pod_namespace.empty();
    leases[lease.id] = std::move(record);
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

  // Like the agent: once; the same namespace again is fine.
  Status BindLease(const std::string& id, const std::string& pod_namespace) override {
    std::lock_guard<std::mutex> lock(mu);
    if (!up) return Unavailable("BindLease: UNAVAILABLE: agent down");
    binds.emplace_back(id, pod_namespace);
    if (!bind_error.ok()) return bind_error;
    auto it = leases.find(id);
    if (it == leases.end()) return NotFound("BindLease: NOT_FOUND: no lease " + id);
    LeaseRecord& lease = it->second;
    if (!lease.pod_namespace.empty() && lease.pod_namespace != pod_namespace) {
      return FailedPrecondition("BindLease: FAILED_PRECONDITION: lease " + id + " is in " +
                                lease.pod_namespace);
    }
    lease.pod_namespace = pod_namespace;
    lease.namespace_pending = false;
    return Status::Ok();
  }

  std::mutex mu;
  bool up = true;
  AgentStatus status;
  Status bind_error;  // answered by every BindLease while not OK
  Status create_error;
  int next_id = 0;
  std::map<std::string, LeaseRecord> leases;
  std::vector<LeaseRequest> requests;
  std::vector<std::string> released;
  std::vector<std::pair<std::string, std::string>> binds;  // (id, namespace), every call
};

class FakePods final : public PodResourcesSource {
 public:
  Result<DeviceHolders> ListDeviceHolders(const std::string& resource_name) override {
    std::lock_guard<std::mutex> lock(mu);
    asked_for = resource_name;
    ++lists;
    if (!up) return Unavailable("PodResources List: UNAVAILABLE: kubelet down");
    return holders;
  }

  // Pod `pod_namespace`/`pod` holds `devices` (besides any other pod).
  void Hold(const std::string& pod_namespace, const std::string& pod,
            const std::vector<std::string>& devices) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& id : devices) {
      auto& pods = holders[id];
      const PodRef ref{pod_namespace, pod};
      if (std::find(pods.begin(), pods.end(), ref) != pods.end()) continue;
      pods.push_back(ref);
      std::sort(pods.begin(), pods.end());
    }
  }

  void Clear() {
    std::lock_guard<std::mutex> lock(mu);
    holders.clear();
  }

  std::mutex mu;
  bool up = true;
  DeviceHolders holders;
  std::string asked_for;
  int lists = 0;
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
