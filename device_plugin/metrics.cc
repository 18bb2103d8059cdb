#include "metrics.h"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace tokenmem::device_plugin {
namespace {

prometheus::Counter* NewCounter(prometheus::Registry& registry, const std::string& name,
                                const std::string& help) {
  return &prometheus::BuildCounter().Name(name).Help(help).Register(registry).Add({});
}

prometheus::Gauge* NewGauge(prometheus::Registry& registry, const std::string& name,
                            const std::string& help) {
  return &prometheus::BuildGauge().Name(name).Help(help).Register(registry).Add({});
}

}  // namespace

PluginMetrics::PluginMetrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& devices = prometheus::BuildGauge()
                      .Name("tokenmem_device_plugin_devices")
                      .Help("Devices listed to the kubelet, by health.")
                      .Register(*registry_);
  healthy_ = &devices.Add({{"health", "healthy"}});
  unhealthy_ = &devices.Add({{"health", "unhealthy"}});
  agent_up_ = NewGauge(*registry_, "tokenmem_device_plugin_agent_up",
                       "1 when the last GetStatus to the agent was answered.");
  registered_ = NewGauge(*registry_, "tokenmem_device_plugin_registered",
                         "1 while the plugin is registered with the kubelet and serving.");
  allocations_ = NewCounter(*registry_, "tokenmem_device_plugin_allocations_total",
                            "Containers given a lease by Allocate.");
  allocation_failures_ = NewCounter(*registry_, "tokenmem_device_plugin_allocation_failures_total",
                                    "Allocate calls that failed.");
  reclaimed_ = NewCounter(*registry_, "tokenmem_device_plugin_leases_reclaimed_total",
                          "Leases released because no container held their devices.");
  bound_ = NewCounter(*registry_, "tokenmem_device_plugin_leases_bound_total",
                      "Leases given the namespace of the pod holding their devices.");
  registrations_ = NewCounter(*registry_, "tokenmem_device_plugin_registrations_total",
                              "Successful registrations with the kubelet.");
  registration_failures_ =
      NewCounter(*registry_, "tokenmem_device_plugin_registration_failures_total",
                 "Failed attempts to serve and register with the kubelet.");
}

PluginMetrics::~PluginMetrics() = default;

void PluginMetrics::AllocationSucceeded() { allocations_->Increment(); }
void PluginMetrics::AllocationFailed() { allocation_failures_->Increment(); }
void PluginMetrics::LeaseReclaimed() { reclaimed_->Increment(); }
void PluginMetrics::LeaseBound() { bound_->Increment(); }
void PluginMetrics::Registered() { registrations_->Increment(); }
void PluginMetrics::RegistrationFailed() { registration_failures_->Increment(); }

std::string PluginMetrics::Render(const ScrapeState& state) {
  std::lock_guard<std::mutex> lock(mu_);
  healthy_->Set(static_cast<double>(state.healthy_devices));
  unhealthy_->Set(static_cast<double>(state.unhealthy_devices));
  agent_up_->Set(state.agent_up ? 1 : 0);
  registered_->Set(state.registered ? 1 : 0);
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace tokenmem::device_plugin
