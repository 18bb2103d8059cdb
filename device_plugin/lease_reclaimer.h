// LeaseReclaimer: releases the leases of containers that are gone, and
// gives the others the namespace of their pod.
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
// Binding: Allocate is not told which pod it serves, so the plugin's leases
// are created namespace_pending (allocator.h). A pass also gives each
// plugin lease that has no namespace yet and whose devices are held the
// namespace of the pods holding them (BindLease). When those pods are of
// different namespaces the lease is not bound (a warning says so); a
// failed BindLease is logged and tried again next pass. Pools that admit
// only some namespaces serve a lease once it is bound.
//
// The pod's container starts a second or so after Allocate, and its engine
// waits on the binding, so Nudge() (called when Allocate succeeds) makes
// the thread run binding-only passes every fast_interval for up to
// fast_window, until no plugin lease is left without a namespace. Those passes never
// release anything and leave the grace bookkeeping alone.
//
// Thread-safety: RunOnce and BindOnce are called by the reclaimer's own
// thread (after Start) or by a test (without Start); not both. Nudge,
// Start, Stop and the counters may be used from any thread.
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
#include <vector>

#include "agent_client.h"
#include "pod_resources.h"
#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

struct ReclaimerOptions {
  std::string resource_name = "tokenmem.io/memory";
  std::chrono::milliseconds interval{10000};
  std::chrono::milliseconds grace{60000};
  // Binding-only passes after Nudge(): how often, and for how long at most.
  std::chrono::milliseconds fast_interval{250};
  std::chrono::milliseconds fast_window{30000};
};

struct ReclaimPass {
  size_t plugin_leases = 0;  // the plugin's leases the agent lists
  size_t orphaned = 0;       // of them, held by no container (released ones included)
  size_t released = 0;       // released in this pass
  size_t bound = 0;          // given their pod's namespace in this pass
  size_t unbound = 0;        // left without a namespace after this pass (held or not)
};

using Clock = std::function<std::chrono::steady_clock::time_point()>;

class LeaseReclaimer {
 public:
  // `agent` and `pods` must outlive the reclaimer. `clock` defaults to
  // steady_clock::now; `on_released` (optional) is called per lease released,
  // `on_bound` (optional) per lease bound. (Fast passes after Nudge are timed
  // by steady_clock whatever `clock` is.)
  LeaseReclaimer(ReclaimerOptions options, AgentClient* agent, PodResourcesSource* pods,
                 Clock clock = nullptr, std::function<void()> on_released = nullptr,
                 std::function<void()> on_bound = nullptr);
  ~LeaseReclaimer();  // Stop()
  LeaseReclaimer(const LeaseReclaimer&) = delete;
  LeaseReclaimer& operator=(const LeaseReclaimer&) = delete;

  // Runs a pass every interval on a thread of its own.
  void Start();
  void Stop();

  // Binding-only passes soon (see above); a no-op before Start or after Stop
  // as far as the thread goes. Never blocks on a pass.
  void Nudge();

  // One pass: release and bind. The error of the list that could not be
  // had, if any (then nothing was released or bound); a lease that fails
  // to release or bind is logged and tried again next pass.
  Result<ReclaimPass> RunOnce();

  // A binding-only pass: releases nothing and leaves the grace periods as
  // they are (plugin_leases, bound and unbound are set). The error of a list
  // that could not be had; it is not counted in failed_passes.
  Result<ReclaimPass> BindOnce();

  uint64_t released_total() const { return released_total_.load(); }
  uint64_t bound_total() const { return bound_total_.load(); }
  uint64_t failed_passes() const { return failed_passes_.load(); }

 private:
  void Run();
  // Binds `lease` when its devices' pods are of one namespace; counts into `pass`.
  void MaybeBind(const LeaseRecord& lease, const std::vector<std::string>& devices,
                 const DeviceHolders& holders, ReclaimPass* pass);

  const ReclaimerOptions options_;
  AgentClient* const agent_;
  PodResourcesSource* const pods_;
  const Clock clock_;
  const std::function<void()> on_released_;
  const std::function<void()> on_bound_;

  // Pass state: lease id -> when it was first seen orphaned.
  std::map<std::string, std::chrono::steady_clock::time_point> orphaned_since_;
  bool last_pass_failed_ = false;
  // Lease id -> the binding problem last logged for it (a warning per
  // lease and problem, not per fast pass).
  std::map<std::string, std::string> bind_warned_;

  std::atomic<uint64_t> released_total_{0};
  std::atomic<uint64_t> bound_total_{0};
  std::atomic<uint64_t> failed_passes_{0};

  std::mutex mu_;
  std::condition_variable wake_;
  bool stopping_ = false;
  bool nudged_ = false;
  uint64_t nudges_ = 0;
  std::chrono::steady_clock::time_point fast_until_{};  // binding-only passes until then
  std::chrono::steady_clock::time_point next_fast_{};
  std::thread thread_;
};

}  // namespace tokenmem::device_plugin
