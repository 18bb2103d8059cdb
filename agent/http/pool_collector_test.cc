#include "http/pool_collector.h"

#include <gtest/gtest.h>

#include <set>

#include "http/agent_metrics.h"
#include "http/test_store.h"

namespace tokenmem::http {
namespace {

using testing::Find;
using testing::kBlock;
using testing::ParseSamples;
using testing::Sample;
using testing::TestStore;

class PoolCollectorTest : public ::testing::Test {
 protected:
  std::string Scrape() { return metrics_.Serialize({&collector_}); }
  std::vector<Sample> Samples() { return ParseSamples(Scrape()); }

  TestStore store_;
  AgentMetrics metrics_;
  PoolCollector collector_{store_.pools.get(), &store_.leases,
                           CollectorOptions{"9.9.9", "node-7", {}}};
};

TEST_F(PoolCollectorTest, ExportsTierPoolAndLeaseState) {
  auto a = store_.CreatePool("a", 4, 32);
  ASSERT_TRUE(a);
  store_.Traffic(*a, 8);  // 8 blocks: 4 fit in DRAM, the rest are demoted to NVMe
  auto s = Samples();

  EXPECT_EQ(Find(s, "tokenmem_agent_info", {{"version", "9.9.9"}, {"node_name", "node-7"}}), 1);
  EXPECT_EQ(Find(s, "tokenmem_tier_capacity_bytes", {{"tier", "dram"}}), 64 * kBlock);
  EXPECT_EQ(Find(s, "tokenmem_tier_capacity_bytes", {{"tier", "nvme"}}), 256 * kBlock);
  EXPECT_FALSE(Find(s, "tokenmem_tier_capacity_bytes", {{"tier", "cxl"}}));  // no CXL tier
  EXPECT_EQ(Find(s, "tokenmem_tier_reserved_bytes", {{"tier", "dram"}}), 4 * kBlock);
  EXPECT_EQ(Find(s, "tokenmem_pools"), 1);
  EXPECT_EQ(Find(s, "tokenmem_leases"), 1);
  EXPECT_EQ(Find(s, "tokenmem_leases_quota_bytes"), 1 << 30);
  EXPECT_EQ(Find(s, "tokenmem_leases_used_bytes"), 8 * kBlock);

  const std::map<std::string, std::string> dram = {{"pool", "a"}, {"tier", "dram"}};
  const std::map<std::string, std::string> nvme = {{"pool", "a"}, {"tier", "nvme"}};
  EXPECT_EQ(Find(s, "tokenmem_pool_info", {{"pool", "a"}, {"eviction", "lru"}}), 1);
  EXPECT_EQ(Find(s, "tokenmem_pool_block_size_bytes", {{"pool", "a"}}), kBlock);
  EXPECT_EQ(Find(s, "tokenmem_pool_capacity_bytes", dram), 4 * kBlock);
  EXPECT_EQ(Find(s, "tokenmem_pool_capacity_bytes", nvme), 32 * kBlock);
  EXPECT_FALSE(Find(s, "tokenmem_pool_capacity_bytes", {{"pool", "a"}, {"tier", "cxl"}}));
  const double blocks =
      *Find(s, "tokenmem_pool_blocks", dram) + *Find(s, "tokenmem_pool_blocks", nvme);
  EXPECT_EQ(blocks, 8);
  EXPECT_EQ(*Find(s, "tokenmem_pool_used_bytes", dram) + *Find(s, "tokenmem_pool_used_bytes", nvme),
            8 * kBlock);
  EXPECT_EQ(Find(s, "tokenmem_pool_pinned_blocks", dram), 0);
  EXPECT_EQ(*Find(s, "tokenmem_tier_used_bytes", {{"tier", "dram"}}) +
                *Find(s, "tokenmem_tier_used_bytes", {{"tier", "nvme"}}),
            8 * kBlock);

  EXPECT_EQ(Find(s, "tokenmem_puts_total", {{"pool", "a"}}), 8);
  EXPECT_EQ(Find(s, "tokenmem_gets_total", {{"pool", "a"}}), 9);
  EXPECT_EQ(Find(s, "tokenmem_misses_total", {{"pool", "a"}}), 1);
  const double hits = *Find(s, "tokenmem_hits_total", dram) + *Find(s, "tokenmem_hits_total", nvme);
  EXPECT_EQ(hits, 8);  // hits + misses == gets: the hit ratio can be computed
  EXPECT_GT(*Find(s, "tokenmem_hits_total", nvme), 0);
  EXPECT_EQ(
      *Find(s, "tokenmem_read_bytes_total", dram) + *Find(s, "tokenmem_read_bytes_total", nvme),
      8 * kBlock);
  // Written = put + moved in (a demotion writes into the next tier down).
  EXPECT_EQ(*Find(s, "tokenmem_written_bytes_total", dram) +
                *Find(s, "tokenmem_written_bytes_total", nvme),
            8 * kBlock + *Find(s, "tokenmem_demoted_bytes_total", dram) +
                *Find(s, "tokenmem_promoted_bytes_total", dram));
  EXPECT_GT(*Find(s, "tokenmem_demotions_total", dram), 0);
  EXPECT_GT(*Find(s, "tokenmem_demoted_bytes_total", dram), 0);
  EXPECT_TRUE(Find(s, "tokenmem_promotions_total", dram));
  EXPECT_TRUE(Find(s, "tokenmem_promoted_bytes_total", dram));
  EXPECT_TRUE(Find(s, "tokenmem_evictions_total", nvme));
  EXPECT_EQ(Find(s, "tokenmem_prefix_lookups_total", {{"pool", "a"}}), 1);
  EXPECT_EQ(Find(s, "tokenmem_prefix_keys_matched_total", {{"pool", "a"}}), 8);
  EXPECT_EQ(Find(s, "tokenmem_expired_blocks_total", {{"pool", "a"}}), 0);
  EXPECT_EQ(Find(s, "tokenmem_checksum_failures_total", {{"pool", "a"}}), 0);
  EXPECT_EQ(Find(s, "tokenmem_rejected_puts_total", {{"pool", "a"}, {"reason", "quota"}}), 0);
  EXPECT_EQ(Find(s, "tokenmem_rejected_puts_total", {{"pool", "a"}, {"reason", "capacity"}}), 0);
  EXPECT_EQ(Find(s, "tokenmem_io_errors_total", {{"pool", "a"}}), 0);
}

TEST_F(PoolCollectorTest, FollowsPrometheusConventions) {
  auto a = store_.CreatePool("a");
  ASSERT_TRUE(a);
  store_.Traffic(*a, 2);
  const std::string text = Scrape();
  std::map<std::string, std::string> types;  // family -> type
  size_t pos = 0;
  while ((pos = text.find("# TYPE ", pos)) != std::string::npos) {
    size_t end = text.find('\n', pos);
    std::string line = text.substr(pos + 7, end - pos - 7);
    types[line.substr(0, line.find(' '))] = line.substr(line.find(' ') + 1);
    pos = end;
  }
  ASSERT_GT(types.size(), 30u);
  for (const auto& [name, type] : types) {
    EXPECT_EQ(name.rfind("tokenmem_", 0), 0u) << name;
    EXPECT_EQ(text.find("# HELP " + name + " ") != std::string::npos, true) << name;
    const bool total = name.ends_with("_total");
    EXPECT_EQ(total, type == "counter") << name << " is a " << type;
    if (type == "histogram") {
      EXPECT_TRUE(name.ends_with("_seconds")) << name;
    }
    EXPECT_EQ(name.find("millis"), std::string::npos) << name;
  }
  // Bounded labels only.
  const std::set<std::string> allowed = {"pool",      "tier",  "reason",   "eviction",
                                         "operation", "path",  "le",       "version",
                                         "node_name", "limit", "transport"};
  for (const auto& s : ParseSamples(text)) {
    for (const auto& [label, value] : s.labels) {
      EXPECT_TRUE(allowed.count(label)) << s.name << " has label " << label;
    }
  }
}

TEST_F(PoolCollectorTest, NeverShowsKeysLeaseIdsOrSecrets) {
  auto a = store_.CreatePool("a");
  ASSERT_TRUE(a);
  store_.Traffic(*a, 3);
  const std::string text = Scrape();
  EXPECT_EQ(text.find(store_.secret), std::string::npos);
  EXPECT_EQ(text.find(store_.lease->id()), std::string::npos);
  EXPECT_EQ(text.find("test-owner"), std::string::npos);
  EXPECT_EQ(text.find(TestStore::Key(0).ToHex()), std::string::npos);
}

TEST_F(PoolCollectorTest, CountersStayMonotonicWhenAPoolIsDeletedAndCreatedAgain) {
  auto a = store_.CreatePool("a");
  ASSERT_TRUE(a);
  store_.Traffic(*a, 3);
  auto before = Samples();
  EXPECT_EQ(Find(before, "tokenmem_puts_total", {{"pool", "a"}}), 3);

  // Deleted: the series go away (no stale gauges)...
  a.reset();
  ASSERT_TRUE(store_.pools->Delete("a").ok());
  auto gone = Samples();
  EXPECT_FALSE(Find(gone, "tokenmem_puts_total", {{"pool", "a"}}));
  EXPECT_FALSE(Find(gone, "tokenmem_pool_blocks", {{"pool", "a"}, {"tier", "dram"}}));
  EXPECT_EQ(Find(gone, "tokenmem_pools"), 0);

  // ...and come back where they were when the name is used again.
  a = store_.CreatePool("a");
  ASSERT_TRUE(a);
  store_.Traffic(*a, 2);
  auto after = Samples();
  EXPECT_EQ(Find(after, "tokenmem_puts_total", {{"pool", "a"}}), 5);
  EXPECT_EQ(Find(after, "tokenmem_misses_total", {{"pool", "a"}}), 2);
  EXPECT_EQ(Find(after, "tokenmem_prefix_lookups_total", {{"pool", "a"}}), 2);
  EXPECT_EQ(Find(after, "tokenmem_pool_blocks", {{"pool", "a"}, {"tier", "dram"}}), 2);  // gauge
  for (const auto& s : before) {
    if (!s.name.ends_with("_total")) continue;
    auto now = Find(after, s.name, s.labels);
    ASSERT_TRUE(now) << s.name;
    EXPECT_GE(*now, s.value) << s.name;
  }

  // Deleted and recreated between two scrapes: still no step back.
  a.reset();
  ASSERT_TRUE(store_.pools->Delete("a").ok());
  a = store_.CreatePool("a");
  ASSERT_TRUE(a);
  auto again = Samples();
  EXPECT_EQ(Find(again, "tokenmem_puts_total", {{"pool", "a"}}), 5);
}

TEST_F(PoolCollectorTest, PoolsAreLabelledSeparately) {
  auto a = store_.CreatePool("a");
  auto b = store_.CreatePool("b.2", 2, 0);
  ASSERT_TRUE(a && b);
  store_.Traffic(*a, 1);
  store_.Traffic(*b, 2);
  auto s = Samples();
  EXPECT_EQ(Find(s, "tokenmem_puts_total", {{"pool", "a"}}), 1);
  EXPECT_EQ(Find(s, "tokenmem_puts_total", {{"pool", "b.2"}}), 2);
  EXPECT_FALSE(Find(s, "tokenmem_pool_capacity_bytes", {{"pool", "b.2"}, {"tier", "nvme"}}));
  EXPECT_EQ(Find(s, "tokenmem_pools"), 2);
}

}  // namespace
}  // namespace tokenmem::http
