#include "devices.h"

#include <gtest/gtest.h>

namespace tokenmem::device_plugin {
namespace {

constexpr uint64_t kGiB = uint64_t{1} << 30;

TEST(DevicePluginDevicesTest, IdsRoundTrip) {
  EXPECT_EQ(DeviceId(1, 7), "tokenmem-n1-7");
  auto parsed = ParseDeviceId("tokenmem-n12-345");
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->numa_node, 12);
  EXPECT_EQ(parsed->index, 345);
  for (const char* bad : {"", "tokenmem-n", "tokenmem-n1", "tokenmem-n1-", "tokenmem-n-1",
                          "tokenmem-nx-1", "tokenmem-n1-01", "gpu-0", "tokenmem-n1-2-3"}) {
    EXPECT_FALSE(ParseDeviceId(bad).has_value()) << bad;
  }
}

TEST(DevicePluginDevicesTest, CapacityCountsMemoryTiersAndSplitsAcrossNodes) {
  AgentStatus status;
  status.tiers = {
      {TierKind::kDram, {0, 1}, 8 * kGiB, 2 * kGiB},
      {TierKind::kCxl, {2}, 4 * kGiB, 0},
      {TierKind::kNvme, {}, 100 * kGiB, 0},
  };
  auto tiers = CapacityByNode(status, CapacitySource::kTiers);
  EXPECT_EQ(tiers, (std::map<int, uint64_t>{{0, 4 * kGiB}, {1, 4 * kGiB}, {2, 4 * kGiB}}));
  auto pools = CapacityByNode(status, CapacitySource::kPools);
  EXPECT_EQ(pools, (std::map<int, uint64_t>{{0, kGiB}, {1, kGiB}, {2, 0}}));
}

TEST(DevicePluginDevicesTest, TierWithoutNodesCountsAsNodeZeroAndTiersAdd) {
  AgentStatus status;
  status.tiers = {{TierKind::kDram, {}, 3 * kGiB, 0}, {TierKind::kCxl, {0}, kGiB, 0}};
  EXPECT_EQ(CapacityByNode(status, CapacitySource::kTiers),
            (std::map<int, uint64_t>{{0, 4 * kGiB}}));
}

TEST(DevicePluginDevicesTest, BuildRoundsDownPerNode) {
  auto devices = BuildDevices({{0, 2 * kGiB + kGiB / 2}, {1, kGiB}}, kGiB, {});
  ASSERT_EQ(devices.size(), 3u);
  EXPECT_EQ(devices[0], (Device{"tokenmem-n0-0", 0, true}));
  EXPECT_EQ(devices[1], (Device{"tokenmem-n0-1", 0, true}));
  EXPECT_EQ(devices[2], (Device{"tokenmem-n1-0", 1, true}));
}

TEST(DevicePluginDevicesTest, ShrunkOrVanishedCapacityLeavesUnhealthyDevices) {
  auto before = BuildDevices({{0, 2 * kGiB}, {1, 2 * kGiB}}, kGiB, {});
  // Node 1's tier failed; node 0 lost one unit.
  auto after = BuildDevices({{0, kGiB}}, kGiB, before);
  ASSERT_EQ(after.size(), 4u);
  EXPECT_EQ(after[0], (Device{"tokenmem-n0-0", 0, true}));
  EXPECT_EQ(after[1], (Device{"tokenmem-n0-1", 0, false}));
  EXPECT_EQ(after[2], (Device{"tokenmem-n1-0", 1, false}));
  EXPECT_EQ(after[3], (Device{"tokenmem-n1-1", 1, false}));
  // Back: healthy again, same IDs.
  auto back = BuildDevices({{0, 2 * kGiB}, {1, 2 * kGiB}}, kGiB, after);
  EXPECT_EQ(back, before);
}

TEST(DevicePluginDevicesTest, IndicesSortNumerically) {
  auto devices = BuildDevices({{0, 12 * kGiB}}, kGiB, {});
  ASSERT_EQ(devices.size(), 12u);
  EXPECT_EQ(devices[2].id, "tokenmem-n0-2");
  EXPECT_EQ(devices[11].id, "tokenmem-n0-11");
}

TEST(DevicePluginDevicesTest, AllUnhealthy) {
  auto devices = AllUnhealthy(BuildDevices({{0, 2 * kGiB}}, kGiB, {}));
  for (const auto& d : devices) EXPECT_FALSE(d.healthy) << d.id;
}

}  // namespace
}  // namespace tokenmem::device_plugin
