#include "device_tracker.h"

#include <algorithm>

#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem::device_plugin {
namespace {

constexpr char kLog[] = "devices";

}  // namespace

size_t DeviceSnapshot::healthy() const {
  return static_cast<size_t>(
      std::count_if(devices.begin(), devices.end(), [](const Device& d) { return d.healthy; }));
}

const Device* DeviceSnapshot::Find(const std::string& id) const {
  for (const auto& d : devices) {
    if (d.id == id) return &d;
  }
  return nullptr;
}

DeviceTracker::DeviceTracker(TrackerOptions options, AgentClient* agent)
    : options_(options), agent_(agent) {}

DeviceTracker::~DeviceTracker() { Stop(); }

void DeviceTracker::Start() {
  (void)Poll();
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable() || stopping_) return;
  thread_ = std::thread([this] { Run(); });
}

void DeviceTracker::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  changed_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void DeviceTracker::Run() {
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    changed_.wait_for(lock, options_.poll_interval, [&] { return stopping_; });
    if (stopping_) break;
    lock.unlock();
    (void)Poll();
    lock.lock();
  }
}

Status DeviceTracker::Poll() {
  Result<AgentStatus> status = agent_->GetStatus();
  std::vector<Device> previous;
  bool was_up;
  uint64_t version;
  {
    std::lock_guard<std::mutex> lock(mu_);
    previous = snapshot_.devices;
    was_up = snapshot_.agent_up;
    version = snapshot_.version;
  }
  if (!status.ok()) {
    if (was_up || version == 0) {
      TM_LOG(Warn, kLog) << "the agent does not answer (" << status.status().ToString() << "); "
                         << previous.size() << " devices are Unhealthy";
    }
    Publish(false, AllUnhealthy(std::move(previous)));
    return status.status();
  }
  const auto capacity = CapacityByNode(*status, options_.capacity_source);
  std::vector<Device> devices = BuildDevices(capacity, options_.unit_bytes, previous);
  if (!was_up) {
    uint64_t total = 0;
    for (const auto& [node, bytes] : capacity) total += bytes;
    TM_LOG(Info, kLog) << "agent " << status->node_name << " answers: " << FormatByteSize(total)
                       << " lease-able on " << capacity.size() << " NUMA node(s), "
                       << devices.size() << " devices of " << FormatByteSize(options_.unit_bytes);
  }
  Publish(true, std::move(devices));
  return Status::Ok();
}

void DeviceTracker::Publish(bool agent_up, std::vector<Device> devices) {
  bool changed;
  {
    std::lock_guard<std::mutex> lock(mu_);
    changed = snapshot_.version == 0 || devices != snapshot_.devices;
    if (changed) {
      size_t healthy = 0;
      for (const auto& d : devices) healthy += d.healthy ? 1 : 0;
      TM_LOG(Info, kLog) << "device list changed: " << healthy << " Healthy, "
                         << devices.size() - healthy << " Unhealthy";
      snapshot_.devices = std::move(devices);
      ++snapshot_.version;
    }
    snapshot_.agent_up = agent_up;
  }
  if (changed) changed_.notify_all();
}

DeviceSnapshot DeviceTracker::Snapshot() const {
  std::lock_guard<std::mutex> lock(mu_);
  return snapshot_;
}

DeviceSnapshot DeviceTracker::WaitForChange(uint64_t seen_version,
                                            std::chrono::milliseconds timeout) {
  std::unique_lock<std::mutex> lock(mu_);
  const uint64_t wakes = wakes_;
  changed_.wait_for(lock, timeout, [&] {
    return snapshot_.version != seen_version || stopping_ || wakes_ != wakes;
  });
  return snapshot_;
}

void DeviceTracker::Wake() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++wakes_;
  }
  changed_.notify_all();
}

}  // namespace tokenmem::device_plugin
