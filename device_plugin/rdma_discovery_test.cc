#include "rdma_discovery.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::device_plugin {
namespace {

namespace fs = std::filesystem;
using tokenmem::testing::TempDir;

// A fixture node: sysfs names uverbs devices, /dev holds (stand-in) nodes.
class DevicePluginRdmaDiscoveryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.path() / "sys/class/infiniband_verbs");
    fs::create_directories(dir_.path() / "dev/infiniband");
    options_ = {RdmaMode::kSysfs, dir_ / "dev", dir_ / "sys"};
  }
  void AddSysfs(const std::string& name, const std::string& ibdev) {
    fs::create_directories(dir_.path() / "sys/class/infiniband_verbs" / name);
    std::ofstream(dir_.path() / "sys/class/infiniband_verbs" / name / "ibdev") << ibdev << "\n";
  }
  void AddDev(const std::string& name) { std::ofstream(dir_.path() / "dev/infiniband" / name); }

  TempDir dir_;
  RdmaOptions options_;
};

TEST_F(DevicePluginRdmaDiscoveryTest, DeviceSpecsForFixtureNics) {
  AddSysfs("uverbs1", "mlx5_1");
  AddSysfs("uverbs0", "mlx5_0");
  AddSysfs("uverbs10", "mlx5_10");
  AddSysfs("not-uverbs", "x");
  AddDev("uverbs0");
  AddDev("uverbs1");
  AddDev("uverbs10");
  AddDev("rdma_cm");
  auto nodes = DiscoverRdmaDevices(options_);
  ASSERT_TRUE(nodes.ok()) << nodes.status().ToString();
  const std::string dev = dir_ / "dev";
  EXPECT_EQ(*nodes, (std::vector<DeviceNode>{
                        {"/dev/infiniband/uverbs0", dev + "/infiniband/uverbs0", "rw"},
                        {"/dev/infiniband/uverbs1", dev + "/infiniband/uverbs1", "rw"},
                        {"/dev/infiniband/uverbs10", dev + "/infiniband/uverbs10", "rw"},
                        {"/dev/infiniband/rdma_cm", dev + "/infiniband/rdma_cm", "rw"},
                    }));
}

TEST_F(DevicePluginRdmaDiscoveryTest, SkipsNodesMissingFromDev) {
  AddSysfs("uverbs0", "mlx5_0");
  AddSysfs("uverbs1", "mlx5_1");
  AddDev("uverbs1");
  auto nodes = DiscoverRdmaDevices(options_);
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);  // no rdma_cm in this fixture
  EXPECT_EQ((*nodes)[0].container_path, "/dev/infiniband/uverbs1");
}

TEST_F(DevicePluginRdmaDiscoveryTest, NoNicsNoDevicesNoRdmaCm) {
  AddDev("rdma_cm");
  auto nodes = DiscoverRdmaDevices(options_);
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->empty());
  fs::remove_all(dir_.path() / "sys");
  nodes = DiscoverRdmaDevices(options_);
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->empty());
}

TEST_F(DevicePluginRdmaDiscoveryTest, OffMeansNothing) {
  AddSysfs("uverbs0", "mlx5_0");
  AddDev("uverbs0");
  options_.mode = RdmaMode::kOff;
  auto nodes = DiscoverRdmaDevices(options_);
  ASSERT_TRUE(nodes.ok());
  EXPECT_TRUE(nodes->empty());
}

TEST(DevicePluginRdmaVerbsTest, LibibverbsListMatchesThisNode) {
  // This node's real list through libibverbs; without an RDMA NIC it is
  // empty. Every name is a uverbs device that sysfs shows too (sysfs may
  // show more: devices whose rdma-core provider is not installed).
  auto names = ListUverbsNames({RdmaMode::kVerbs, "/dev", "/sys"});
  ASSERT_TRUE(names.ok()) << names.status().ToString();
  for (const auto& n : *names) EXPECT_EQ(n.rfind("uverbs", 0), 0u) << n;
  auto sysfs = ListUverbsNames({RdmaMode::kSysfs, "/dev", "/sys"});
  ASSERT_TRUE(sysfs.ok());
  for (const auto& n : *names) {
    EXPECT_NE(std::find(sysfs->begin(), sysfs->end(), n), sysfs->end()) << n;
  }
}

}  // namespace
}  // namespace tokenmem::device_plugin
