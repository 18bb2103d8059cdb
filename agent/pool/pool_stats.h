// What a pool reports about itself: usage per tier and event counters.
#pragma once

#include <array>
#include <cstdint>

#include "pool/pool_spec.h"

namespace tokenmem::pool {

struct TierUsage {
  uint64_t capacity_bytes = 0;
  uint64_t used_bytes = 0;  // blocks held, in slot bytes
  uint64_t blocks = 0;
  uint64_t pinned_blocks = 0;
};

struct TierCounters {
  uint64_t hits = 0;
  uint64_t bytes_read = 0;
  uint64_t bytes_written = 0;
  uint64_t demotions_out = 0;  // blocks moved from this tier to a slower one
  uint64_t promotions_in = 0;  // blocks moved into this tier from a slower one
  uint64_t bytes_demoted_out = 0;
  uint64_t bytes_promoted_in = 0;
  uint64_t evictions = 0;  // blocks dropped from this tier
};

struct PoolCounters {
  uint64_t puts = 0;
  uint64_t gets = 0;
  uint64_t misses = 0;
  uint64_t prefix_lookups = 0;
  uint64_t prefix_keys_matched = 0;
  uint64_t expired = 0;
  uint64_t checksum_failures = 0;
  uint64_t quota_rejections = 0;
  uint64_t capacity_rejections = 0;
  uint64_t io_errors = 0;
  std::array<TierCounters, kTierCount> tiers{};
};

struct PoolSnapshot {
  PoolSpec spec;
  PoolCounters counters;
  std::array<TierUsage, kTierCount> usage{};
};

}  // namespace tokenmem::pool
