#include "lease_reclaimer.h"

#include <gtest/gtest.h>

#include "fakes.h"
#include "lease_owner.h"

namespace tokenmem::device_plugin {
namespace {

using testing::FakeAgent;
using testing::FakePods;
using namespace std::chrono_literals;

class DevicePluginLeaseReclaimerTest : public ::testing::Test {
 protected:
  void AddLease(const std::string& id, std::vector<std::string> devices) {
    agent_.leases[id] = {id, FormatLeaseOwner(kResource, devices), 1 << 20, 0, 0};
  }

  LeaseReclaimer Make() {
    return LeaseReclaimer(
        {kResource, 1h, 30s}, &agent_, &pods_, [this] { return now_; }, [this] { ++released_; });
  }

  static constexpr char kResource[] = "tokenmem.io/memory";
  FakeAgent agent_;
  FakePods pods_;
  std::chrono::steady_clock::time_point now_{};
  int released_ = 0;
};

TEST_F(DevicePluginLeaseReclaimerTest, ReleasesAfterGraceOnlyWhenNoDeviceIsHeld) {
  AddLease("a", {"tokenmem-n0-0", "tokenmem-n0-1"});
  AddLease("b", {"tokenmem-n0-2"});
  pods_.held = {"tokenmem-n0-1"};  // a is half held: in use
  LeaseReclaimer reclaimer = Make();

  auto pass = reclaimer.RunOnce();
  ASSERT_TRUE(pass.ok()) << pass.status().ToString();
  EXPECT_EQ(pass->plugin_leases, 2u);
  EXPECT_EQ(pass->orphaned, 1u);
  EXPECT_EQ(pass->released, 0u);
  EXPECT_EQ(pods_.asked_for, kResource);

  now_ += 29s;
  EXPECT_EQ(reclaimer.RunOnce()->released, 0u);
  now_ += 1s;
  pass = reclaimer.RunOnce();
  EXPECT_EQ(pass->released, 1u);
  EXPECT_EQ(agent_.released, (std::vector<std::string>{"b"}));
  EXPECT_EQ(agent_.leases.count("a"), 1u);
  EXPECT_EQ(reclaimer.released_total(), 1u);
  EXPECT_EQ(released_, 1);
}

TEST_F(DevicePluginLeaseReclaimerTest, HeldAgainResetsTheGrace) {
  AddLease("a", {"tokenmem-n0-0"});
  LeaseReclaimer reclaimer = Make();
  ASSERT_TRUE(reclaimer.RunOnce().ok());
  now_ += 20s;
  pods_.held = {"tokenmem-n0-0"};
  EXPECT_EQ(reclaimer.RunOnce()->orphaned, 0u);
  pods_.held.clear();
  now_ += 20s;
  EXPECT_EQ(reclaimer.RunOnce()->released, 0u);  // orphaned again only 0 s ago
  now_ += 29s;
  EXPECT_EQ(reclaimer.RunOnce()->released, 0u);
  now_ += 1s;
  EXPECT_EQ(reclaimer.RunOnce()->released, 1u);
}

TEST_F(DevicePluginLeaseReclaimerTest, NothingReleasedWithoutBothLists) {
  AddLease("a", {"tokenmem-n0-0"});
  LeaseReclaimer reclaimer = Make();
  ASSERT_TRUE(reclaimer.RunOnce().ok());
  now_ += 1h;
  pods_.up = false;
  EXPECT_EQ(reclaimer.RunOnce().status().code(), StatusCode::kUnavailable);
  pods_.up = true;
  {
    std::lock_guard<std::mutex> lock(agent_.mu);
    agent_.up = false;
  }
  EXPECT_EQ(reclaimer.RunOnce().status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(agent_.released.empty());
  EXPECT_EQ(reclaimer.failed_passes(), 2u);
  {
    std::lock_guard<std::mutex> lock(agent_.mu);
    agent_.up = true;
  }
  EXPECT_EQ(reclaimer.RunOnce()->released, 1u);  // its grace ran from the first pass
}

TEST_F(DevicePluginLeaseReclaimerTest, OtherLeasesAreNeverTouched) {
  agent_.leases["manual"] = {"manual", "my-notebook", 1, 0, 0};
  agent_.leases["other"] = {"other", FormatLeaseOwner("example.com/x", {"d"}), 1, 0, 0};
  LeaseReclaimer reclaimer = Make();
  ASSERT_TRUE(reclaimer.RunOnce().ok());
  now_ += 24h;
  auto pass = reclaimer.RunOnce();
  EXPECT_EQ(pass->plugin_leases, 0u);
  EXPECT_TRUE(agent_.released.empty());
}

TEST_F(DevicePluginLeaseReclaimerTest, LeaseAlreadyGoneCountsAsReleased) {
  AddLease("a", {"tokenmem-n0-0"});
  LeaseReclaimer reclaimer = Make();
  ASSERT_TRUE(reclaimer.RunOnce().ok());
  now_ += 1h;
  // Released by someone else between the list and the release: NOT_FOUND is fine.
  agent_.leases.clear();
  EXPECT_EQ(reclaimer.RunOnce()->plugin_leases, 0u);
}

}  // namespace
}  // namespace tokenmem::device_plugin
