// DevicePluginApp: the whole device plugin, wired from a Config.
//
// Parts, started in this order and stopped in reverse:
//   AgentClient     gRPC to the agent's control socket
//   DeviceTracker   capacity and health from the agent (polls)
//   Allocator       leases and what containers get
//   Supervisor      PluginServer + Registrar, re-registering after kubelet
//                   restarts (inotify on the device-plugin directory)
//   LeaseReclaimer  PodResources-driven lease release and namespace binding
//                   (unless disabled; nudged by each successful Allocate)
//   HttpEndpoint    /metrics, /healthz, /readyz (unless disabled)
//
//   /healthz  200 while the supervisor runs (the process is working,
//             whatever the kubelet or the agent do); 503 otherwise
//   /readyz   200 while registered with the kubelet and serving; 503 with
//             the state and the last error otherwise
//
// Thread-safety: Start/Stop/RequestRestart from the owner thread; the
// accessors may be read from any thread.
#pragma once

#include <memory>

#include "agent_client.h"
#include "allocator.h"
#include "config.h"
#include "device_tracker.h"
#include "http.h"
#include "lease_reclaimer.h"
#include "metrics.h"
#include "pod_resources.h"
#include "registrar.h"
#include "supervisor.h"
#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

class DevicePluginApp {
 public:
  // Validates `config` and starts every part. Errors: the config's
  // (kInvalidArgument), the supervisor's or the HTTP listener's (kIoError).
  // An absent agent or kubelet is not an error: they are waited for.
  static Result<std::unique_ptr<DevicePluginApp>> Start(const Config& config);
  ~DevicePluginApp();  // Stop()
  DevicePluginApp(const DevicePluginApp&) = delete;
  DevicePluginApp& operator=(const DevicePluginApp&) = delete;

  void Stop();
  // Serve and register again (SIGHUP).
  void RequestRestart();

  int http_port() const { return http_ ? http_->port() : 0; }
  const Supervisor& supervisor() const { return *supervisor_; }
  const DeviceTracker& tracker() const { return *tracker_; }
  const LeaseReclaimer* reclaimer() const { return reclaimer_.get(); }

 private:
  explicit DevicePluginApp(Config config) : config_(std::move(config)) {}
  ScrapeState Scrape() const;

  const Config config_;
  PluginMetrics metrics_;
  std::unique_ptr<AgentClient> agent_;
  std::unique_ptr<DeviceTracker> tracker_;
  std::unique_ptr<Allocator> allocator_;
  std::unique_ptr<Registrar> registrar_;
  std::unique_ptr<Supervisor> supervisor_;
  std::unique_ptr<PodResourcesSource> pods_;
  std::unique_ptr<LeaseReclaimer> reclaimer_;
  std::unique_ptr<HttpEndpoint> http_;
  bool stopped_ = false;
};

}  // namespace tokenmem::device_plugin
