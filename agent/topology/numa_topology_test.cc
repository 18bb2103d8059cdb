#include "topology/numa_topology.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

namespace tokenmem::topology {
namespace {

namespace fs = std::filesystem;

const fs::path kFixture = fs::path(TOKENMEM_SOURCE_DIR) / "tests/fixtures/sysfs/two_dram_one_cxl";
constexpr uint64_t kKiB = 1024;

// A private copy of the fixture that a test may break; removed afterwards.
class FixtureCopy {
 public:
  FixtureCopy() {
    std::string tmpl = (fs::temp_directory_path() / "tokenmem-topology-XXXXXX").string();
    const char* dir = ::mkdtemp(tmpl.data());
    EXPECT_NE(dir, nullptr);
    dir_ = tmpl;
    fs::copy(kFixture, root(), fs::copy_options::recursive);
  }
  ~FixtureCopy() {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  fs::path root() const { return dir_ / "sysfs"; }
  fs::path node_dir() const { return root() / "devices/system/node"; }
  void Write(const fs::path& rel, const std::string& text) const {
    std::ofstream(root() / rel, std::ios::trunc) << text;
  }

 private:
  fs::path dir_;
};

TEST(DiscoverTopologyTest, FixtureHasTwoDramNodesAndOneCxlNode) {
  Result<Topology> topo = DiscoverTopology(kFixture);
  ASSERT_TRUE(topo.ok()) << topo.status().ToString();
  ASSERT_EQ(topo->nodes.size(), 3u);
  EXPECT_EQ(topo->NodesOfKind(MemoryKind::kDram), (std::vector<int>{0, 1}));
  EXPECT_EQ(topo->NodesOfKind(MemoryKind::kCxl), (std::vector<int>{2}));

  const NumaNode& n0 = topo->nodes[0];
  EXPECT_EQ(n0.id, 0);
  EXPECT_EQ(n0.kind, MemoryKind::kDram);
  EXPECT_EQ(n0.cpus, (std::vector<int>{0, 1, 2, 3, 8, 9, 10, 11}));
  EXPECT_EQ(n0.total_bytes, 16777216 * kKiB);
  EXPECT_EQ(n0.free_bytes, 12582912 * kKiB);
  EXPECT_EQ(n0.memory_tier, 4);

  const NumaNode& n1 = topo->nodes[1];
  EXPECT_EQ(n1.id, 1);
  EXPECT_EQ(n1.cpus, (std::vector<int>{4, 5, 6, 7, 12, 13, 14, 15}));
  EXPECT_EQ(n1.free_bytes, 16000000 * kKiB);
  EXPECT_EQ(n1.memory_tier, 4);

  const NumaNode& n2 = topo->nodes[2];
  EXPECT_EQ(n2.id, 2);
  EXPECT_EQ(n2.kind, MemoryKind::kCxl);
  EXPECT_TRUE(n2.cpus.empty());
  EXPECT_EQ(n2.total_bytes, 67108864 * kKiB);
  EXPECT_EQ(n2.memory_tier, 22);

  EXPECT_EQ(topo->TotalBytes(MemoryKind::kDram), 2 * 16777216 * kKiB);
  EXPECT_EQ(topo->TotalBytes(MemoryKind::kCxl), 67108864 * kKiB);
  EXPECT_EQ(topo->Find(2), &topo->nodes[2]);
  EXPECT_EQ(topo->Find(3), nullptr);
  EXPECT_EQ(MemoryKindName(MemoryKind::kDram), "dram");
  EXPECT_EQ(MemoryKindName(MemoryKind::kCxl), "cxl");
}

TEST(DiscoverTopologyTest, MissingRootIsNotFound) {
  const fs::path root = "/nonexistent/tokenmem-sysfs";
  Result<Topology> topo = DiscoverTopology(root);
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kNotFound);
  EXPECT_NE(topo.status().message().find(root.string()), std::string::npos);
}

TEST(DiscoverTopologyTest, RootWithoutNodeDirectoryIsNotFound) {
  FixtureCopy copy;
  fs::remove_all(copy.node_dir());
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kNotFound);
  EXPECT_NE(topo.status().message().find("devices/system/node"), std::string::npos);
}

TEST(DiscoverTopologyTest, MalformedMeminfoNamesTheFile) {
  FixtureCopy copy;
  copy.Write("devices/system/node/node1/meminfo",
             "Node 1 MemTotal:       lots kB\nNode 1 MemFree:  1 kB\n");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(topo.status().message().find("node1/meminfo"), std::string::npos)
      << topo.status().ToString();
}

TEST(DiscoverTopologyTest, MeminfoOfAnotherNodeIsMalformed) {
  FixtureCopy copy;
  copy.Write("devices/system/node/node1/meminfo",
             "Node 0 MemTotal:  1024 kB\nNode 0 MemFree:  512 kB\n");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kInvalidArgument);
}

