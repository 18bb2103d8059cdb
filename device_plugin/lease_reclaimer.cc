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
                               std::function<void()> on_released)
    : options_(std::move(options)),
      agent_(agent),
      pods_(pods),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })),
      on_released_(std::move(on_released)) {}

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

void LeaseReclaimer::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    wake_.wait_for(lock, options_.interval, [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    (void)RunOnce();
    lock.lock();
  }
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
  Result<std::set<std::string>> held = pods_->AssignedDevices(options_.resource_name);
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
      continue;
    }
    ++pass.orphaned;
    auto [it, first_seen] = orphaned_since_.emplace(lease.id, now);
    if (first_seen) {
      TM_LOG(Info, kLog) << "lease " << lease.id << " (" << owner->devices.size()
                         << " devices) is held by no container; released in "
                         << options_.grace.count() << " ms unless it is again";
    }
    if (now - it->second < options_.grace) continue;
    Status s = agent_->ReleaseLease(lease.id);
    if (!s.ok() && !s.IsNotFound()) {
      TM_LOG(Warn, kLog) << "cannot release lease " << lease.id << ": " << s.ToString()
                         << "; trying again next pass";
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
  return pass;
}

}  // namespace tokenmem::device_plugin
