// PodResourcesSource: which devices of a resource the kubelet has given to
// containers right now, from the kubelet's PodResources API v1 (List).
//
// The interface lets the reclaimer be tested without a kubelet;
// MakeGrpcPodResources is the real one. Thread-safety: callable from any
// thread.
#pragma once

#include <chrono>
#include <memory>
#include <set>
#include <string>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

class PodResourcesSource {
 public:
  virtual ~PodResourcesSource() = default;
  // The IDs of every device of `resource_name` that any container of any
  // pod holds. kUnavailable when the kubelet cannot be asked; never a
  // partial answer.
  virtual Result<std::set<std::string>> AssignedDevices(const std::string& resource_name) = 0;
};

// Calls List on the Unix socket `socket_path` with a deadline of `timeout`.
// The channel reconnects by itself after a kubelet restart.
// kInvalidArgument for an unusable path.
Result<std::unique_ptr<PodResourcesSource>> MakeGrpcPodResources(const std::string& socket_path,
                                                                 std::chrono::milliseconds timeout);

}  // namespace tokenmem::device_plugin