TEST(DiscoverTopologyTest, MeminfoWithoutMemFreeIsMalformed) {
  FixtureCopy copy;
  copy.Write("devices/system/node/node0/meminfo", "Node 0 MemTotal:  1024 kB\n");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(topo.status().message().find("node0/meminfo"), std::string::npos);
}

TEST(DiscoverTopologyTest, MissingCpulistNamesTheFile) {
  FixtureCopy copy;
  fs::remove(copy.node_dir() / "node2/cpulist");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kNotFound);
  EXPECT_NE(topo.status().message().find("node2/cpulist"), std::string::npos);
}

TEST(DiscoverTopologyTest, MalformedNodeListNamesTheFile) {
  FixtureCopy copy;
  copy.Write("devices/system/node/has_memory", "0-x\n");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(topo.status().message().find("has_memory"), std::string::npos);
}

TEST(DiscoverTopologyTest, FallsBackToOnlineAndSkipsNodesWithoutMemory) {
  FixtureCopy copy;
  fs::remove(copy.node_dir() / "has_memory");
  copy.Write("devices/system/node/online", "0-3\n");
  fs::create_directory(copy.node_dir() / "node3");
  copy.Write("devices/system/node/node3/cpulist", "16-19\n");
  copy.Write("devices/system/node/node3/meminfo",
             "Node 3 MemTotal:  0 kB\nNode 3 MemFree:  0 kB\n");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_TRUE(topo.ok()) << topo.status().ToString();
  ASSERT_EQ(topo->nodes.size(), 3u);
  EXPECT_EQ(topo->Find(3), nullptr);
  EXPECT_EQ((ListMemoryNodes(copy.root()).value()), (std::vector<int>{0, 1, 2, 3}));
}

TEST(DiscoverTopologyTest, NoNodeListAtAllIsNotFound) {
  FixtureCopy copy;
  fs::remove(copy.node_dir() / "has_memory");
  fs::remove(copy.node_dir() / "online");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kNotFound);
  EXPECT_NE(topo.status().message().find("online"), std::string::npos);
}

TEST(DiscoverTopologyTest, WithoutMemoryTieringNodesHaveNoTier) {
  FixtureCopy copy;
  fs::remove_all(copy.root() / "devices/virtual");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_TRUE(topo.ok()) << topo.status().ToString();
  for (const NumaNode& n : topo->nodes) EXPECT_FALSE(n.memory_tier.has_value()) << n.id;
}

TEST(DiscoverTopologyTest, MalformedTierNodelistNamesTheFile) {
  FixtureCopy copy;
  copy.Write("devices/virtual/memory_tiering/memory_tier22/nodelist", "2-\n");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(topo.status().message().find("memory_tier22/nodelist"), std::string::npos);
}

TEST(DiscoverTopologyTest, NodeInTwoTiersIsMalformed) {
  FixtureCopy copy;
  copy.Write("devices/virtual/memory_tiering/memory_tier22/nodelist", "1-2\n");
  Result<Topology> topo = DiscoverTopology(copy.root());
  ASSERT_FALSE(topo.ok());
  EXPECT_EQ(topo.status().code(), StatusCode::kInvalidArgument);
}

TEST(ParseCpuListTest, AcceptsKernelLists) {
  EXPECT_EQ(ParseCpuList("").value(), std::vector<int>{});
  EXPECT_EQ(ParseCpuList("\n").value(), std::vector<int>{});
  EXPECT_EQ(ParseCpuList("5").value(), std::vector<int>{5});
  EXPECT_EQ(ParseCpuList("0-3,8,10-11\n").value(), (std::vector<int>{0, 1, 2, 3, 8, 10, 11}));
  EXPECT_EQ(ParseCpuList("7,2-3").value(), (std::vector<int>{2, 3, 7}));
  EXPECT_EQ(ParseCpuList("1-2,2-3").value(), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(ParseCpuList("4-4").value(), std::vector<int>{4});
}

TEST(ParseCpuListTest, RejectsMalformedLists) {
  for (const char* bad :
       {"a", "1,", ",1", "1-", "-1", "3-1", "1--2", "1 2", "0-99999999", "1.5", "1,,2", "0x1"}) {
    Result<std::vector<int>> r = ParseCpuList(bad);
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(DiscoverTopologyTest, RealSysfsHasADramNode) {
  if (!fs::exists("/sys/devices/system/node")) GTEST_SKIP() << "no NUMA sysfs on this machine";
  Result<Topology> topo = DiscoverTopology("/sys");
  ASSERT_TRUE(topo.ok()) << topo.status().ToString();
  ASSERT_FALSE(topo->NodesOfKind(MemoryKind::kDram).empty());
  for (const NumaNode& n : topo->nodes) {
    EXPECT_GT(n.total_bytes, 0u);
    EXPECT_LE(n.free_bytes, n.total_bytes);
  }
  EXPECT_EQ(LibnumaDisagreements(*topo), std::vector<std::string>{});
}

}  // namespace
}  // namespace tokenmem::topology
