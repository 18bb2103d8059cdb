#include "cli/format.h"
#include "wire/codes.h"
#include "wire/json_writer.h"
#include "wire/lease.h"

namespace tokenmem::cli {

namespace {

using wire::JsonWriter;

void WriteTierUsage(JsonWriter& w, const v1::TierUsage& u) {
  w.BeginObject()
      .StringField("tier", wire::TierName(u.tier()))
      .UintField("capacity_bytes", u.capacity_bytes())
      .UintField("used_bytes", u.used_bytes())
      .UintField("blocks", u.blocks())
      .UintField("pinned_blocks", u.pinned_blocks())
      .EndObject();
}

void WritePool(JsonWriter& w, const v1::PoolInfo& pool) {
  const v1::PoolSpec& spec = pool.spec();
  w.BeginObject()
      .StringField("name", spec.name())
      .UintField("block_size", spec.block_size())
      .StringField("eviction", wire::EvictionName(spec.eviction()))
      .UintField("ttl_seconds", spec.ttl_seconds())
      .StringField("scope", ScopeName(spec.scope()));
  w.Key("allowed_namespaces").BeginArray();
  for (const auto& ns : spec.allowed_namespaces()) w.String(ns);
  w.EndArray();
  w.Key("capacity").BeginObject();
  for (const auto& c : spec.capacity()) w.UintField(wire::TierName(c.tier()), c.bytes());
  w.EndObject();
  w.Key("usage").BeginArray();
  for (const auto& u : pool.usage()) WriteTierUsage(w, u);
  w.EndArray();
  uint64_t blocks = 0;
  for (const auto& u : pool.usage()) blocks += u.blocks();
  w.UintField("blocks", blocks);
  w.EndObject();
}

void WriteLease(JsonWriter& w, const v1::LeaseInfo& lease) {
  w.BeginObject().StringField("id", lease.id());
  if (!lease.secret().empty()) {
    w.StringField("secret", lease.secret())
        .StringField("credentials", wire::FormatLease(lease.id(), lease.secret()));
  }
  w.UintField("quota_bytes", lease.quota_bytes())
      .UintField("used_bytes", lease.used_bytes())
      .Key("pools")
      .BeginArray();
  for (const auto& p : lease.pools()) w.String(p);
  w.EndArray()
      .BoolField("read_only", lease.read_only())
      .StringField("owner", lease.owner())
      .StringField("namespace", lease.namespace_())
      .BoolField("namespace_pending", lease.namespace_pending())
      .IntField("created_unix_seconds", lease.created_unix_seconds())
      .EndObject();
}

void Ratio(JsonWriter& w, std::string_view key, uint64_t part, uint64_t whole) {
  w.Key(key);
  if (whole == 0) {
    w.Null();
  } else {
    w.Double(static_cast<double>(part) / static_cast<double>(whole));
  }
}

}  // namespace

std::string StatusJson(const v1::StatusReply& status) {
  JsonWriter w;
  w.BeginObject()
      .StringField("version", status.version())
      .StringField("node_name", status.node_name())
      .IntField("uptime_seconds", status.uptime_seconds())
      .UintField("pools", status.pools())
      .UintField("leases", status.leases())
      .UintField("recovered_blocks", status.recovered_blocks())
      .Key("tiers")
      .BeginArray();
  for (const auto& t : status.tiers()) {
    w.BeginObject().StringField("kind", wire::TierName(t.kind())).Key("numa_nodes").BeginArray();
    for (int n : t.numa_nodes()) w.Int(n);
    w.EndArray()
        .UintField("capacity_bytes", t.capacity_bytes())
        .UintField("reserved_bytes", t.reserved_bytes())
        .StringField("path", t.path())
        .EndObject();
  }
  w.EndArray().EndObject();
  return w.str();
}

std::string PoolsJson(const v1::ListPoolsReply& pools) {
  JsonWriter w;
  w.BeginObject().Key("pools").BeginArray();
  for (const auto& p : pools.pools()) WritePool(w, p);
  w.EndArray().EndObject();
  return w.str();
}

std::string PoolJson(const v1::PoolInfo& pool) {
  JsonWriter w;
  WritePool(w, pool);
  return w.str();
}

std::string LeaseJson(const v1::LeaseInfo& lease) {
  JsonWriter w;
  WriteLease(w, lease);
  return w.str();
}

std::string LeasesJson(const v1::ListLeasesReply& leases) {
  JsonWriter w;
  w.BeginObject().Key("leases").BeginArray();
  for (v1::LeaseInfo l : leases.leases()) {
    l.clear_secret();  // a listing never repeats a secret, whatever the agent sends
    WriteLease(w, l);
  }
  w.EndArray().EndObject();
  return w.str();
}

std::string StatsJson(const v1::StatsReply& stats) {
  JsonWriter w;
  w.BeginObject().Key("pools").BeginArray();
  for (const auto& p : stats.pools()) {
    PoolStatsView view = MakeStatsView(p);
    w.BeginObject()
        .StringField("pool", p.pool())
        .UintField("puts", p.puts())
        .UintField("gets", p.gets())
        .UintField("hits", view.hits)
        .UintField("misses", p.misses());
    Ratio(w, "hit_ratio", view.hits, view.lookups);
    w.UintField("prefix_lookups", p.prefix_lookups())
        .UintField("prefix_keys_matched", p.prefix_keys_matched())
        .UintField("expired", p.expired())
        .UintField("checksum_failures", p.checksum_failures())
        .UintField("quota_rejections", p.quota_rejections())
        .UintField("capacity_rejections", p.capacity_rejections())
        .Key("tiers")
        .BeginArray();
    for (const auto& t : view.tiers) {
      const auto& c = t.counters;
      w.BeginObject().StringField("tier", wire::TierName(t.tier)).UintField("hits", c.hits());
      Ratio(w, "hit_ratio", c.hits(), view.lookups);
      w.UintField("bytes_read", c.bytes_read())
          .UintField("bytes_written", c.bytes_written())
          .UintField("demotions_out", c.demotions_out())
          .UintField("promotions_in", c.promotions_in())
          .UintField("bytes_demoted_out", c.bytes_demoted_out())
          .UintField("bytes_promoted_in", c.bytes_promoted_in())
          .UintField("evictions", c.evictions())
          .UintField("capacity_bytes", t.usage.capacity_bytes())
          .UintField("used_bytes", t.usage.used_bytes())
          .UintField("blocks", t.usage.blocks())
          .UintField("pinned_blocks", t.usage.pinned_blocks())
          .EndObject();
    }
    w.EndArray().EndObject();
  }
  w.EndArray().EndObject();
  return w.str();
}

}  // namespace tokenmem::cli
