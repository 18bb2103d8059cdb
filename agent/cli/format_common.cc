#include <ctime>

#include "cli/format.h"

namespace tokenmem::cli {

std::string_view ScopeName(v1::PoolScope scope) {
  return scope == v1::POOL_SCOPE_CLUSTER ? "cluster" : "local";
}

std::string FormatPercent(uint64_t part, uint64_t whole) {
  if (whole == 0) return "-";
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.1f%%",
                100.0 * static_cast<double>(part) / static_cast<double>(whole));
  return buf;
}

std::string FormatDuration(int64_t seconds) {
  if (seconds < 0) seconds = 0;
  int64_t d = seconds / 86400, h = seconds / 3600 % 24, m = seconds / 60 % 60, s = seconds % 60;
  std::string out;
  if (d > 0) out += std::to_string(d) + "d ";
  if (d > 0 || h > 0) out += std::to_string(h) + "h ";
  if (d > 0 || h > 0 || m > 0) out += std::to_string(m) + "m ";
  out += std::to_string(s) + "s";
  return out;
}

std::string FormatTimestamp(int64_t unix_seconds) {
  if (unix_seconds == 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return std::to_string(unix_seconds);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%SZ", &tm);
  return buf;
}

PoolStatsView MakeStatsView(const v1::PoolStats& stats) {
  PoolStatsView view;
  for (v1::TierKind kind : {v1::TIER_KIND_DRAM, v1::TIER_KIND_CXL, v1::TIER_KIND_NVME}) {
    TierStatsView tier;
    tier.tier = kind;
    bool named = false;
    for (const auto& c : stats.tiers()) {
      if (c.tier() == kind) {
        tier.counters = c;
        named = true;
      }
    }
    for (const auto& u : stats.usage()) {
      if (u.tier() == kind) {
        tier.usage = u;
        named = true;
      }
    }
    if (!named) continue;
    view.hits += tier.counters.hits();
    view.tiers.push_back(std::move(tier));
  }
  view.lookups = view.hits + stats.misses();
  return view;
}

}  // namespace tokenmem::cli
