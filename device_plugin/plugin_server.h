// PluginServer: the DevicePlugin gRPC service on the plugin's Unix socket in
// the kubelet's device-plugin directory.
//
//   GetDevicePluginOptions  GetPreferredAllocation available, no PreStart
//   ListAndWatch            the device list at once, then again after each
//                           change the DeviceTracker publishes; ends when
//                           the kubelet hangs up or the server stops
//   GetPreferredAllocation  preferred.h, per container
//   Allocate                Allocator; its error becomes the call's status
//   PreStartContainer       nothing to do
//
// One PluginServer serves one registration: the supervisor makes a fresh
// one each time the kubelet comes back (no fields reset for reuse).
// Start removes a stale socket file, listens, and checks that the socket
// answers before returning. Stop ends the streams, shuts the server down
// and removes the socket file if it is still the one this server made.
//
// Thread-safety: gRPC calls run on gRPC's threads; Start/Stop from one
// owner thread. The tracker and allocator must outlive the server.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "allocator.h"
#include "device_tracker.h"
#include "tokenmem/common/status.h"

namespace grpc {
class Server;
}

namespace tokenmem::device_plugin {

// What the supervisor holds while a plugin serves: destroying it stops the
// serving (the supervisor is tested with fakes of this).
class PluginEndpoint {
 public:
  virtual ~PluginEndpoint() = default;
};

class DevicePluginService;

class PluginServer final : public PluginEndpoint {
 public:
  // kInvalidArgument for an unusable path; kIoError when the socket cannot
  // be made or does not answer.
  static Result<std::unique_ptr<PluginServer>> Start(const std::string& socket_path,
                                                     DeviceTracker* tracker, Allocator* allocator,
                                                     std::chrono::milliseconds timeout);
  ~PluginServer() override;  // Stop()
  PluginServer(const PluginServer&) = delete;
  PluginServer& operator=(const PluginServer&) = delete;

  void Stop();
  const std::string& socket_path() const { return socket_path_; }

 private:
  PluginServer() = default;

  std::string socket_path_;
  DeviceTracker* tracker_ = nullptr;
  std::unique_ptr<DevicePluginService> service_;
  std::unique_ptr<grpc::Server> server_;
  ino_t inode_ = 0;  // of the socket file this server made
  bool stopped_ = false;
};

}  // namespace tokenmem::device_plugin
