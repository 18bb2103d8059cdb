#include "lease_reclaimer.h"

#include <algorithm>
#include <set>

#include "lease_owner.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem::device_plugin {
namespace {

constexpr char kLog[] = "reclaim";

}  // namespace

LeaseReclaimer::LeaseReclaimer(ReclaimerOptions options, AgentClient* agent,
                               PodResourcesSource* pods, Clock clock,
                               std::function<void()> on_released, std::function<void()> on_bound)
    : options_(std::move(options)),
      agent_(agent),
      pods_(pods),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })),
      on_released_(std::move(on_released)),
      on_bound_(std::move(on_bound)) {}

LeaseReclaimer::~LeaseReclaimer() { Stop(); }

void LeaseReclaimer::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  TM_LOG(Info, kLog) << "reclaiming leases whose devices no container holds for "
                     << options_.grace.count() << " ms (checked every " << options_.interval.count()
                     << " ms)";
  thread_ = std::thread([this] { Run(); });
}

void LeaseReclaimer::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void LeaseReclaimer::Nudge() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    const auto now = std::chrono::steady_clock::now();
    // A burst of Allocates must not keep pushing the first fast pass away.
    if (now >= fast_until_) next_fast_ = now + options_.fast_interval;
    fast_until_ = now + options_.fast_window;
    ++nudges_;
    nudged_ = true;
  }
  wake_.notify_all();
}

void LeaseReclaimer::Run() {
  using std::chrono::steady_clock;
  std::unique_lock<std::mutex> lock(mu_);
  auto next_full = steady_clock::now() + options_.interval;
  while (!stopping_) {
    auto wake_at = next_full;
    if (steady_clock::now() < fast_until_) wake_at = std::min(wake_at, next_fast_);
    nudged_ = false;
    wake_.wait_until(lock, wake_at, [&] { return stopping_ || nudged_; });
    if (stopping_) break;
    if (nudged_) continue;  // fast passes are on now: wait for the first one
    const auto now = steady_clock::now();
    const bool full = now >= next_full;
    if (!full && (now >= fast_until_ || now < next_fast_)) continue;
    const uint64_t nudges = nudges_;
    lock.unlock();
    auto pass = full ? RunOnce() : BindOnce();
    lock.lock();
    if (full) next_full = steady_clock::now() + options_.interval;
    next_fast_ = steady_clock::now() + options_.fast_interval;
    // Done once every lease has its namespace, unless an Allocate came
    // during the pass (its lease may be newer than the pass's list).
    if (pass.ok() && pass->unbound == 0 && nudges == nudges_) fast_until_ = {};
  }
}

void LeaseReclaimer::MaybeBind(const LeaseRecord& lease, const std::vector<std::string>& devices,
                               const DeviceHolders& holders, ReclaimPass* pass) {
  if (!lease.pod_namespace.empty()) return;
  std::set<std::string> namespaces;
  std::set<std::string> pod_names;  // "namespace/name"
  for (const auto& device : devices) {
    auto it = holders.find(device);
    if (it == holders.end()) continue;
    for (const auto& pod : it->second) {
      namespaces.insert(pod.pod_namespace);
      pod_names.insert(pod.pod_namespace + "/" + pod.name);
    }
  }
  if (namespaces.empty()) {  // held by no pod: the pod is not listed yet, or gone
    ++pass->unbound;
    return;
  }
  std::string pods;
  for (const auto& name : pod_names) pods += (pods.empty() ? "" : ", ") + name;
  // A problem is logged when it first shows for a lease (or changes), not
  // on every pass.
  auto warn = [&](const std::string& problem) {
    ++pass->unbound;
    auto [it, fresh] = bind_warned_.emplace(lease.id, problem);
    if (!fresh && it->second == problem) return;
    it->second = problem;
    TM_LOG(Warn, kLog) << "lease " << lease.id << " is not bound to a namespace: " << problem;
  };
  if (namespaces.size() > 1) {
    warn("its devices are held by pods of several namespaces (" + pods +
         "); pools that admit only some namespaces do not serve it");
    return;
  }
  const std::string& pod_namespace = *namespaces.begin();
  if (pod_namespace.empty()) {
    warn("PodResources lists its pod without a namespace (" + pods + ")");
    return;
  }
  Status s = agent_->BindLease(lease.id, pod_namespace);
  if (s.IsNotFound()) return;  // released meanwhile
  if (!s.ok()) {
    warn("binding it to " + pod_namespace + " (pod " + pods + ") failed: " + s.ToString() +
         "; tried again every pass");
    return;
  }
  bind_warned_.erase(lease.id);
  ++pass->bound;
  bound_total_.fetch_add(1);
  TM_LOG(Info, kLog) << "bound lease " << lease.id << " to namespace " << pod_namespace << " (pod "
                     << pods << ")";
  if (on_bound_) on_bound_();
}

