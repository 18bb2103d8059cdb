// Agent: builds the node agent's parts from a validated configuration and
// runs them: topology -> pools (reopening NVMe data) -> leases -> mover ->
// control server -> local data server -> remote data server and cluster
// (when remote.listen is set) -> HTTP server (metrics, health) ->
// Kubernetes reconciler (when kubernetes.enabled).
// Stop() tears them down in the reverse order.
#pragma once

#include <memory>

#include "config/agent_config.h"
#include "control/control_server.h"
#include "control/control_service.h"
#include "http/agent_http.h"
#include "http/agent_metrics.h"
#include "k8s/http_kube_client.h"
#include "k8s/reconciler.h"
#include "local/local_server.h"
#include "pool/lease_table.h"
#include "pool/mover.h"
#include "pool/pool_manager.h"
#include "remote/cluster_router.h"
#include "remote/remote_server.h"
#include "topology/numa_topology.h"

namespace tokenmem {

inline constexpr const char* kVersion = "0.1.0";

class Agent {
 public:
  // `config` must have passed config::Validate. Errors name what failed
  // (a tier that the topology cannot back, a socket in use, ...).
  static Result<std::unique_ptr<Agent>> Start(const config::AgentConfig& config);
  ~Agent();

  void Stop();

  pool::PoolManager& pools() { return *pools_; }
  pool::LeaseTable& leases() { return leases_; }
  // The remote listener's address ("" when remote.listen is off).
  std::string remote_address() const { return remote_ ? remote_->address() : ""; }

 private:
  Agent() = default;
  Status ResolveTiers(const config::AgentConfig& config);
  Status StartRemote(const config::AgentConfig& config);
  Status StartKubernetes(const config::AgentConfig& config, const std::filesystem::path& nvme_root);

  topology::Topology topology_;
  std::vector<int> dram_nodes_;
  std::vector<int> cxl_nodes_;
  std::unique_ptr<http::AgentMetrics> metrics_;  // before everything that reports to it
  control::AgentInfo info_;
  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  std::unique_ptr<pool::Mover> mover_;
  std::unique_ptr<control::ControlServer> control_;
  std::unique_ptr<local::LocalServer> local_;
  std::unique_ptr<remote::RemoteServer> remote_;
  std::unique_ptr<remote::ClusterRouter> cluster_;  // after remote_: its address names us
  std::unique_ptr<http::AgentHttp> http_;
  std::unique_ptr<k8s::HttpKubeClient> kube_;
  std::unique_ptr<k8s::Reconciler> reconciler_;  // stopped first
};

}  // namespace tokenmem
