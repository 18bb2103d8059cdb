#include "allocator.h"

#include <algorithm>
#include <set>

#include "lease_owner.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"
#include "wire/lease.h"

namespace tokenmem::device_plugin {
namespace {

constexpr char kLog[] = "allocate";

std::string Join(const std::vector<std::string>& items, std::string_view sep = ",") {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += sep;
    out += item;
  }
  return out;
}

// The devices of a container, as a sentence fragment: "3 devices (tokenmem-n0-0, ...)".
std::string Describe(const std::vector<std::string>& devices) {
  constexpr size_t kShown = 4;
  std::string out =
      std::to_string(devices.size()) + (devices.size() == 1 ? " device (" : " devices (");
  for (size_t i = 0; i < devices.size() && i < kShown; ++i) {
    if (i > 0) out += ", ";
    out += devices[i];
  }
  if (devices.size() > kShown) out += ", ...";
  return out + ")";
}

}  // namespace

AllocatorOptions AllocatorOptionsFrom(const Config& config) {
  AllocatorOptions o;
  o.resource_name = config.resource_name;
  o.unit_bytes = config.unit_bytes;
  o.lease_pools = config.lease_pools;
  o.default_pool = config.default_pool;
  o.remote_endpoints = config.remote_endpoints;
  o.cdi_devices = config.cdi_devices;
  o.container_data_socket = ContainerDataSocketPath(config);
  o.host_socket_dir = HostSocketDir(config);
  o.container_socket_dir = config.container_socket_dir;
  o.agent_socket = config.agent_socket;
  o.rdma = {config.rdma, config.dev_root, config.sysfs_root};
  o.bind_namespaces = config.reclaim;
  return o;
}

Allocator::Allocator(AllocatorOptions options, AgentClient* agent, const DeviceTracker* tracker,
                     AllocationObserver observer)
    : options_(std::move(options)),
      agent_(agent),
      tracker_(tracker),
      observer_(std::move(observer)) {}

Result<::v1beta1::AllocateResponse> Allocator::Allocate(const ::v1beta1::AllocateRequest& request) {
  const DeviceSnapshot snapshot = tracker_->Snapshot();
  ::v1beta1::AllocateResponse response;
  std::vector<std::string> leased;  // released again if a later container fails
  Status failure;
  // A device belongs to one container: a request that gives one to two
  // containers is refused before anything is leased (leasing for the second
  // would release the first one's lease).
  std::set<std::string> across;
  for (const auto& container : request.container_requests()) {
    std::set<std::string> within(container.devices_ids().begin(), container.devices_ids().end());
    for (const auto& id : within) {
      if (!across.insert(id).second && failure.ok()) {
        failure = InvalidArgument(options_.resource_name + ": device " + id +
                                  " is given to two containers");
      }
    }
  }
  for (const auto& container : request.container_requests()) {
    if (!failure.ok()) break;
    std::vector<std::string> devices(container.devices_ids().begin(),
                                     container.devices_ids().end());
    auto answer = AllocateContainer(devices, snapshot, &leased);
    if (!answer.ok()) {
      failure = answer.status();
      break;
    }
    *response.add_container_responses() = std::move(*answer);
  }
  if (failure.ok() && request.container_requests_size() == 0) {
    failure = InvalidArgument(options_.resource_name + ": Allocate named no containers");
  }
  if (!failure.ok()) {
    for (const auto& id : leased) {
      Status s = agent_->ReleaseLease(id);
      if (!s.ok() && !s.IsNotFound()) {
        TM_LOG(Warn, kLog) << "could not release lease " << id << " of a failed allocation ("
                           << s.ToString() << "); the reclaimer will";
      }
    }
    TM_LOG(Warn, kLog) << "Allocate failed: " << failure.ToString();
    if (observer_) observer_(failure);
    return failure;
  }
  if (observer_) {
    for (int i = 0; i < response.container_responses_size(); ++i) observer_(Status::Ok());
  }
  return response;
}

