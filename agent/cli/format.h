// How tokenmemctl shows the agent's replies: human tables (sizes through
// HumanBytes, ratios as percentages) and JSON documents (sizes in bytes,
// ratios as numbers in [0, 1], null when nothing was looked up).
// Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/v1/control.pb.h"

namespace tokenmem::cli {

// ---- small pieces ----------------------------------------------------------

// "75.0%"; "-" when `whole` is 0.
std::string FormatPercent(uint64_t part, uint64_t whole);
// "0s", "59s", "1m 5s", "2h 0m 7s", "3d 4h 5m 6s".
std::string FormatDuration(int64_t seconds);
// "2026-11-25 14:00:00Z" (UTC); "-" for 0.
std::string FormatTimestamp(int64_t unix_seconds);
// "cluster" for POOL_SCOPE_CLUSTER; "local" otherwise (unspecified means local).
std::string_view ScopeName(v1::PoolScope scope);

// One pool's statistics regrouped per tier, with what both output forms
// derive: hits (summed over tiers) and lookups (hits + misses).
struct TierStatsView {
  v1::TierKind tier = v1::TIER_KIND_UNSPECIFIED;
  v1::TierCounters counters;
  v1::TierUsage usage;
};
struct PoolStatsView {
  uint64_t hits = 0;
  uint64_t lookups = 0;
  std::vector<TierStatsView> tiers;  // dram, cxl, nvme order; tiers the reply names
};
PoolStatsView MakeStatsView(const v1::PoolStats& stats);

// ---- human -----------------------------------------------------------------

std::string StatusText(const v1::StatusReply& status);
std::string PoolsText(const v1::ListPoolsReply& pools);
std::string PoolText(const v1::PoolInfo& pool);
// After CreateLease: id, secret, quota, pools, and "export TOKENMEM_LEASE=ID:SECRET".
std::string LeaseCreatedText(const v1::LeaseInfo& lease);
std::string LeasesText(const v1::ListLeasesReply& leases);
std::string StatsText(const v1::StatsReply& stats);

// ---- JSON (one complete document each) -------------------------------------

std::string StatusJson(const v1::StatusReply& status);
std::string PoolsJson(const v1::ListPoolsReply& pools);  // {"pools":[...]}
std::string PoolJson(const v1::PoolInfo& pool);
// The lease; the secret and "credentials" ("ID:SECRET") only when it has a secret.
std::string LeaseJson(const v1::LeaseInfo& lease);
std::string LeasesJson(const v1::ListLeasesReply& leases);  // {"leases":[...]}, no secrets
std::string StatsJson(const v1::StatsReply& stats);         // {"pools":[...]}

}  // namespace tokenmem::cli
