// A kubelet stand-in for the device plugin's integration tests: the parts of
// the kubelet the plugin talks to, on Unix sockets in a test's directory.
//
//   - Registration (device-plugin API v1beta1) on <device-plugin dir>/kubelet.sock:
//     records each RegisterRequest; refuses a wrong API version, and the
//     next n requests after RefuseRegistrations(n, ...).
//   - PodResourcesLister (v1) on the pod-resources socket: List answers
//     with the pods the test sets (name, namespace, containers' devices).
//   - Restart(): what a restarting kubelet does to the device-plugin
//     directory: stops Registration, removes every socket there (the
//     plugin's too), and serves Registration on a new kubelet.sock.
//
// Plus a DevicePlugin client side: DialPlugin and WatchRecorder, which
// reads a ListAndWatch stream on a thread of its own.
//
// Thread-safety: the servers run on gRPC threads; every method may be
// called from the test's thread while they run.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "kubelet_api.h"
#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin::testing {

class RegistrationService;
class PodResourcesService;

// One Register call as the stand-in answered it.
struct RegisterAttempt {
  ::v1beta1::RegisterRequest request;
  grpc::StatusCode answer = grpc::StatusCode::OK;  // OK: accepted
  std::string message;                             // of a refusal
  std::chrono::steady_clock::time_point at;        // when it arrived
};

class KubeletStandIn {
 public:
  // Serves both APIs. The directories must exist.
  static Result<std::unique_ptr<KubeletStandIn>> Start(const std::string& device_plugin_dir,
                                                       const std::string& pod_resources_socket);
  ~KubeletStandIn();  // stops both servers

  // See above. Errors when Registration cannot be served again.
  Status Restart();

  std::string kubelet_socket() const { return dir_ + "/kubelet.sock"; }

  // The accepted registrations, oldest first.
  std::vector<::v1beta1::RegisterRequest> registrations() const;
  // Waits until at least `count` registrations were accepted.
  bool WaitForRegistrations(size_t count, std::chrono::milliseconds timeout) const;

  // The next `count` Register calls (with the right API version) fail with
  // `code` and `message` instead of being accepted; replaces any count left.
  void RefuseRegistrations(int count, grpc::StatusCode code, const std::string& message);
  // Every Register call, accepted or refused, oldest first.
  std::vector<RegisterAttempt> attempts() const;

  // PodResources: pod name -> (container name -> device IDs of `resource`).
  // The pod is in `pod_namespace` (the one it was first set with; pod names
  // are unique across namespaces here).
  void SetContainer(const std::string& pod, const std::string& container,
                    const std::string& resource, const std::vector<std::string>& devices,
                    const std::string& pod_namespace = "default");
  void RemovePod(const std::string& pod);

 private:
  KubeletStandIn() = default;
  Status ServeRegistration();

  std::string dir_;
  std::unique_ptr<RegistrationService> registration_;
  std::unique_ptr<grpc::Server> registration_server_;
  std::unique_ptr<PodResourcesService> pods_;
  std::unique_ptr<grpc::Server> pods_server_;
};

// A DevicePlugin stub on the plugin's socket, connected (or nullptr after
// `timeout`).
std::unique_ptr<::v1beta1::DevicePlugin::Stub> DialPlugin(const std::string& socket_path,
                                                          std::chrono::milliseconds timeout);

// Reads one ListAndWatch stream until destroyed (or the stream ends).
class WatchRecorder {
 public:
  explicit WatchRecorder(::v1beta1::DevicePlugin::Stub* stub);
  ~WatchRecorder();
  WatchRecorder(const WatchRecorder&) = delete;
  WatchRecorder& operator=(const WatchRecorder&) = delete;

  // Waits until the latest list satisfies `done`; true if it did in time.
  bool WaitFor(const std::function<bool(const ::v1beta1::ListAndWatchResponse&)>& done,
               std::chrono::milliseconds timeout);
  size_t updates() const;
  ::v1beta1::ListAndWatchResponse latest() const;
  bool ended() const;

 private:
  grpc::ClientContext ctx_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<::v1beta1::ListAndWatchResponse> updates_;
  bool ended_ = false;
  std::thread thread_;
};

// Counts of devices by health in one list.
size_t CountHealth(const ::v1beta1::ListAndWatchResponse& list, const std::string& health);

}  // namespace tokenmem::device_plugin::testing
