#include "preferred.h"

#include <gtest/gtest.h>

#include <algorithm>

#include "devices.h"

namespace tokenmem::device_plugin {
namespace {

std::vector<std::string> Ids(int node, int first, int count) {
  std::vector<std::string> out;
  for (int i = first; i < first + count; ++i) out.push_back(DeviceId(node, i));
  return out;
}

std::vector<std::string> Concat(std::vector<std::vector<std::string>> parts) {
  std::vector<std::string> out;
  for (auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

int NodesSpanned(const std::vector<std::string>& ids) {
  std::vector<int> nodes;
  for (const auto& id : ids) {
    int n = ParseDeviceId(id)->numa_node;
    if (std::find(nodes.begin(), nodes.end(), n) == nodes.end()) nodes.push_back(n);
  }
  return static_cast<int>(nodes.size());
}

TEST(DevicePluginPreferredTest, PacksOntoTheTightestNodeThatFits) {
  // Node 0 has 8 free, node 1 has 3 free: 3 fit on node 1, which keeps node 0 whole.
  auto available = Concat({Ids(0, 0, 8), Ids(1, 5, 3)});
  auto chosen = PreferredAllocation(available, {}, 3);
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  EXPECT_EQ(*chosen, Ids(1, 5, 3));
  // 5 fit only on node 0; lowest indices first.
  chosen = PreferredAllocation(available, {}, 5);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(*chosen, Ids(0, 0, 5));
}

TEST(DevicePluginPreferredTest, KeepsToTheMustIncludeNode) {
  auto available = Concat({Ids(0, 0, 8), Ids(1, 0, 4)});
  auto chosen = PreferredAllocation(available, {DeviceId(0, 7)}, 3);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(*chosen, (std::vector<std::string>{DeviceId(0, 7), DeviceId(0, 0), DeviceId(0, 1)}));
}

TEST(DevicePluginPreferredTest, SpansAsFewNodesAsPossible) {
  auto available = Concat({Ids(0, 0, 2), Ids(1, 0, 5), Ids(2, 0, 3)});
  auto chosen = PreferredAllocation(available, {}, 7);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(chosen->size(), 7u);
  EXPECT_EQ(NodesSpanned(*chosen), 2);  // node 1 (5) + node 2 (2 of 3)
  EXPECT_EQ(std::count(chosen->begin(), chosen->end(), DeviceId(0, 0)), 0);
}

TEST(DevicePluginPreferredTest, EdgeCases) {
  auto available = Ids(0, 0, 2);
  EXPECT_EQ(PreferredAllocation(available, {}, 3).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(PreferredAllocation(available, {}, -1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(PreferredAllocation(available, {}, 0)->empty());
  // must_include listed in available too is not counted twice.
  auto chosen = PreferredAllocation(available, {DeviceId(0, 1)}, 2);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(*chosen, (std::vector<std::string>{DeviceId(0, 1), DeviceId(0, 0)}));
  // Foreign IDs only when nothing else is left.
  chosen = PreferredAllocation({"other-1", DeviceId(0, 0)}, {}, 2);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(*chosen, (std::vector<std::string>{DeviceId(0, 0), "other-1"}));
}

}  // namespace
}  // namespace tokenmem::device_plugin