Result<::v1beta1::ContainerAllocateResponse> Allocator::AllocateContainer(
    const std::vector<std::string>& devices, const DeviceSnapshot& snapshot,
    std::vector<std::string>* leased) {
  const std::string& resource = options_.resource_name;
  if (devices.empty()) return InvalidArgument(resource + ": a container was given no devices");
  std::set<std::string> unique;
  std::set<int> nodes;
  for (const auto& id : devices) {
    if (!unique.insert(id).second) {
      return InvalidArgument(resource + ": device " + id + " is named twice");
    }
    const Device* device = snapshot.Find(id);
    if (device == nullptr) {
      return InvalidArgument(resource + ": unknown device " + id + " (this node lists " +
                             std::to_string(snapshot.devices.size()) + ")");
    }
    if (!device->healthy) {
      return FailedPrecondition(resource + ": device " + id + " is Unhealthy" +
                                (snapshot.agent_up ? " (its capacity is gone from the agent)"
                                                   : " (the tokenmem agent does not answer)"));
    }
    nodes.insert(device->numa_node);
  }

  TM_RETURN_IF_ERROR(ReleaseHolders(devices));

  const uint64_t quota = options_.unit_bytes * devices.size();
  LeaseRequest lease_request;
  lease_request.quota_bytes = quota;
  lease_request.pools = options_.lease_pools;
  lease_request.owner = FormatLeaseOwner(resource, devices);
  lease_request.namespace_pending = options_.bind_namespaces;
  Result<GrantedLease> lease = agent_->CreateLease(lease_request);
  if (!lease.ok()) {
    return Status(lease.status().code(), "tokenmem: could not lease " + FormatByteSize(quota) +
                                             " for " + Describe(devices) + " from the agent at " +
                                             options_.agent_socket + ": " +
                                             lease.status().message());
  }
  leased->push_back(lease->id);
  TM_LOG(Info, kLog) << "leased " << FormatByteSize(quota) << " as " << lease->id << " for "
                     << Describe(devices);

  ::v1beta1::ContainerAllocateResponse out;
  auto& envs = *out.mutable_envs();
  envs[kEnvAgentSocket] = options_.container_data_socket;
  envs[kEnvLease] = wire::FormatLease(lease->id, lease->secret);
  envs[kEnvQuotaBytes] = std::to_string(quota);
  std::vector<std::string> node_names;
  for (int node : nodes) node_names.push_back(std::to_string(node));
  envs[kEnvNumaNodes] = Join(node_names);
  if (!options_.default_pool.empty()) envs[kEnvDefaultPool] = options_.default_pool;
  if (!options_.remote_endpoints.empty()) {
    envs[kEnvRemoteEndpoints] = Join(options_.remote_endpoints);
  }

  auto* mount = out.add_mounts();
  mount->set_container_path(options_.container_socket_dir);
  mount->set_host_path(options_.host_socket_dir);
  mount->set_read_only(true);

  Result<std::vector<DeviceNode>> rdma = DiscoverRdmaDevices(options_.rdma);
  if (!rdma.ok()) {
    // The lease is still useful without RDMA (the local path needs none).
    TM_LOG(Warn, kLog) << "RDMA device discovery failed (" << rdma.status().ToString()
                       << "); the container gets no RDMA devices";
  } else {
    for (const auto& node : *rdma) {
      auto* spec = out.add_devices();
      spec->set_container_path(node.container_path);
      spec->set_host_path(node.host_path);
      spec->set_permissions(node.permissions);
    }
  }
  for (const auto& name : options_.cdi_devices) out.add_cdi_devices()->set_name(name);
  return out;
}

Status Allocator::ReleaseHolders(const std::vector<std::string>& devices) {
  Result<std::vector<LeaseRecord>> leases = agent_->ListLeases();
  if (!leases.ok()) {
    return Status(leases.status().code(), "tokenmem: cannot list the agent's leases at " +
                                              options_.agent_socket + ": " +
                                              leases.status().message());
  }
  const std::set<std::string> wanted(devices.begin(), devices.end());
  for (const auto& lease : *leases) {
    auto owner = ParseLeaseOwner(lease.owner);
    if (!owner || owner->resource != options_.resource_name) continue;
    const bool overlaps = std::any_of(owner->devices.begin(), owner->devices.end(),
                                      [&](const std::string& d) { return wanted.count(d) > 0; });
    if (!overlaps) continue;
    Status s = agent_->ReleaseLease(lease.id);
    if (!s.ok() && !s.IsNotFound()) {
      return Status(s.code(),
                    "tokenmem: cannot release lease " + lease.id +
                        ", which holds devices now given to a new container: " + s.message());
    }
    TM_LOG(Info, kLog) << "released lease " << lease.id << " (" << Describe(owner->devices)
                       << "): the kubelet gave its devices to a new container";
  }
  return Status::Ok();
}

}  // namespace tokenmem::device_plugin
