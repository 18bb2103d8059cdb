#include "plugin.h"

#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem::device_plugin {
namespace {

constexpr char kLog[] = "device-plugin";

}  // namespace

Result<std::unique_ptr<DevicePluginApp>> DevicePluginApp::Start(const Config& config) {
  TM_RETURN_IF_ERROR(Validate(config));
  std::unique_ptr<DevicePluginApp> app(new DevicePluginApp(config));
  DevicePluginApp& a = *app;
  const Config& c = a.config_;
  TM_LOG(Info, kLog) << "starting: resource " << c.resource_name << ", devices of "
                     << FormatByteSize(c.unit_bytes) << ", agent " << c.agent_socket
                     << ", kubelet directory " << c.device_plugin_dir;

  TM_ASSIGN_OR_RETURN(a.agent_, ConnectAgent(c.agent_socket, c.rpc_timeout));
  a.tracker_ = std::make_unique<DeviceTracker>(
      TrackerOptions{c.unit_bytes, c.capacity_source, c.agent_poll_interval}, a.agent_.get());
  a.tracker_->Start();

  PluginMetrics* metrics = &a.metrics_;
  // The reclaimer exists before the allocator, whose observer nudges it
  // into binding the new lease to its pod's namespace; it starts later.
  if (c.reclaim) {
    TM_ASSIGN_OR_RETURN(a.pods_, MakeGrpcPodResources(c.pod_resources_socket, c.rpc_timeout));
    a.reclaimer_ = std::make_unique<LeaseReclaimer>(
        ReclaimerOptions{c.resource_name, c.reclaim_interval, c.reclaim_grace}, a.agent_.get(),
        a.pods_.get(), nullptr, [metrics] { metrics->LeaseReclaimed(); },
        [metrics] { metrics->LeaseBound(); });
  }
  LeaseReclaimer* reclaimer = a.reclaimer_.get();
  a.allocator_ =
      std::make_unique<Allocator>(AllocatorOptionsFrom(c), a.agent_.get(), a.tracker_.get(),
                                  [metrics, reclaimer](const Status& s) {
                                    if (s.ok()) {
                                      metrics->AllocationSucceeded();
                                      if (reclaimer) reclaimer->Nudge();
                                    } else {
                                      metrics->AllocationFailed();
                                    }
                                  });

  a.registrar_ = MakeGrpcRegistrar(c.rpc_timeout);
  DeviceTracker* tracker = a.tracker_.get();
  Allocator* allocator = a.allocator_.get();
  const auto timeout = c.rpc_timeout;
  EndpointFactory factory =
      [tracker, allocator,
       timeout](const std::string& socket_path) -> Result<std::unique_ptr<PluginEndpoint>> {
    TM_ASSIGN_OR_RETURN(std::unique_ptr<PluginServer> server,
                        PluginServer::Start(socket_path, tracker, allocator, timeout));
    return std::unique_ptr<PluginEndpoint>(std::move(server));
  };
  SupervisorOptions sup;
  sup.device_plugin_dir = c.device_plugin_dir;
  sup.kubelet_socket = c.kubelet_socket;
  sup.plugin_socket = c.plugin_socket;
  sup.resource_name = c.resource_name;
  sup.backoff_initial = c.register_backoff_initial;
  sup.backoff_max = c.register_backoff_max;
  sup.recheck_interval = c.recheck_interval;
  SupervisorObservers observers;
  observers.registered = [metrics] { metrics->Registered(); };
  observers.failed = [metrics](const Status&) { metrics->RegistrationFailed(); };
  a.supervisor_ = std::make_unique<Supervisor>(std::move(sup), std::move(factory),
                                               a.registrar_.get(), std::move(observers));
  TM_RETURN_IF_ERROR(a.supervisor_->Start());

  if (a.reclaimer_) {
    a.reclaimer_->Start();
  } else {
    TM_LOG(Info, kLog) << "lease reclaim is off: leases live until released by hand, and get no "
                          "namespace (pools with allowedNamespaces refuse them)";
  }

  if (!c.http_listen.empty()) {
    DevicePluginApp* self = &a;
    HttpRoutes routes;
    routes["/metrics"] = [self, metrics] {
      return HttpReply{200, "text/plain; version=0.0.4; charset=utf-8",
                       metrics->Render(self->Scrape())};
    };
    routes["/healthz"] = [self] {
      const SupervisorState state = self->supervisor_->state();
      const bool ok = state != SupervisorState::kStopped;
      return HttpReply{ok ? 200 : 503, "text/plain; charset=utf-8",
                       std::string(ok ? "ok" : "stopped") + "\n"};
    };
    routes["/readyz"] = [self] {
      const SupervisorState state = self->supervisor_->state();
      if (state == SupervisorState::kServing) {
        return HttpReply{200, "text/plain; charset=utf-8", "ready\n"};
      }
      std::string body = "not ready: " + std::string(StateName(state));
      const Status error = self->supervisor_->last_error();
      if (!error.ok()) body += " (last error: " + error.ToString() + ")";
      return HttpReply{503, "text/plain; charset=utf-8", body + "\n"};
    };
    TM_ASSIGN_OR_RETURN(a.http_, HttpEndpoint::Start(c.http_listen, std::move(routes)));
  }
  return app;
}

DevicePluginApp::~DevicePluginApp() { Stop(); }

void DevicePluginApp::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (http_) http_->Stop();
  if (supervisor_) supervisor_->Stop();
  if (reclaimer_) reclaimer_->Stop();
  if (tracker_) tracker_->Stop();
  TM_LOG(Info, kLog) << "stopped";
}

void DevicePluginApp::RequestRestart() {
  if (supervisor_) supervisor_->RequestRestart();
}

ScrapeState DevicePluginApp::Scrape() const {
  const DeviceSnapshot snapshot = tracker_->Snapshot();
  ScrapeState s;
  s.healthy_devices = snapshot.healthy();
  s.unhealthy_devices = snapshot.unhealthy();
  s.agent_up = snapshot.agent_up;
  s.registered = supervisor_->state() == SupervisorState::kServing;
  return s;
}

}  // namespace tokenmem::device_plugin