Result<ReclaimPass> LeaseReclaimer::BindOnce() {
  Result<DeviceHolders> holders = pods_->ListDeviceHolders(options_.resource_name);
  if (!holders.ok()) return holders.status();
  Result<std::vector<LeaseRecord>> leases = agent_->ListLeases();
  if (!leases.ok()) return leases.status();
  ReclaimPass pass;
  for (const auto& lease : *leases) {
    auto owner = ParseLeaseOwner(lease.owner);
    if (!owner || owner->resource != options_.resource_name) continue;
    ++pass.plugin_leases;
    MaybeBind(lease, owner->devices, *holders, &pass);
  }
  return pass;
}

Result<ReclaimPass> LeaseReclaimer::RunOnce() {
  auto fail = [&](const Status& s) -> Status {
    failed_passes_.fetch_add(1);
    if (!last_pass_failed_) {
      TM_LOG(Warn, kLog) << "cannot check leases (" << s.ToString()
                         << "); none is released until both lists can be read";
    }
    last_pass_failed_ = true;
    return s;
  };
  // Devices first: a lease created after this list is new, and is spared by
  // the grace period even if the list missed it.
  Result<DeviceHolders> held = pods_->ListDeviceHolders(options_.resource_name);
  if (!held.ok()) return fail(held.status());
  Result<std::vector<LeaseRecord>> leases = agent_->ListLeases();
  if (!leases.ok()) return fail(leases.status());
  if (last_pass_failed_) {
    TM_LOG(Info, kLog) << "lease checks work again";
  }
  last_pass_failed_ = false;

  const auto now = clock_();
  ReclaimPass pass;
  std::set<std::string> listed;
  for (const auto& lease : *leases) {
    auto owner = ParseLeaseOwner(lease.owner);
    if (!owner || owner->resource != options_.resource_name) continue;
    ++pass.plugin_leases;
    listed.insert(lease.id);
    const bool in_use = std::any_of(owner->devices.begin(), owner->devices.end(),
                                    [&](const std::string& d) { return held->count(d) > 0; });
    if (in_use) {
      orphaned_since_.erase(lease.id);
      MaybeBind(lease, owner->devices, *held, &pass);
      continue;
    }
    ++pass.orphaned;
    auto [it, first_seen] = orphaned_since_.emplace(lease.id, now);
    if (first_seen) {
      TM_LOG(Info, kLog) << "lease " << lease.id << " (" << owner->devices.size()
                         << " devices) is held by no container; released in "
                         << options_.grace.count() << " ms unless it is again";
    }
    if (now - it->second < options_.grace) {
      if (lease.pod_namespace.empty()) ++pass.unbound;
      continue;
    }
    Status s = agent_->ReleaseLease(lease.id);
    if (!s.ok() && !s.IsNotFound()) {
      TM_LOG(Warn, kLog) << "cannot release lease " << lease.id << ": " << s.ToString()
                         << "; trying again next pass";
      if (lease.pod_namespace.empty()) ++pass.unbound;
      continue;
    }
    const auto unheld_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(now - it->second).count();
    orphaned_since_.erase(it);
    listed.erase(lease.id);
    ++pass.released;
    released_total_.fetch_add(1);
    TM_LOG(Info, kLog) << "released lease " << lease.id << " (" << FormatByteSize(lease.quota_bytes)
                       << ", " << FormatByteSize(lease.used_bytes)
                       << " in use): no container has held its devices for " << unheld_ms << " ms";
    if (on_released_) on_released_();
  }
  // Forget leases that are gone by other means.
  for (auto it = orphaned_since_.begin(); it != orphaned_since_.end();) {
    it = listed.count(it->first) ? std::next(it) : orphaned_since_.erase(it);
  }
  for (auto it = bind_warned_.begin(); it != bind_warned_.end();) {
    it = listed.count(it->first) ? std::next(it) : bind_warned_.erase(it);
  }
  return pass;
}

}  // namespace tokenmem::device_plugin
