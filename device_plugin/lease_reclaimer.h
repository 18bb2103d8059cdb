// LeaseReclaimer: releases the leases of containers that are gone.
//
// The device-plugin API never says when a pod ends, so every interval the
// reclaimer compares two lists:
//   - the plugin's leases, from the agent (ListLeases; a lease is the
//     plugin's when its owner text parses as lease_owner.h with this
//     resource), and
//   - the devices the kubelet has given to containers (PodResources List).
// A lease none of whose devices any container holds is "orphaned" from the
// first pass that sees it so; once it has stayed orphaned for the grace
// period it is released (ReleaseLease). A lease seen held again is no longer
// orphaned. The grace covers the moment between Allocate and the kubelet
// recording the container, and a kubelet that restarts.
//
// Releasing a lease frees its quota; the blocks it put stay in their pools
// as cache contents and leave them by the pool's own policy (eviction,
// TTL), like any other blocks.
//
// When either list cannot be had, the pass does nothing (no lease is ever
// released on missing information) and says why.
//
// Thread-safety: RunOnce is called by the reclaimer's own thread (after
// Start) or by a test (without Start); not both. Counters are readable from
// any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>

#include "agent_client.h"
#include "pod_resources.h"
#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

struct ReclaimerOptions {
  std::string resource_name = "tokenmem.io/memory";
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds grace{60000};
};

struct ReclaimPass {
  size_t plugin_leases = 0;  // the plugin's leases the agent lists
  size_t orphaned = 0;       // of them, held by no container (released ones included)
  size_t released = 0;       // released in this pass
};

using Clock = std::function<std::chrono::steady_clock::time_point()>;

class LeaseReclaimer {
 public:
  // `agent` and `pods` must outlive the reclaimer. `clock` defaults to
  // steady_clock::now; `on_released` (optional) is called per lease released.
  LeaseReclaimer(ReclaimerOptions options, AgentClient* agent, PodResourcesSource* pods,
                 Clock clock = nullptr, std::function<void()> on_released = nullptr);
  ~LeaseReclaimer();  // Stop()
  LeaseReclaimer(const LeaseReclaimer&) = delete;
  LeaseReclaimer& operator=(const LeaseReclaimer&) = delete;

  // Runs a pass every interval on a thread of its own.
  void Start();
  void Stop();

  // One pass. The error of the list that could not be had, if any (then
  // nothing was released); a lease that fails to release is logged and
  // tried again next pass.
  Result<ReclaimPass> RunOnce();

  uint64_t released_total() const { return released_total_.load(); }
  uint64_t failed_passes() const { return failed_passes_.load(); }

 private:
  void Run();

  const ReclaimerOptions options_;
  AgentClient* const agent_;
  PodResourcesSource* const pods_;
  const Clock clock_;
  const std::function<void()> on_released_;

  // Pass state: lease id -> when it was first seen orphaned.
  std::map<std::string, std::chrono::steady_clock::time_point> orphaned_since_;
  bool last_pass_failed_ = false;

  std::atomic<uint64_t> released_total_{0};
  std::atomic<uint64_t> failed_passes_{0};

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tokenmem::device_plugin
