#include "http/pool_collector.h"

#include <prometheus/client_metric.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include <deque>
#include <set>

namespace tokenmem::http {
namespace {

using pool::TierKind;
using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

constexpr TierKind kTiers[] = {TierKind::kDram, TierKind::kCxl, TierKind::kNvme};

using LabelList = std::vector<std::pair<std::string, std::string>>;

// Builds the scrape's families in a fixed order; empty ones are dropped.
class Families {
 public:
  MetricFamily& Gauge(std::string name, std::string help) {
    return Add(std::move(name), std::move(help), MetricType::Gauge);
  }
  MetricFamily& Counter(std::string name, std::string help) {
    return Add(std::move(name), std::move(help), MetricType::Counter);
  }

  std::vector<MetricFamily> Take() {
    std::vector<MetricFamily> out;
    for (auto& f : families_) {
      if (!f.metric.empty()) out.push_back(std::move(f));
    }
    return out;
  }

 private:
  MetricFamily& Add(std::string name, std::string help, MetricType type) {
    families_.push_back({std::move(name), std::move(help), type, {}});
    return families_.back();
  }
  std::deque<MetricFamily> families_;  // stable references while adding
};

void Sample(MetricFamily& family, const LabelList& labels, double value) {
  ClientMetric m;
  for (const auto& [name, v] : labels) m.label.push_back({name, v});
  if (family.type == MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  family.metric.push_back(std::move(m));
}

double D(uint64_t v) { return static_cast<double>(v); }

std::string Tier(TierKind t) { return std::string(pool::TierName(t)); }

// The tiers a pool has series for: those it reserves capacity in.
std::vector<TierKind> TiersOf(const pool::PoolSnapshot& s) {
  std::vector<TierKind> out;
  for (TierKind t : kTiers) {
    if (s.spec.capacity.of(t) != 0 || s.usage[static_cast<int>(t)].capacity_bytes != 0) {
      out.push_back(t);
    }
  }
  return out;
}

}  // namespace

PoolCollector::PoolCollector(const pool::PoolManager* pools, const pool::LeaseTable* leases,
                             CollectorOptions options)
    : pools_(pools), leases_(leases), options_(std::move(options)) {}

std::vector<MetricFamily> PoolCollector::Collect() const {
  Families f;
  // Agent.
  auto& info =
      f.Gauge("tokenmem_agent_info", "Always 1; the agent's version and node name as labels.");
  auto& start_time = f.Gauge("tokenmem_agent_start_time_seconds",
                             "When the agent started, in seconds since the Unix epoch.");
  auto& tier_capacity = f.Gauge("tokenmem_tier_capacity_bytes",
                                "Bytes the agent has in each tier for pools to reserve.");
  auto& tier_reserved =
      f.Gauge("tokenmem_tier_reserved_bytes", "Bytes of each tier reserved by pools.");
  auto& tier_used =
      f.Gauge("tokenmem_tier_used_bytes", "Bytes of each tier holding blocks, all pools together.");
  auto& pool_count = f.Gauge("tokenmem_pools", "Pools the agent holds.");
  auto& recovered =
      f.Gauge("tokenmem_recovered_blocks", "Blocks found again on the NVMe tier at start.");
  auto& local_clients =
      f.Gauge("tokenmem_local_clients", "Client processes connected to the local data socket.");
  auto& lease_count = f.Gauge("tokenmem_leases", "Active leases.");
  auto& lease_quota =
      f.Gauge("tokenmem_leases_quota_bytes", "Bytes of quota granted to active leases, summed.");
  auto& lease_used = f.Gauge("tokenmem_leases_used_bytes",
                             "Bytes charged to active leases for the blocks they stored, summed.");
  // Pools: state.
  auto& pool_info =
      f.Gauge("tokenmem_pool_info", "Always 1; the pool's eviction policy as a label.");
  auto& block_size = f.Gauge("tokenmem_pool_block_size_bytes", "Largest block the pool stores.");
  auto& capacity =
      f.Gauge("tokenmem_pool_capacity_bytes", "Bytes the pool reserves in a tier (whole slots).");
  auto& used = f.Gauge("tokenmem_pool_used_bytes",
                       "Bytes of the pool's share of a tier holding blocks (whole slots).");
  auto& blocks = f.Gauge("tokenmem_pool_blocks", "Blocks the pool holds in a tier.");
  auto& pinned = f.Gauge("tokenmem_pool_pinned_blocks", "Pinned blocks the pool holds in a tier.");
  // Pools: events.
  auto& puts = f.Counter("tokenmem_puts_total", "Blocks stored.");
  auto& gets = f.Counter("tokenmem_gets_total", "Blocks asked for by get (hits plus misses).");
  auto& hits = f.Counter("tokenmem_hits_total", "Gets answered with the block, by serving tier.");
  auto& misses = f.Counter("tokenmem_misses_total",
                           "Gets that found no block (absent, expired or failed its checksum).");
  auto& lookups = f.Counter("tokenmem_prefix_lookups_total", "Prefix lookups (one per chain).");
  auto& matched = f.Counter("tokenmem_prefix_keys_matched_total",
                            "Leading keys (blocks) that prefix lookups found; times the tokens "
                            "per block, the prompt tokens whose KV is reusable.");
  auto& read_bytes =
      f.Counter("tokenmem_read_bytes_total", "Block bytes returned by gets, by serving tier.");
  auto& written_bytes = f.Counter(
      "tokenmem_written_bytes_total",
      "Block bytes written into a tier: by puts, and by blocks demoted or promoted into it.");
  auto& demotions = f.Counter("tokenmem_demotions_total",
                              "Blocks moved out of a tier to the next slower one (tier: from).");
  auto& demoted_bytes =
      f.Counter("tokenmem_demoted_bytes_total", "Block bytes demoted out of a tier (tier: from).");
  auto& promotions = f.Counter("tokenmem_promotions_total",
                               "Blocks moved into a tier from a slower one (tier: to).");
  auto& promoted_bytes =
      f.Counter("tokenmem_promoted_bytes_total", "Block bytes promoted into a tier (tier: to).");
  auto& evictions =
      f.Counter("tokenmem_evictions_total", "Blocks dropped from a tier to make room.");
  auto& expired = f.Counter("tokenmem_expired_blocks_total", "Blocks dropped by their TTL.");
  auto& checksum = f.Counter("tokenmem_checksum_failures_total",
                             "NVMe blocks whose checksum failed on read (dropped, never served).");
  auto& rejected =
      f.Counter("tokenmem_rejected_puts_total",
                "Puts refused, by reason: quota (the lease's) or capacity (the pool's).");
  auto& io_errors = f.Counter("tokenmem_io_errors_total", "NVMe I/O errors the pool met.");

  Sample(info, {{"version", options_.version}, {"node_name", options_.node_name}}, 1);
  Sample(start_time, {},
         std::chrono::duration<double>(options_.started.time_since_epoch()).count());

  const auto pools = pools_->List();
  const pool::TierCapacities& have = pools_->Capacity();
  const pool::TierCapacities reserved = pools_->Reserved();
  pool::TierCapacities in_use;

  std::lock_guard lock(mu_);
  std::set<std::string> present;
  for (const auto& p : pools) {
    const pool::PoolSnapshot s = p->Snapshot();
    const std::string& name = s.spec.name;
    present.insert(name);
    auto seen = seen_.find(name);
    const bool same =
        seen != seen_.end() && !seen->second.owner_before(p) && !p.owner_before(seen->second);
    seen_[name] = p;
    const pool::PoolCounters c = carry_.Update(name, same, s.counters);

    const LabelList by_pool = {{"pool", name}};
    Sample(pool_info,
           {{"pool", name}, {"eviction", std::string(pool::EvictionPolicyName(s.spec.eviction))}},
           1);
    Sample(block_size, by_pool, D(s.spec.block_size));
    Sample(puts, by_pool, D(c.puts));
    Sample(gets, by_pool, D(c.gets));
    Sample(misses, by_pool, D(c.misses));
    Sample(lookups, by_pool, D(c.prefix_lookups));
    Sample(matched, by_pool, D(c.prefix_keys_matched));
    Sample(expired, by_pool, D(c.expired));
    Sample(checksum, by_pool, D(c.checksum_failures));
    Sample(rejected, {{"pool", name}, {"reason", "quota"}}, D(c.quota_rejections));
    Sample(rejected, {{"pool", name}, {"reason", "capacity"}}, D(c.capacity_rejections));
    Sample(io_errors, by_pool, D(c.io_errors));
    for (TierKind t : TiersOf(s)) {
      const int i = static_cast<int>(t);
      const LabelList labels = {{"pool", name}, {"tier", Tier(t)}};
      const pool::TierUsage& u = s.usage[i];
      const pool::TierCounters& tc = c.tiers[i];
      in_use.of(t) += u.used_bytes;
      Sample(capacity, labels, D(u.capacity_bytes));
      Sample(used, labels, D(u.used_bytes));
      Sample(blocks, labels, D(u.blocks));
      Sample(pinned, labels, D(u.pinned_blocks));
      Sample(hits, labels, D(tc.hits));
      Sample(read_bytes, labels, D(tc.bytes_read));
      Sample(written_bytes, labels, D(tc.bytes_written));
      Sample(demotions, labels, D(tc.demotions_out));
      Sample(demoted_bytes, labels, D(tc.bytes_demoted_out));
      Sample(promotions, labels, D(tc.promotions_in));
      Sample(promoted_bytes, labels, D(tc.bytes_promoted_in));
      Sample(evictions, labels, D(tc.evictions));
    }
  }
  for (auto it = seen_.begin(); it != seen_.end();) {
    if (present.count(it->first)) {
      ++it;
    } else {
      carry_.Absent(it->first);
      it = seen_.erase(it);
    }
  }

  for (TierKind t : kTiers) {
    if (have.of(t) == 0 && reserved.of(t) == 0) continue;
    const LabelList labels = {{"tier", Tier(t)}};
    Sample(tier_capacity, labels, D(have.of(t)));
    Sample(tier_reserved, labels, D(reserved.of(t)));
    Sample(tier_used, labels, D(in_use.of(t)));
  }
  Sample(pool_count, {}, D(pools.size()));
  Sample(recovered, {}, D(pools_->recovered_blocks()));

  uint64_t quota = 0, charged = 0;
  const auto leases = leases_->List();
  for (const auto& lease : leases) {
    quota += lease->options().quota_bytes;
    charged += lease->used_bytes();
  }
  if (options_.local_clients) Sample(local_clients, {}, D(options_.local_clients()));
  Sample(lease_count, {}, D(leases.size()));
  Sample(lease_quota, {}, D(quota));
  Sample(lease_used, {}, D(charged));
  return f.Take();
}

}  // namespace tokenmem::http
