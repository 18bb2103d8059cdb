#include "lease_reclaimer.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>

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
        {kResource, 1h, 30s}, &agent_, &pods_, [this] { return now_; }, [this] { ++released_; },
        [this] { ++bound_; });
  }

  // A copy of the agent's lease `id` (the agent is shared with the thread
  // in the Nudge tests).
  LeaseRecord Lease(const std::string& id) {
    std::lock_guard<std::mutex> lock(agent_.mu);
    return agent_.leases.at(id);
  }
  size_t Binds() {
    std::lock_guard<std::mutex> lock(agent_.mu);
    return agent_.binds.size();
  }
  int Lists() {
    std::lock_guard<std::mutex> lock(pods_.mu);
    return pods_.lists;
  }

  static constexpr char kResource[] = "tokenmem.io/memory";
  FakeAgent agent_;
  FakePods pods_;
  std::chrono::steady_clock::time_point now_{};
  int released_ = 0;
  std::atomic<int> bound_{0};
};

TEST_F(DevicePluginLeaseReclaimerTest, ReleasesAfterGraceOnlyWhenNoDeviceIsHeld) {
  AddLease("a", {"tokenmem-n0-0", "tokenmem-n0-1"});
  AddLease("b", {"tokenmem-n0-2"});
  pods_.Hold("default", "p", {"tokenmem-n0-1"});  // a is half held: in use
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
  pods_.Hold("default", "p", {"tokenmem-n0-0"});
  EXPECT_EQ(reclaimer.RunOnce()->orphaned, 0u);
  pods_.Clear();
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

// ---- namespace binding ----------------------------------------------------

TEST_F(DevicePluginLeaseReclaimerTest, BindsAHeldLeaseToItsPodsNamespace) {
  AddLease("a", {"tokenmem-n0-0", "tokenmem-n0-1"});
  agent_.leases["a"].namespace_pending = true;
  AddLease("b", {"tokenmem-n0-2"});  // held by nobody: nothing to bind to
  pods_.Hold("inference", "engine-0", {"tokenmem-n0-1"});
  LeaseReclaimer reclaimer = Make();

  auto pass = reclaimer.RunOnce();
  ASSERT_TRUE(pass.ok()) << pass.status().ToString();
  EXPECT_EQ(pass->bound, 1u);
  EXPECT_EQ(pass->unbound, 1u);  // b
  EXPECT_EQ(agent_.leases["a"].pod_namespace, "inference");
  EXPECT_FALSE(agent_.leases["a"].namespace_pending);
  EXPECT_TRUE(agent_.leases["b"].pod_namespace.empty());
  EXPECT_EQ(agent_.binds, (std::vector<std::pair<std::string, std::string>>{{"a", "inference"}}));
  EXPECT_EQ(reclaimer.bound_total(), 1u);
  EXPECT_EQ(bound_, 1);

  // Bound leases are not bound again.
  pass = reclaimer.RunOnce();
  EXPECT_EQ(pass->bound, 0u);
  EXPECT_EQ(agent_.binds.size(), 1u);
  EXPECT_TRUE(agent_.released.empty());
}

TEST_F(DevicePluginLeaseReclaimerTest, LeaseWithANamespaceIsLeftAlone) {
  AddLease("a", {"tokenmem-n0-0"});
  agent_.leases["a"].pod_namespace = "inference";
  AddLease("b", {"tokenmem-n0-1"});
  agent_.leases["b"].pod_namespace = "batch";  // however the pod reads now
  pods_.Hold("inference", "engine-0", {"tokenmem-n0-0"});
  pods_.Hold("inference", "engine-1", {"tokenmem-n0-1"});
  LeaseReclaimer reclaimer = Make();
  auto pass = reclaimer.RunOnce();
  ASSERT_TRUE(pass.ok());
  EXPECT_EQ(pass->bound, 0u);
  EXPECT_EQ(pass->unbound, 0u);
  EXPECT_TRUE(agent_.binds.empty());
  EXPECT_EQ(agent_.leases["b"].pod_namespace, "batch");
}

TEST_F(DevicePluginLeaseReclaimerTest, DevicesOfPodsInTwoNamespacesAreNotBound) {
  AddLease("split", {"tokenmem-n0-0", "tokenmem-n0-1"});
  AddLease("shared", {"tokenmem-n0-2"});
  pods_.Hold("team-a", "p", {"tokenmem-n0-0"});
  pods_.Hold("team-b", "q", {"tokenmem-n0-1"});
  pods_.Hold("team-a", "old", {"tokenmem-n0-2"});  // one device listed under two pods
  pods_.Hold("team-b", "new", {"tokenmem-n0-2"});
  LeaseReclaimer reclaimer = Make();
  for (int i = 0; i < 2; ++i) {
    auto pass = reclaimer.RunOnce();
    ASSERT_TRUE(pass.ok());
    EXPECT_EQ(pass->bound, 0u);
    EXPECT_EQ(pass->unbound, 2u);
    EXPECT_EQ(pass->orphaned, 0u);  // held all the same: never released
    now_ += 1h;
  }
  EXPECT_TRUE(agent_.binds.empty());
  EXPECT_TRUE(agent_.released.empty());
  EXPECT_TRUE(agent_.leases["split"].pod_namespace.empty());

  // Once one namespace is left, the lease is bound.
  pods_.Clear();
  pods_.Hold("team-b", "q", {"tokenmem-n0-1"});
  pods_.Hold("team-b", "new", {"tokenmem-n0-2"});
  EXPECT_EQ(reclaimer.RunOnce()->bound, 2u);
  EXPECT_EQ(agent_.leases["split"].pod_namespace, "team-b");
  EXPECT_EQ(agent_.leases["shared"].pod_namespace, "team-b");
}

TEST_F(DevicePluginLeaseReclaimerTest, OtherLeasesAreNeverBound) {
  agent_.leases["manual"] = {"manual", "my-notebook", 1, 0, 0};
  agent_.leases["other"] = {"other", FormatLeaseOwner("example.com/x", {"tokenmem-n0-0"}), 1, 0, 0};
  pods_.Hold("inference", "engine-0", {"tokenmem-n0-0"});
  LeaseReclaimer reclaimer = Make();
  auto pass = reclaimer.RunOnce();
  ASSERT_TRUE(pass.ok());
  EXPECT_EQ(pass->plugin_leases, 0u);
  EXPECT_EQ(pass->bound, 0u);
  EXPECT_TRUE(reclaimer.BindOnce().ok());
  EXPECT_TRUE(agent_.binds.empty());
}

TEST_F(DevicePluginLeaseReclaimerTest, FailedBindIsTriedAgainNextPass) {
  AddLease("a", {"tokenmem-n0-0"});
  pods_.Hold("inference", "engine-0", {"tokenmem-n0-0"});
  agent_.bind_error = Unavailable("BindLease: UNAVAILABLE: busy");
  LeaseReclaimer reclaimer = Make();
  auto pass = reclaimer.RunOnce();
  ASSERT_TRUE(pass.ok()) << pass.status().ToString();  // the pass itself worked
  EXPECT_EQ(pass->bound, 0u);
  EXPECT_EQ(pass->unbound, 1u);
  EXPECT_EQ(reclaimer.BindOnce()->unbound, 1u);
  EXPECT_EQ(agent_.binds.size(), 2u);
  EXPECT_EQ(reclaimer.bound_total(), 0u);

  agent_.bind_error = Status::Ok();
  pass = reclaimer.RunOnce();
  EXPECT_EQ(pass->bound, 1u);
  EXPECT_EQ(pass->unbound, 0u);
  EXPECT_EQ(agent_.leases["a"].pod_namespace, "inference");
  EXPECT_EQ(reclaimer.bound_total(), 1u);
}

TEST_F(DevicePluginLeaseReclaimerTest, BindOnlyPassesNeverReleaseNorMoveTheGrace) {
  AddLease("gone", {"tokenmem-n0-0"});
  AddLease("held", {"tokenmem-n0-1"});
  pods_.Hold("inference", "engine-0", {"tokenmem-n0-1"});
  LeaseReclaimer reclaimer = Make();
  ASSERT_TRUE(reclaimer.RunOnce().ok());  // "gone" orphaned from now
  now_ += 1h;
  AddLease("new", {"tokenmem-n0-2"});
  pods_.Hold("inference", "engine-1", {"tokenmem-n0-2"});
  auto pass = reclaimer.BindOnce();
  ASSERT_TRUE(pass.ok());
  EXPECT_EQ(pass->plugin_leases, 3u);
  EXPECT_EQ(pass->bound, 1u);    // "new"; "held" was bound by the first pass
  EXPECT_EQ(pass->unbound, 1u);  // "gone"
  EXPECT_EQ(pass->released, 0u);
  EXPECT_TRUE(agent_.released.empty());
  EXPECT_EQ(agent_.leases["new"].pod_namespace, "inference");
  // The full pass releases "gone" on the grace counted from the first pass.
  EXPECT_EQ(reclaimer.RunOnce()->released, 1u);
  EXPECT_EQ(agent_.released, (std::vector<std::string>{"gone"}));

  pods_.up = false;  // a bind-only pass without the list fails and binds nothing
  EXPECT_EQ(reclaimer.BindOnce().status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(reclaimer.failed_passes(), 0u);
}

TEST_F(DevicePluginLeaseReclaimerTest, NudgeBindsSoonAndThenStopsFastPasses) {
  // Full passes never come within the test: only Nudge binds.
  LeaseReclaimer reclaimer({kResource, 1h, 30s, 10ms, 10s}, &agent_, &pods_, nullptr, nullptr,
                           [this] { ++bound_; });
  reclaimer.Start();
  {
    std::lock_guard<std::mutex> lock(agent_.mu);
    AddLease("a", {"tokenmem-n0-0"});
    agent_.leases["a"].namespace_pending = true;
  }
  reclaimer.Nudge();
  // The pod shows up a moment after Allocate.
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(Binds(), 0u);
  EXPECT_GT(Lists(), 0);  // fast passes ran, found nothing held
  pods_.Hold("inference", "engine-0", {"tokenmem-n0-0"});
  const auto start = std::chrono::steady_clock::now();
  while (bound_ == 0 && std::chrono::steady_clock::now() - start < 2s) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_EQ(bound_, 1);
  EXPECT_EQ(Lease("a").pod_namespace, "inference");
  // Everything bound: the fast passes stop.
  std::this_thread::sleep_for(30ms);
  const int lists = Lists();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(Lists(), lists);
  reclaimer.Stop();
  EXPECT_EQ(Binds(), 1u);
  EXPECT_TRUE(agent_.released.empty());
}

TEST_F(DevicePluginLeaseReclaimerTest, FastPassesEndAfterTheWindow) {
  LeaseReclaimer reclaimer({kResource, 1h, 30s, 10ms, 100ms}, &agent_, &pods_);
  reclaimer.Start();
  {
    std::lock_guard<std::mutex> lock(agent_.mu);
    AddLease("a", {"tokenmem-n0-0"});  // never held
  }
  std::this_thread::sleep_for(50ms);
  EXPECT_EQ(Lists(), 0);  // no pass without a Nudge
  reclaimer.Nudge();
  std::this_thread::sleep_for(250ms);
  const int lists = Lists();
  EXPECT_GT(lists, 2);
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(Lists(), lists);
  reclaimer.Stop();
  EXPECT_TRUE(agent_.released.empty());
}

TEST(DevicePluginPodResourcesTest, AssignedDevicesAreTheHeldIds) {
  FakePods pods;
  pods.Hold("a", "p", {"d1", "d2"});
  pods.Hold("b", "q", {"d2"});
  auto ids = pods.AssignedDevices("tokenmem.io/memory");
  ASSERT_TRUE(ids.ok());
  EXPECT_EQ(*ids, (std::set<std::string>{"d1", "d2"}));
  pods.up = false;
  EXPECT_EQ(pods.AssignedDevices("tokenmem.io/memory").status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace tokenmem::device_plugin
