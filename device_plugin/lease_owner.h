// The owner text of the leases the device plugin creates. It records which
// devices a lease was made for, in the agent itself, so that the plugin
// finds its leases again after it restarts (ListLeases shows owners) and
// needs no state file of its own:
//
//   "k8s-device-plugin:<resource>:<device id>,<device id>,..."
//
// Any other owner text is not the plugin's, and its lease is left alone.
// Pure functions; thread-safe.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace tokenmem::device_plugin {

// The owner text for a lease of `devices` of `resource` (device IDs sorted,
// so the same set always reads the same).
std::string FormatLeaseOwner(std::string_view resource, std::vector<std::string> devices);

struct LeaseOwner {
  std::string resource;
  std::vector<std::string> devices;  // sorted, never empty
};

// The inverse of FormatLeaseOwner; nullopt when `owner` is not of that form.
std::optional<LeaseOwner> ParseLeaseOwner(std::string_view owner);

}  // namespace tokenmem::device_plugin
