// PoolSpec: what a pool is, as configured by an operator, and its checks.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::pool {

enum class EvictionPolicy {
  kLru,   // least recently used block first (chains: tail before head)
  kNone,  // never evict: a full pool refuses puts with kResourceExhausted
};

// Where a pool's blocks live. kLocal: on this node only. kCluster: puts are
// also forwarded to the key's owner (rendezvous over live cluster members)
// and a local miss is served from the owner; docs/cluster.md.
enum class PoolScope {
  kLocal,
  kCluster,
};

enum class TierKind : int { kDram = 0, kCxl = 1, kNvme = 2 };
inline constexpr int kTierCount = 3;
std::string_view TierName(TierKind tier);  // "dram", "cxl", "nvme"

struct TierCapacities {
  uint64_t dram = 0;
  uint64_t cxl = 0;
  uint64_t nvme = 0;
  uint64_t& of(TierKind t) {
    return t == TierKind::kDram ? dram : t == TierKind::kCxl ? cxl : nvme;
  }
  uint64_t of(TierKind t) const {
    return t == TierKind::kDram ? dram : t == TierKind::kCxl ? cxl : nvme;
  }
  uint64_t total() const { return dram + cxl + nvme; }
  bool operator==(const TierCapacities&) const = default;
};

inline constexpr size_t kMaxPoolNameLength = 63;
inline constexpr uint64_t kBlockAlignment = 4096;
inline constexpr uint64_t kMaxBlockSize = 64ull << 20;

struct PoolSpec {
  std::string name;
  uint64_t block_size = uint64_t{256} * 1024;  // largest block, bytes; multiple of 4096
  TierCapacities capacity;                     // bytes reserved per tier
  EvictionPolicy eviction = EvictionPolicy::kLru;
  uint64_t ttl_seconds = 0;  // 0: never expire
  PoolScope scope = PoolScope::kLocal;
  // Kubernetes namespaces whose leases may use the pool; empty: every
  // lease. Sorted, no duplicates (ValidatePoolSpec).
  std::vector<std::string> allowed_namespaces;
  bool operator==(const PoolSpec&) const = default;
};

inline constexpr size_t kMaxAllowedNamespaces = 256;

// [a-z0-9][a-z0-9.-]*, 1..63 characters.
Status ValidatePoolName(std::string_view name);

// A Kubernetes namespace name (a DNS-1123 label): [a-z0-9]([-a-z0-9]*[a-z0-9])?,
// 1..63 characters.
Status ValidateNamespaceName(std::string_view name);

// Name, block size (4 KiB multiple, 4 KiB..64 MiB), at least one tier with
// room for a block, a known scope, allowed namespaces that are namespace
// names, sorted and distinct (at most 256). Messages name the field at fault.
Status ValidatePoolSpec(const PoolSpec& spec);

// Sorts and removes duplicates: how every input path hands namespaces on.
void NormalizeNamespaces(std::vector<std::string>* namespaces);

std::string_view EvictionPolicyName(EvictionPolicy p);  // "lru", "none"
Result<EvictionPolicy> ParseEvictionPolicy(std::string_view text);

std::string_view PoolScopeName(PoolScope s);  // "local", "cluster"
// "local" or "cluster"; kInvalidArgument otherwise.
Result<PoolScope> ParsePoolScope(std::string_view text);

}  // namespace tokenmem::pool
