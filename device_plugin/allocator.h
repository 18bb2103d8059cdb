// Allocator: what Allocate does for each container the kubelet admits.
//
// For a container given devices D (all known and Healthy, else the call
// fails before anything is leased):
//   1. any earlier lease of the plugin that holds a device of D is released
//      first: the kubelet hands a device to a new container only once the
//      old one is gone (or was an init container whose devices are reused),
//      so a device never backs two leases;
//   2. the agent is asked for a lease of |D| * unit_bytes, owned by
//      FormatLeaseOwner(resource, D), limited to the configured pools and,
//      with bind_namespaces, namespace_pending: Allocate is not told the
//      pod, so the reclaimer binds the lease to the namespace of the pod
//      that PodResources shows holding D (lease_reclaimer.h), and pools
//      that admit only some namespaces answer UNAVAILABLE until then;
//   3. the container gets:
//        env   TOKENMEM_AGENT_SOCKET       the data socket, container path
//              TOKENMEM_LEASE              "ID:SECRET"
//              TOKENMEM_QUOTA_BYTES        the quota, decimal
//              TOKENMEM_NUMA_NODES         nodes of its devices, "0" or "0,1"
//              TOKENMEM_DEFAULT_POOL       when configured
//              TOKENMEM_REMOTE_ENDPOINTS   when configured, "host:port,..."
//        mount the data socket's directory, read-only: never the control
//              socket (nor its name in the environment), which is the node
//              admin's (docs/security-admin-plane.md)
//        devices  RDMA device nodes (rdma_discovery.h)
//        cdi_devices  the configured CDI names
// A request for several containers leases for each; if any fails, the
// leases made so far in that call are released and the call fails.
//
// Errors carry gRPC-ready codes and a message for the pod's events:
// kInvalidArgument (unknown device ID, no devices), kFailedPrecondition
// (unhealthy device), kUnavailable (the agent is down), or the agent's own
// code for a refused lease.
//
// Thread-safety: Allocate may run on several threads at once (the kubelet
// admits one pod at a time, but nothing here relies on it).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent_client.h"
#include "config.h"
#include "device_tracker.h"
#include "kubelet_api.h"
#include "rdma_discovery.h"
#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

// Environment variable names a container receives.
inline constexpr char kEnvAgentSocket[] = "TOKENMEM_AGENT_SOCKET";
inline constexpr char kEnvLease[] = "TOKENMEM_LEASE";
inline constexpr char kEnvQuotaBytes[] = "TOKENMEM_QUOTA_BYTES";
inline constexpr char kEnvNumaNodes[] = "TOKENMEM_NUMA_NODES";
inline constexpr char kEnvDefaultPool[] = "TOKENMEM_DEFAULT_POOL";
inline constexpr char kEnvRemoteEndpoints[] = "TOKENMEM_REMOTE_ENDPOINTS";

struct AllocatorOptions {
  std::string resource_name = "tokenmem.io/memory";
  uint64_t unit_bytes = uint64_t{1} << 30;
  std::vector<std::string> lease_pools;
  std::string default_pool;
  std::vector<std::string> remote_endpoints;
  std::vector<std::string> cdi_devices;
  std::string container_data_socket;  // as the container sees it
  std::string host_socket_dir;        // mount source: the data socket's directory
  std::string container_socket_dir;   // mount target
  std::string agent_socket;           // for messages only
  RdmaOptions rdma;
  // Leases are created namespace_pending (true where the reclaimer runs,
  // which binds them; without it a lease would stay pending for ever).
  bool bind_namespaces = true;
};

// AllocatorOptions from the plugin's config.
AllocatorOptions AllocatorOptionsFrom(const Config& config);

// Called once per container of a call that succeeded (OK), or once for a
// call that failed (its error; the call leased nothing in the end).
using AllocationObserver = std::function<void(const Status&)>;

class Allocator {
 public:
  // `agent` and `tracker` must outlive the allocator.
  Allocator(AllocatorOptions options, AgentClient* agent, const DeviceTracker* tracker,
            AllocationObserver observer = nullptr);

  Result<::v1beta1::AllocateResponse> Allocate(const ::v1beta1::AllocateRequest& request);

 private:
  Result<::v1beta1::ContainerAllocateResponse> AllocateContainer(
      const std::vector<std::string>& devices, const DeviceSnapshot& snapshot,
      std::vector<std::string>* leased);
  Status ReleaseHolders(const std::vector<std::string>& devices);

  const AllocatorOptions options_;
  AgentClient* const agent_;
  const DeviceTracker* const tracker_;
  const AllocationObserver observer_;
};

}  // namespace tokenmem::device_plugin
