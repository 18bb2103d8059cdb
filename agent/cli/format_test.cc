#include "cli/format.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

namespace tokenmem::cli {
namespace {

google::protobuf::Struct ParseJson(const std::string& text) {
  google::protobuf::Struct out;
  auto status = google::protobuf::util::JsonStringToMessage(text, &out);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\n" << text;
  return out;
}

v1::PoolInfo SamplePool() {
  v1::PoolInfo p;
  p.mutable_spec()->set_name("p1");
  p.mutable_spec()->set_block_size(64 * 1024);
  p.mutable_spec()->set_eviction(v1::EVICTION_POLICY_LRU);
  auto* c = p.mutable_spec()->add_capacity();
  c->set_tier(v1::TIER_KIND_DRAM);
  c->set_bytes(8 << 20);
  auto* u = p.add_usage();
  u->set_tier(v1::TIER_KIND_DRAM);
  u->set_capacity_bytes(8 << 20);
  u->set_used_bytes(2 << 20);
  u->set_blocks(32);
  return p;
}

v1::StatsReply SampleStats() {
  v1::StatsReply r;
  v1::PoolStats* s = r.add_pools();
  s->set_pool("p1");
  s->set_puts(10);
  s->set_gets(4);
  s->set_misses(1);
  auto* dram = s->add_tiers();
  dram->set_tier(v1::TIER_KIND_DRAM);
  dram->set_hits(2);
  dram->set_demotions_out(5);
  dram->set_bytes_demoted_out(5 * 65536);
  auto* nvme = s->add_tiers();
  nvme->set_tier(v1::TIER_KIND_NVME);
  nvme->set_hits(1);
  nvme->set_promotions_in(0);
  auto* u = s->add_usage();
  u->set_tier(v1::TIER_KIND_NVME);
  u->set_capacity_bytes(1 << 30);
  u->set_blocks(5);
  return r;
}

TEST(FormatTest, SmallPieces) {
  EXPECT_EQ(FormatPercent(3, 4), "75.0%");
  EXPECT_EQ(FormatPercent(0, 0), "-");
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(65), "1m 5s");
  EXPECT_EQ(FormatDuration(7207), "2h 0m 7s");
  EXPECT_EQ(FormatDuration(86400 + 3661), "1d 1h 1m 1s");
  EXPECT_EQ(FormatTimestamp(0), "-");
  EXPECT_EQ(FormatTimestamp(86400), "1970-01-02 00:00:00Z");
}

TEST(FormatTest, StatsViewSumsHitsAndOrdersTiers) {
  PoolStatsView view = MakeStatsView(SampleStats().pools(0));
  EXPECT_EQ(view.hits, 3u);
  EXPECT_EQ(view.lookups, 4u);
  ASSERT_EQ(view.tiers.size(), 2u);
  EXPECT_EQ(view.tiers[0].tier, v1::TIER_KIND_DRAM);
  EXPECT_EQ(view.tiers[1].tier, v1::TIER_KIND_NVME);
  EXPECT_EQ(view.tiers[1].usage.blocks(), 5u);
}

TEST(FormatTest, PoolsAsTablesAndJson) {
  v1::ListPoolsReply list;
  *list.add_pools() = SamplePool();
  std::string text = PoolsText(list);
  EXPECT_NE(text.find("NAME"), std::string::npos);
  EXPECT_NE(text.find("p1"), std::string::npos);
  EXPECT_NE(text.find("64.0 KiB"), std::string::npos);
  EXPECT_NE(text.find("2.0 MiB / 8.0 MiB"), std::string::npos);
  EXPECT_EQ(PoolsText(v1::ListPoolsReply()), "no pools\n");

  auto json = ParseJson(PoolsJson(list));
  const auto& pool = json.fields().at("pools").list_value().values(0).struct_value();
  EXPECT_EQ(pool.fields().at("name").string_value(), "p1");
  EXPECT_EQ(pool.fields().at("block_size").number_value(), 65536);
  EXPECT_EQ(pool.fields().at("eviction").string_value(), "lru");
  EXPECT_EQ(pool.fields().at("scope").string_value(), "local");
  EXPECT_EQ(pool.fields().at("capacity").struct_value().fields().at("dram").number_value(),
            8 << 20);
  EXPECT_EQ(pool.fields().at("blocks").number_value(), 32);

  std::string detail = PoolText(SamplePool());
  EXPECT_NE(detail.find("25.0%"), std::string::npos);
  EXPECT_NE(text.find("SCOPE"), std::string::npos);
  EXPECT_NE(detail.find("local"), std::string::npos);
  v1::PoolInfo shared = SamplePool();
  shared.mutable_spec()->set_scope(v1::POOL_SCOPE_CLUSTER);
  EXPECT_NE(PoolText(shared).find("cluster"), std::string::npos);
  EXPECT_EQ(ScopeName(v1::POOL_SCOPE_UNSPECIFIED), "local");
}

TEST(FormatTest, LeaseCreatedShowsSecretAndExportLine) {
  v1::LeaseInfo lease;
  lease.set_id("L1");
  lease.set_secret("s3cr3t");
  lease.set_quota_bytes(1ull << 30);
  std::string text = LeaseCreatedText(lease);
  EXPECT_NE(text.find("s3cr3t"), std::string::npos);
  EXPECT_NE(text.find("export TOKENMEM_LEASE=L1:s3cr3t\n"), std::string::npos);
  EXPECT_NE(text.find("1.0 GiB"), std::string::npos);

  auto json = ParseJson(LeaseJson(lease));
  EXPECT_EQ(json.fields().at("credentials").string_value(), "L1:s3cr3t");

  v1::ListLeasesReply list;
  *list.add_leases() = lease;
  EXPECT_EQ(LeasesText(list).find("s3cr3t"), std::string::npos);
  EXPECT_EQ(LeasesJson(list).find("s3cr3t"), std::string::npos);
}

TEST(FormatTest, StatsShowRatiosAndMovement) {
  std::string text = StatsText(SampleStats());
  EXPECT_NE(text.find("75.0%"), std::string::npos);  // 3 hits of 4 lookups
  EXPECT_NE(text.find("50.0%"), std::string::npos);  // dram's share
  EXPECT_NE(text.find("5 (320.0 KiB)"), std::string::npos);

  auto json = ParseJson(StatsJson(SampleStats()));
  const auto& pool = json.fields().at("pools").list_value().values(0).struct_value();
  EXPECT_EQ(pool.fields().at("hits").number_value(), 3);
  EXPECT_DOUBLE_EQ(pool.fields().at("hit_ratio").number_value(), 0.75);
  const auto& tiers = pool.fields().at("tiers").list_value();
  ASSERT_EQ(tiers.values_size(), 2);
  EXPECT_EQ(tiers.values(0).struct_value().fields().at("tier").string_value(), "dram");
  EXPECT_EQ(tiers.values(0).struct_value().fields().at("demotions_out").number_value(), 5);

  v1::StatsReply empty_pool;
  empty_pool.add_pools()->set_pool("idle");
  auto idle = ParseJson(StatsJson(empty_pool));
  EXPECT_EQ(idle.fields()
                .at("pools")
                .list_value()
                .values(0)
                .struct_value()
                .fields()
                .at("hit_ratio")
                .kind_case(),
            google::protobuf::Value::kNullValue);
}

TEST(FormatTest, StatusTextAndJson) {
  v1::StatusReply s;
  s.set_version("0.1.0");
  s.set_uptime_seconds(61);
  s.set_pools(2);
  auto* t = s.add_tiers();
  t->set_kind(v1::TIER_KIND_NVME);
  t->set_capacity_bytes(256 << 20);
  t->set_reserved_bytes(64 << 20);
  t->set_path("/var/nvme");
  std::string text = StatusText(s);
  EXPECT_NE(text.find("1m 1s"), std::string::npos);
  EXPECT_NE(text.find("/var/nvme"), std::string::npos);
  EXPECT_NE(text.find("25.0%"), std::string::npos);
  auto json = ParseJson(StatusJson(s));
  EXPECT_EQ(json.fields().at("version").string_value(), "0.1.0");
  EXPECT_EQ(json.fields()
                .at("tiers")
                .list_value()
                .values(0)
                .struct_value()
                .fields()
                .at("kind")
                .string_value(),
            "nvme");
}

}  // namespace
}  // namespace tokenmem::cli
