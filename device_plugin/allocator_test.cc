#include "allocator.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "fakes.h"
#include "lease_owner.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::device_plugin {
namespace {

using testing::FakeAgent;
using tokenmem::testing::TempDir;
constexpr uint64_t kUnit = uint64_t{1} << 20;

class DevicePluginAllocatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    agent_.SetDram({0, 1}, 4 * kUnit);
    ASSERT_TRUE(tracker_.Poll().ok());
    options_.unit_bytes = kUnit;
    options_.container_data_socket = "/run/tokenmem/agent-data.sock";
    options_.host_socket_dir = "/host/run/tokenmem/data";
    options_.container_socket_dir = "/run/tokenmem";
    options_.agent_socket = "/host/run/tokenmem/agent.sock";
    options_.rdma.mode = RdmaMode::kOff;
  }

  Allocator Make() {
    return Allocator(options_, &agent_, &tracker_,
                     [this](const Status& s) { (s.ok() ? successes_ : failures_)++; });
  }

  static ::v1beta1::AllocateRequest Request(std::vector<std::vector<std::string>> containers) {
    ::v1beta1::AllocateRequest request;
    for (const auto& devices : containers) {
      auto* c = request.add_container_requests();
      for (const auto& d : devices) c->add_devices_ids(d);
    }
    return request;
  }

  FakeAgent agent_;
  DeviceTracker tracker_{{kUnit, CapacitySource::kTiers, std::chrono::hours(1)}, &agent_};
  AllocatorOptions options_;
  int successes_ = 0;
  int failures_ = 0;
};

TEST_F(DevicePluginAllocatorTest, LeasesAndAnswersWithEnvMountAndCdi) {
  options_.default_pool = "kv";
  options_.remote_endpoints = {"10.0.0.1:7000", "10.0.0.2:7000"};
  options_.cdi_devices = {"tokenmem.io/memory=all"};
  options_.lease_pools = {"kv"};
  Allocator allocator = Make();
  auto response = allocator.Allocate(Request({{"tokenmem-n1-0", "tokenmem-n1-1"}}));
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  ASSERT_EQ(response->container_responses_size(), 1);
  const auto& c = response->container_responses(0);
  const auto& env = c.envs();
  EXPECT_EQ(env.at("TOKENMEM_AGENT_SOCKET"), "/run/tokenmem/agent-data.sock");
  // The admin plane is not the container's: no control socket to find.
  EXPECT_EQ(env.count("TOKENMEM_CONTROL_SOCKET"), 0u);
  EXPECT_EQ(env.at("TOKENMEM_LEASE"), "lease-1:secret-1");
  EXPECT_EQ(env.at("TOKENMEM_QUOTA_BYTES"), std::to_string(2 * kUnit));
  EXPECT_EQ(env.at("TOKENMEM_NUMA_NODES"), "1");
  EXPECT_EQ(env.at("TOKENMEM_DEFAULT_POOL"), "kv");
  EXPECT_EQ(env.at("TOKENMEM_REMOTE_ENDPOINTS"), "10.0.0.1:7000,10.0.0.2:7000");
  ASSERT_EQ(c.mounts_size(), 1);
  EXPECT_EQ(c.mounts(0).container_path(), "/run/tokenmem");
  EXPECT_EQ(c.mounts(0).host_path(), "/host/run/tokenmem/data");
  EXPECT_TRUE(c.mounts(0).read_only());
  EXPECT_EQ(c.devices_size(), 0);
  ASSERT_EQ(c.cdi_devices_size(), 1);
  EXPECT_EQ(c.cdi_devices(0).name(), "tokenmem.io/memory=all");

  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_EQ(agent_.requests[0].quota_bytes, 2 * kUnit);
  EXPECT_EQ(agent_.requests[0].pools, (std::vector<std::string>{"kv"}));
  auto owner = ParseLeaseOwner(agent_.requests[0].owner);
  ASSERT_TRUE(owner.has_value());
  EXPECT_EQ(owner->devices, (std::vector<std::string>{"tokenmem-n1-0", "tokenmem-n1-1"}));
  // The pod is not known yet: the reclaimer binds its namespace later.
  EXPECT_TRUE(agent_.requests[0].namespace_pending);
  EXPECT_TRUE(agent_.requests[0].pod_namespace.empty());
  EXPECT_EQ(successes_, 1);
}

TEST_F(DevicePluginAllocatorTest, NoPendingNamespaceWithoutBinding) {
  options_.bind_namespaces = false;  // no reclaimer to bind it
  Allocator allocator = Make();
  ASSERT_TRUE(allocator.Allocate(Request({{"tokenmem-n0-0"}})).ok());
  ASSERT_EQ(agent_.requests.size(), 1u);
  EXPECT_FALSE(agent_.requests[0].namespace_pending);
}

TEST_F(DevicePluginAllocatorTest, OptionalEnvAbsentWhenNotConfigured) {
  Allocator allocator = Make();
  auto response = allocator.Allocate(Request({{"tokenmem-n0-0"}}));
  ASSERT_TRUE(response.ok());
  const auto& env = response->container_responses(0).envs();
  EXPECT_EQ(env.count("TOKENMEM_DEFAULT_POOL"), 0u);
  EXPECT_EQ(env.count("TOKENMEM_REMOTE_ENDPOINTS"), 0u);
  EXPECT_TRUE(agent_.requests[0].pools.empty());
}

