// Devices: how the agent's capacity becomes the kubelet's device list.
//
// One device is `unit_bytes` of lease-able capacity on one NUMA node, named
// "tokenmem-n<node>-<index>" (index from 0 on each node). Capacity per node
// comes from the agent's memory tiers (DRAM and CXL; NVMe is a spill tier,
// not memory, and never counts): each tier's figure (its capacity, or what
// pools reserve in it; CapacitySource) is split evenly over the tier's
// NUMA nodes, since GetStatus gives one figure per tier; a tier that names
// no node counts as node 0. A node's device count is its bytes divided by
// unit_bytes, rounded down.
//
// Leases are not subtracted: the kubelet counts the devices it gave out, and
// a lease's quota is a cap on cache use, not memory set aside (see
// docs/device-plugin.md).
//
// IDs stay stable: a device once listed is listed again, Unhealthy, when
// its node's capacity shrinks below it or the node disappears, so the
// kubelet sees a failure rather than a device that silently vanished.
//
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent_client.h"
#include "config.h"

namespace tokenmem::device_plugin {

struct Device {
  std::string id;
  int numa_node = 0;
  bool healthy = true;

  bool operator==(const Device&) const = default;
};

inline constexpr char kHealthy[] = "Healthy";
inline constexpr char kUnhealthy[] = "Unhealthy";

// "tokenmem-n<node>-<index>".
std::string DeviceId(int numa_node, int index);

struct ParsedDeviceId {
  int numa_node = 0;
  int index = 0;
};
// The inverse of DeviceId; nullopt for any other text.
std::optional<ParsedDeviceId> ParseDeviceId(std::string_view id);

// Lease-able bytes per NUMA node, from the memory tiers in `status`.
std::map<int, uint64_t> CapacityByNode(const AgentStatus& status, CapacitySource source);

// The device list for `capacity` (bytes per node) in units of `unit_bytes`,
// in (node, index) order: every device that fits is Healthy; devices of
// `previous` that no longer fit stay listed, Unhealthy.
std::vector<Device> BuildDevices(const std::map<int, uint64_t>& capacity, uint64_t unit_bytes,
                                 const std::vector<Device>& previous);

// `devices` with every device Unhealthy (the agent cannot be reached).
std::vector<Device> AllUnhealthy(std::vector<Device> devices);

}  // namespace tokenmem::device_plugin
