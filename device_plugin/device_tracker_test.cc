#include "device_tracker.h"

#include <gtest/gtest.h>

#include <thread>

#include "fakes.h"

namespace tokenmem::device_plugin {
namespace {

using testing::FakeAgent;
constexpr uint64_t kUnit = uint64_t{1} << 20;

TEST(DevicePluginDeviceTrackerTest, PollBuildsDevicesAndBumpsVersionOnlyOnChange) {
  FakeAgent agent;
  agent.SetDram({0, 1}, 2 * kUnit);
  DeviceTracker tracker({kUnit, CapacitySource::kTiers, std::chrono::hours(1)}, &agent);
  EXPECT_EQ(tracker.Snapshot().version, 0u);
  ASSERT_TRUE(tracker.Poll().ok());
  DeviceSnapshot s = tracker.Snapshot();
  EXPECT_TRUE(s.agent_up);
  EXPECT_EQ(s.version, 1u);
  ASSERT_EQ(s.devices.size(), 4u);
  EXPECT_EQ(s.healthy(), 4u);
  EXPECT_EQ(s.devices[2].id, "tokenmem-n1-0");
  EXPECT_EQ(s.devices[2].numa_node, 1);
  ASSERT_TRUE(tracker.Poll().ok());
  EXPECT_EQ(tracker.Snapshot().version, 1u);  // nothing changed
}

TEST(DevicePluginDeviceTrackerTest, AgentDownMakesAllUnhealthyAndBackHealthy) {
  FakeAgent agent;
  agent.SetDram({0}, 3 * kUnit);
  DeviceTracker tracker({kUnit, CapacitySource::kTiers, std::chrono::hours(1)}, &agent);
  ASSERT_TRUE(tracker.Poll().ok());
  {
    std::lock_guard<std::mutex> lock(agent.mu);
    agent.up = false;
  }
  EXPECT_EQ(tracker.Poll().code(), StatusCode::kUnavailable);
  DeviceSnapshot down = tracker.Snapshot();
  EXPECT_FALSE(down.agent_up);
  EXPECT_EQ(down.devices.size(), 3u);
  EXPECT_EQ(down.healthy(), 0u);
  EXPECT_EQ(down.version, 2u);
  {
    std::lock_guard<std::mutex> lock(agent.mu);
    agent.up = true;
  }
  ASSERT_TRUE(tracker.Poll().ok());
  EXPECT_EQ(tracker.Snapshot().healthy(), 3u);
  EXPECT_EQ(tracker.Snapshot().version, 3u);
}

TEST(DevicePluginDeviceTrackerTest, FailedTierLeavesItsDevicesUnhealthy) {
  FakeAgent agent;
  agent.SetDram({0, 1}, kUnit);
  DeviceTracker tracker({kUnit, CapacitySource::kTiers, std::chrono::hours(1)}, &agent);
  ASSERT_TRUE(tracker.Poll().ok());
  agent.SetDram({0}, kUnit);  // node 1's tier is gone
  ASSERT_TRUE(tracker.Poll().ok());
  DeviceSnapshot s = tracker.Snapshot();
  ASSERT_EQ(s.devices.size(), 2u);
  EXPECT_TRUE(s.Find("tokenmem-n0-0")->healthy);
  EXPECT_FALSE(s.Find("tokenmem-n1-0")->healthy);
}

TEST(DevicePluginDeviceTrackerTest, WaitForChangeWakesOnPollThreadChange) {
  FakeAgent agent;
  agent.SetDram({0}, kUnit);
  DeviceTracker tracker({kUnit, CapacitySource::kTiers, std::chrono::milliseconds(10)}, &agent);
  tracker.Start();
  const uint64_t seen = tracker.Snapshot().version;
  ASSERT_EQ(seen, 1u);
  // Unchanged: times out with the same version.
  EXPECT_EQ(tracker.WaitForChange(seen, std::chrono::milliseconds(50)).version, seen);
  agent.SetDram({0}, 2 * kUnit);
  DeviceSnapshot s = tracker.WaitForChange(seen, std::chrono::seconds(5));
  EXPECT_EQ(s.version, seen + 1);
  EXPECT_EQ(s.devices.size(), 2u);
  tracker.Stop();
}

TEST(DevicePluginDeviceTrackerTest, WakeReleasesWaiters) {
  FakeAgent agent;
  agent.SetDram({0}, kUnit);
  DeviceTracker tracker({kUnit, CapacitySource::kTiers, std::chrono::hours(1)}, &agent);
  ASSERT_TRUE(tracker.Poll().ok());
  std::thread waker([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    tracker.Wake();
  });
  const auto start = std::chrono::steady_clock::now();
  tracker.WaitForChange(1, std::chrono::seconds(10));
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
  waker.join();
}

}  // namespace
}  // namespace tokenmem::device_plugin
