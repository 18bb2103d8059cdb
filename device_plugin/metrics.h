// PluginMetrics: the plugin's Prometheus metrics, rendered as text for
// /metrics (prometheus-cpp registry, TextSerializer).
//
//   tokenmem_device_plugin_devices{health="healthy"|"unhealthy"}   gauge
//   tokenmem_device_plugin_agent_up                                gauge 0/1
//   tokenmem_device_plugin_registered                              gauge 0/1
//   tokenmem_device_plugin_allocations_total                       counter (containers)
//   tokenmem_device_plugin_allocation_failures_total               counter (calls)
//   tokenmem_device_plugin_leases_reclaimed_total                  counter
//   tokenmem_device_plugin_leases_bound_total                      counter
//   tokenmem_device_plugin_registrations_total                     counter
//   tokenmem_device_plugin_registration_failures_total             counter
//
// Gauges are set from the state passed to Render at scrape time; counters
// are bumped by the observers below.
//
// Thread-safety: every method may be called from any thread.
#pragma once

#include <memory>
#include <mutex>
#include <string>

namespace prometheus {
class Registry;
class Counter;
class Gauge;
}  // namespace prometheus

namespace tokenmem::device_plugin {

struct ScrapeState {
  size_t healthy_devices = 0;
  size_t unhealthy_devices = 0;
  bool agent_up = false;
  bool registered = false;
};

class PluginMetrics {
 public:
  PluginMetrics();
  ~PluginMetrics();
  PluginMetrics(const PluginMetrics&) = delete;
  PluginMetrics& operator=(const PluginMetrics&) = delete;

  void AllocationSucceeded();
  void AllocationFailed();
  void LeaseReclaimed();
  void LeaseBound();
  void Registered();
  void RegistrationFailed();

  // The Prometheus text exposition format (version 0.0.4).
  std::string Render(const ScrapeState& state);

 private:
  std::mutex mu_;  // gauges set and collected together
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Gauge* healthy_;
  prometheus::Gauge* unhealthy_;
  prometheus::Gauge* agent_up_;
  prometheus::Gauge* registered_;
  prometheus::Counter* allocations_;
  prometheus::Counter* allocation_failures_;
  prometheus::Counter* reclaimed_;
  prometheus::Counter* bound_;
  prometheus::Counter* registrations_;
  prometheus::Counter* registration_failures_;
};

}  // namespace tokenmem::device_plugin