TEST_F(DevicePluginAllocatorTest, RdmaDeviceSpecsFromFixture) {
  TempDir dir;
  namespace fs = std::filesystem;
  fs::create_directories(dir.path() / "sys/class/infiniband_verbs/uverbs0");
  fs::create_directories(dir.path() / "dev/infiniband");
  std::ofstream(dir.path() / "dev/infiniband/uverbs0");
  std::ofstream(dir.path() / "dev/infiniband/rdma_cm");
  options_.rdma = {RdmaMode::kSysfs, dir / "dev", dir / "sys"};
  Allocator allocator = Make();
  auto response = allocator.Allocate(Request({{"tokenmem-n0-0"}}));
  ASSERT_TRUE(response.ok());
  const auto& c = response->container_responses(0);
  ASSERT_EQ(c.devices_size(), 2);
  EXPECT_EQ(c.devices(0).container_path(), "/dev/infiniband/uverbs0");
  EXPECT_EQ(c.devices(0).host_path(), (dir / "dev").string() + "/infiniband/uverbs0");
  EXPECT_EQ(c.devices(0).permissions(), "rw");
  EXPECT_EQ(c.devices(1).container_path(), "/dev/infiniband/rdma_cm");
}

TEST_F(DevicePluginAllocatorTest, UnknownOrUnhealthyDevicesFailBeforeLeasing) {
  Allocator allocator = Make();
  auto unknown = allocator.Allocate(Request({{"tokenmem-n7-0"}}));
  ASSERT_FALSE(unknown.ok());
  EXPECT_EQ(unknown.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(unknown.status().message().find("tokenmem-n7-0"), std::string::npos);
  auto twice = allocator.Allocate(Request({{"tokenmem-n0-0", "tokenmem-n0-0"}}));
  EXPECT_EQ(twice.status().code(), StatusCode::kInvalidArgument);
  auto none = allocator.Allocate(Request({{}}));
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  auto shared =
      allocator.Allocate(Request({{"tokenmem-n0-0"}, {"tokenmem-n0-1", "tokenmem-n0-0"}}));
  EXPECT_EQ(shared.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(shared.status().message().find("two containers"), std::string::npos);

  {
    std::lock_guard<std::mutex> lock(agent_.mu);
    agent_.up = false;
  }
  (void)tracker_.Poll();
  auto unhealthy = allocator.Allocate(Request({{"tokenmem-n0-0"}}));
  ASSERT_FALSE(unhealthy.ok());
  EXPECT_EQ(unhealthy.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(unhealthy.status().message().find("does not answer"), std::string::npos);
  EXPECT_TRUE(agent_.requests.empty());
  EXPECT_EQ(failures_, 5);
}

TEST_F(DevicePluginAllocatorTest, RefusedLeaseFailsWithTheAgentsReason) {
  agent_.create_error = ResourceExhausted("CreateLease: RESOURCE_EXHAUSTED: no room");
  Allocator allocator = Make();
  auto response = allocator.Allocate(Request({{"tokenmem-n0-0"}}));
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), StatusCode::kResourceExhausted);
  const std::string m = response.status().message();
  EXPECT_NE(m.find("could not lease 1MiB"), std::string::npos) << m;
  EXPECT_NE(m.find("no room"), std::string::npos) << m;
  EXPECT_NE(m.find("tokenmem-n0-0"), std::string::npos) << m;
  EXPECT_EQ(m.find("secret"), std::string::npos) << m;
}

TEST_F(DevicePluginAllocatorTest, SecondContainerFailingReleasesTheFirstsLease) {
  Allocator allocator = Make();
  auto response = allocator.Allocate(Request({{"tokenmem-n0-0"}, {"tokenmem-n9-9"}}));
  ASSERT_FALSE(response.ok());
  EXPECT_TRUE(agent_.leases.empty());
  EXPECT_EQ(agent_.released, (std::vector<std::string>{"lease-1"}));
}

TEST_F(DevicePluginAllocatorTest, ReusedDevicesReleaseTheirOldLease) {
  Allocator allocator = Make();
  ASSERT_TRUE(allocator.Allocate(Request({{"tokenmem-n0-0", "tokenmem-n0-1"}})).ok());
  ASSERT_TRUE(allocator.Allocate(Request({{"tokenmem-n0-2"}})).ok());
  // The kubelet gives n0-1 to a new container: lease-1 goes, lease-2 stays.
  ASSERT_TRUE(allocator.Allocate(Request({{"tokenmem-n0-1"}})).ok());
  EXPECT_EQ(agent_.released, (std::vector<std::string>{"lease-1"}));
  EXPECT_EQ(agent_.leases.size(), 2u);
  EXPECT_EQ(agent_.leases.count("lease-2"), 1u);
  EXPECT_EQ(agent_.leases.count("lease-3"), 1u);
}

TEST_F(DevicePluginAllocatorTest, LeasesOfOtherOwnersAreLeftAlone) {
  agent_.leases["manual"] = {"manual", "operator", kUnit, 0, 0};
  agent_.leases["other-resource"] = {
      "other-resource", FormatLeaseOwner("example.com/thing", {"tokenmem-n0-0"}), kUnit, 0, 0};
  Allocator allocator = Make();
  ASSERT_TRUE(allocator.Allocate(Request({{"tokenmem-n0-0"}})).ok());
  EXPECT_TRUE(agent_.released.empty());
}

}  // namespace
}  // namespace tokenmem::device_plugin
