#include "cli/format.h"
#include "tokenmem/common/units.h"
#include "wire/codes.h"
#include "wire/lease.h"
#include "wire/table.h"

namespace tokenmem::cli {

namespace {

using wire::KeyValueLines;
using wire::Table;
using Align = Table::Align;

std::string Bytes(uint64_t n) { return HumanBytes(static_cast<double>(n)); }

uint64_t CapacityOf(const v1::PoolSpec& spec, v1::TierKind tier) {
  uint64_t total = 0;
  for (const auto& c : spec.capacity()) {
    if (c.tier() == tier) total += c.bytes();
  }
  return total;
}

const v1::TierUsage* UsageOf(const v1::PoolInfo& pool, v1::TierKind tier) {
  for (const auto& u : pool.usage()) {
    if (u.tier() == tier) return &u;
  }
  return nullptr;
}

// "used / capacity" for a pool's tier, "-" when the pool has no room there.
std::string TierCell(const v1::PoolInfo& pool, v1::TierKind tier) {
  uint64_t capacity = CapacityOf(pool.spec(), tier);
  const v1::TierUsage* usage = UsageOf(pool, tier);
  if (usage != nullptr && usage->capacity_bytes() != 0) capacity = usage->capacity_bytes();
  if (capacity == 0) return "-";
  return Bytes(usage ? usage->used_bytes() : 0) + " / " + Bytes(capacity);
}

uint64_t BlocksOf(const v1::PoolInfo& pool) {
  uint64_t blocks = 0;
  for (const auto& u : pool.usage()) blocks += u.blocks();
  return blocks;
}

std::string Ttl(uint64_t seconds) {
  return seconds == 0 ? "never" : FormatDuration(static_cast<int64_t>(seconds));
}

std::string PoolList(const google::protobuf::RepeatedPtrField<std::string>& pools) {
  if (pools.empty()) return "all";
  std::string out;
  for (const auto& p : pools) {
    if (!out.empty()) out += ",";
    out += p;
  }
  return out;
}

std::string OrDash(const std::string& s) { return s.empty() ? "-" : s; }

constexpr v1::TierKind kTiers[] = {v1::TIER_KIND_DRAM, v1::TIER_KIND_CXL, v1::TIER_KIND_NVME};

}  // namespace

std::string StatusText(const v1::StatusReply& status) {
  std::string out = KeyValueLines({
      {"version", OrDash(status.version())},
      {"node", OrDash(status.node_name())},
      {"uptime", FormatDuration(status.uptime_seconds())},
      {"pools", std::to_string(status.pools())},
      {"leases", std::to_string(status.leases())},
      {"recovered", std::to_string(status.recovered_blocks()) + " blocks"},
  });
  Table tiers({{"TIER"},
               {"CAPACITY", Align::kRight},
               {"RESERVED", Align::kRight},
               {"RESERVED %", Align::kRight},
               {"NUMA NODES"},
               {"PATH"}});
  for (const auto& t : status.tiers()) {
    std::string nodes;
    for (int n : t.numa_nodes()) nodes += (nodes.empty() ? "" : ",") + std::to_string(n);
    tiers.AddRow({std::string(wire::TierName(t.kind())), Bytes(t.capacity_bytes()),
                  Bytes(t.reserved_bytes()), FormatPercent(t.reserved_bytes(), t.capacity_bytes()),
                  OrDash(nodes), OrDash(t.path())});
  }
  if (tiers.rows() > 0) out += "\n" + tiers.Render();
  return out;
}

std::string PoolsText(const v1::ListPoolsReply& pools) {
  if (pools.pools().empty()) return "no pools\n";
  Table t({{"NAME"},
           {"BLOCK SIZE", Align::kRight},
           {"EVICTION"},
           {"TTL"},
           {"SCOPE"},
           {"DRAM USED", Align::kRight},
           {"CXL USED", Align::kRight},
           {"NVME USED", Align::kRight},
           {"BLOCKS", Align::kRight}});
  for (const auto& p : pools.pools()) {
    t.AddRow({p.spec().name(), Bytes(p.spec().block_size()),
              std::string(wire::EvictionName(p.spec().eviction())), Ttl(p.spec().ttl_seconds()),
              std::string(ScopeName(p.spec().scope())), TierCell(p, v1::TIER_KIND_DRAM),
              TierCell(p, v1::TIER_KIND_CXL), TierCell(p, v1::TIER_KIND_NVME),
              std::to_string(BlocksOf(p))});
  }
  return t.Render();
}

std::string PoolText(const v1::PoolInfo& pool) {
  std::string out = KeyValueLines({
      {"name", pool.spec().name()},
      {"block size", Bytes(pool.spec().block_size())},
      {"eviction", std::string(wire::EvictionName(pool.spec().eviction()))},
      {"ttl", Ttl(pool.spec().ttl_seconds())},
      {"scope", std::string(ScopeName(pool.spec().scope()))},
      {"namespaces", pool.spec().allowed_namespaces().empty()
                         ? std::string("all")
                         : PoolList(pool.spec().allowed_namespaces())},
      {"blocks", std::to_string(BlocksOf(pool))},
  });
  Table t({{"TIER"},
           {"CAPACITY", Align::kRight},
           {"USED", Align::kRight},
           {"USED %", Align::kRight},
           {"BLOCKS", Align::kRight},
           {"PINNED", Align::kRight}});
  for (v1::TierKind tier : kTiers) {
    const v1::TierUsage* u = UsageOf(pool, tier);
    uint64_t capacity =
        u && u->capacity_bytes() ? u->capacity_bytes() : CapacityOf(pool.spec(), tier);
    if (capacity == 0 && u == nullptr) continue;
    uint64_t used = u ? u->used_bytes() : 0;
    t.AddRow({std::string(wire::TierName(tier)), Bytes(capacity), Bytes(used),
              FormatPercent(used, capacity), std::to_string(u ? u->blocks() : 0),
              std::to_string(u ? u->pinned_blocks() : 0)});
  }
  if (t.rows() > 0) out += "\n" + t.Render();
  return out;
}

namespace {
std::string LeaseNamespace(const v1::LeaseInfo& lease) {
  if (!lease.namespace_().empty()) return lease.namespace_();
  return lease.namespace_pending() ? "(pending)" : "-";
}
}  // namespace

std::string LeaseCreatedText(const v1::LeaseInfo& lease) {
  std::string out = KeyValueLines({
      {"lease", lease.id()},
      {"secret", lease.secret() + "  (shown only now: keep it)"},
      {"quota", Bytes(lease.quota_bytes())},
      {"pools", PoolList(lease.pools())},
      {"access", lease.read_only() ? "read-only" : "read-write"},
      {"owner", OrDash(lease.owner())},
      {"namespace", LeaseNamespace(lease)},
  });
  out += "\nexport " + std::string(wire::kLeaseEnvVar) + "=" +
         wire::FormatLease(lease.id(), lease.secret()) + "\n";
  return out;
}

std::string LeasesText(const v1::ListLeasesReply& leases) {
  if (leases.leases().empty()) return "no leases\n";
  Table t({{"ID"},
           {"OWNER"},
           {"QUOTA", Align::kRight},
           {"USED", Align::kRight},
           {"USED %", Align::kRight},
           {"POOLS"},
           {"ACCESS"},
           {"NAMESPACE"},
           {"CREATED"}});
  for (const auto& l : leases.leases()) {
    t.AddRow({l.id(), OrDash(l.owner()), Bytes(l.quota_bytes()), Bytes(l.used_bytes()),
              FormatPercent(l.used_bytes(), l.quota_bytes()), PoolList(l.pools()),
              l.read_only() ? "read-only" : "read-write", LeaseNamespace(l),
              FormatTimestamp(l.created_unix_seconds())});
  }
  return t.Render();
}

std::string StatsText(const v1::StatsReply& stats) {
  if (stats.pools().empty()) return "no pools\n";
  Table pools({{"POOL"},
               {"PUTS", Align::kRight},
               {"GETS", Align::kRight},
               {"HITS", Align::kRight},
               {"MISSES", Align::kRight},
               {"HIT RATIO", Align::kRight},
               {"PREFIX LOOKUPS", Align::kRight},
               {"PREFIX KEYS", Align::kRight},
               {"EXPIRED", Align::kRight},
               {"CHECKSUM FAIL", Align::kRight},
               {"QUOTA REJ", Align::kRight},
               {"CAPACITY REJ", Align::kRight}});
  Table tiers({{"POOL"},
               {"TIER"},
               {"HITS", Align::kRight},
               {"HIT RATIO", Align::kRight},
               {"READ", Align::kRight},
               {"WRITTEN", Align::kRight},
               {"DEMOTED OUT", Align::kRight},
               {"PROMOTED IN", Align::kRight},
               {"EVICTIONS", Align::kRight},
               {"USED", Align::kRight},
               {"BLOCKS", Align::kRight}});
  for (const auto& p : stats.pools()) {
    PoolStatsView view = MakeStatsView(p);
    pools.AddRow({p.pool(), std::to_string(p.puts()), std::to_string(p.gets()),
                  std::to_string(view.hits), std::to_string(p.misses()),
                  FormatPercent(view.hits, view.lookups), std::to_string(p.prefix_lookups()),
                  std::to_string(p.prefix_keys_matched()), std::to_string(p.expired()),
                  std::to_string(p.checksum_failures()), std::to_string(p.quota_rejections()),
                  std::to_string(p.capacity_rejections())});
    for (const auto& t : view.tiers) {
      const auto& c = t.counters;
      std::string used = t.usage.capacity_bytes() == 0 ? Bytes(t.usage.used_bytes())
                                                       : Bytes(t.usage.used_bytes()) + " / " +
                                                             Bytes(t.usage.capacity_bytes());
      tiers.AddRow({p.pool(), std::string(wire::TierName(t.tier)), std::to_string(c.hits()),
                    FormatPercent(c.hits(), view.lookups), Bytes(c.bytes_read()),
                    Bytes(c.bytes_written()),
                    std::to_string(c.demotions_out()) + " (" + Bytes(c.bytes_demoted_out()) + ")",
                    std::to_string(c.promotions_in()) + " (" + Bytes(c.bytes_promoted_in()) + ")",
                    std::to_string(c.evictions()), used, std::to_string(t.usage.blocks())});
    }
  }
  std::string out = pools.Render();
  if (tiers.rows() > 0) out += "\n" + tiers.Render();
  return out;
}

}  // namespace tokenmem::cli
