// DeviceTracker: the current device list and its health, kept up to date by
// asking the agent (GetStatus) every poll interval.
//
//   - agent answers: devices built from its capacity (devices.h); a tier
//     that failed (gone from the report, or shrunk) leaves its devices
//     listed as Unhealthy;
//   - agent does not answer: every known device is Unhealthy (the list
//     keeps its IDs), until it answers again.
//
// Each change of the list (an ID, a health, a node) bumps the version and
// wakes WaitForChange callers: ListAndWatch streams send on that. Polls
// that change nothing wake no one.
//
// Thread-safety: every method may be called from any thread. Start/Stop
// from one owner thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "agent_client.h"
#include "config.h"
#include "devices.h"

namespace tokenmem::device_plugin {

struct DeviceSnapshot {
  uint64_t version = 0;   // 0: the agent has not been asked yet
  bool agent_up = false;  // the last poll got an answer
  std::vector<Device> devices;

  size_t healthy() const;
  size_t unhealthy() const { return devices.size() - healthy(); }
  // The device named `id`, or nullptr.
  const Device* Find(const std::string& id) const;
};

struct TrackerOptions {
  uint64_t unit_bytes = uint64_t{1} << 30;
  CapacitySource capacity_source = CapacitySource::kTiers;
  std::chrono::milliseconds poll_interval{5000};
};

class DeviceTracker {
 public:
  // `agent` must outlive the tracker.
  DeviceTracker(TrackerOptions options, AgentClient* agent);
  ~DeviceTracker();  // Stop()
  DeviceTracker(const DeviceTracker&) = delete;
  DeviceTracker& operator=(const DeviceTracker&) = delete;

  // Polls once now (so the first list is ready), then every poll interval
  // on a thread of its own.
  void Start();
  // Joins the thread and wakes every waiter. Idempotent.
  void Stop();

  // One poll: asks the agent and publishes the result. Returns the agent's
  // error when it did not answer (the devices are then Unhealthy).
  Status Poll();

  DeviceSnapshot Snapshot() const;

  // Blocks until the version differs from `seen_version`, `timeout` passes,
  // Stop() is called or Wake() is: returns the snapshot then (the caller
  // compares versions to tell which).
  DeviceSnapshot WaitForChange(uint64_t seen_version, std::chrono::milliseconds timeout);

  // Wakes every WaitForChange caller at once (a server shutting down).
  void Wake();

 private:
  void Run();
  void Publish(bool agent_up, std::vector<Device> devices);

  const TrackerOptions options_;
  AgentClient* const agent_;

  mutable std::mutex mu_;
  std::condition_variable changed_;
  DeviceSnapshot snapshot_;
  uint64_t wakes_ = 0;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace tokenmem::device_plugin
