// PodResourcesSource: which devices of a resource the kubelet has given to
// containers right now, and the pods holding them, from the kubelet's
// PodResources API v1 (List).
//
// The interface lets the reclaimer be tested without a kubelet;
// MakeGrpcPodResources is the real one. Thread-safety: callable from any
// thread.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

// A pod, as PodResources names it.
struct PodRef {
  std::string pod_namespace;
  std::string name;

  friend bool operator==(const PodRef&, const PodRef&) = default;
  friend auto operator<=>(const PodRef&, const PodRef&) = default;
};

// Device ID -> the pods whose containers hold it, each pod once, sorted.
// Normally one pod; the kubelet may list a device under a pod that is
// ending and the pod it was handed on to at once.
using DeviceHolders = std::map<std::string, std::vector<PodRef>>;

class PodResourcesSource {
 public:
  virtual ~PodResourcesSource() = default;

  // Every device of `resource_name` that any container of any pod holds,
  // with its pods. kUnavailable when the kubelet cannot be asked; never a
  // partial answer.
  virtual Result<DeviceHolders> ListDeviceHolders(const std::string& resource_name) = 0;

  // The IDs of ListDeviceHolders (same errors).
  Result<std::set<std::string>> AssignedDevices(const std::string& resource_name);
};

// Calls List on the Unix socket `socket_path` with a deadline of `timeout`.
// The channel reconnects by itself after a kubelet restart.
// kInvalidArgument for an unusable path.
Result<std::unique_ptr<PodResourcesSource>> MakeGrpcPodResources(const std::string& socket_path,
                                                                 std::chrono::milliseconds timeout);

}  // namespace tokenmem::device_plugin
