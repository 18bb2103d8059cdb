#include "pool/pool_spec.h"

#include <algorithm>

#include "tokenmem/common/units.h"

namespace tokenmem::pool {

std::string_view TierName(TierKind tier) {
  switch (tier) {
    case TierKind::kDram:
      return "dram";
    case TierKind::kCxl:
      return "cxl";
    case TierKind::kNvme:
      return "nvme";
  }
  return "unknown";
}

Status ValidatePoolName(std::string_view name) {
  if (name.empty()) return InvalidArgument("pool name is empty");
  if (name.size() > kMaxPoolNameLength) {
    return InvalidArgument("pool name '" + std::string(name) + "' is longer than " +
                           std::to_string(kMaxPoolNameLength) + " characters");
  }
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (!lower_or_digit(name[0])) {
    return InvalidArgument("pool name '" + std::string(name) +
                           "' must start with a lower-case letter or a digit");
  }
  for (char c : name) {
    if (!lower_or_digit(c) && c != '.' && c != '-') {
      return InvalidArgument("pool name '" + std::string(name) +
                             "' may only hold a-z, 0-9, '.' and '-'");
    }
  }
  return Status::Ok();
}

Status ValidateNamespaceName(std::string_view name) {
  auto alnum = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  const bool ok =
      !name.empty() && name.size() <= 63 && alnum(name.front()) && alnum(name.back()) &&
      std::all_of(name.begin(), name.end(), [&](char c) { return alnum(c) || c == '-'; });
  if (!ok) {
    return InvalidArgument("'" + std::string(name) +
                           "' is not a namespace name (1-63 of a-z, 0-9 and '-', starting and "
                           "ending with a letter or digit)");
  }
  return Status::Ok();
}

void NormalizeNamespaces(std::vector<std::string>* namespaces) {
  std::sort(namespaces->begin(), namespaces->end());
  namespaces->erase(std::unique(namespaces->begin(), namespaces->end()), namespaces->end());
}

Status ValidatePoolSpec(const PoolSpec& spec) {
  TM_RETURN_IF_ERROR(ValidatePoolName(spec.name));
  const std::string where = "pool '" + spec.name + "': ";
  if (spec.block_size < kBlockAlignment || spec.block_size > kMaxBlockSize ||
      spec.block_size % kBlockAlignment != 0) {
    return InvalidArgument(where + "block_size " + FormatByteSize(spec.block_size) +
                           " must be a multiple of 4KiB between 4KiB and 64MiB");
  }
  bool any = false;
  for (TierKind t : {TierKind::kDram, TierKind::kCxl, TierKind::kNvme}) {
    uint64_t c = spec.capacity.of(t);
    if (c != 0 && c < spec.block_size) {
      return InvalidArgument(where + std::string(TierName(t)) + " capacity " + FormatByteSize(c) +
                             " is smaller than one block (" + FormatByteSize(spec.block_size) +
                             ")");
    }
    any = any || c != 0;
  }
  if (!any) return InvalidArgument(where + "no capacity in any tier");
  if (spec.scope != PoolScope::kLocal && spec.scope != PoolScope::kCluster) {
    return InvalidArgument(where + "scope " + std::to_string(static_cast<int>(spec.scope)) +
                           " is neither local nor cluster");
  }
  if (spec.allowed_namespaces.size() > kMaxAllowedNamespaces) {
    return InvalidArgument(where + "allowed_namespaces lists " +
                           std::to_string(spec.allowed_namespaces.size()) +
                           " namespaces, at most " + std::to_string(kMaxAllowedNamespaces));
  }
  for (size_t i = 0; i < spec.allowed_namespaces.size(); ++i) {
    const std::string& ns = spec.allowed_namespaces[i];
    if (Status s = ValidateNamespaceName(ns); !s.ok()) {
      return InvalidArgument(where + "allowed_namespaces: " + s.message());
    }
    if (i > 0 && spec.allowed_namespaces[i - 1] >= ns) {
      std::string why = where;
      why += "allowed_namespaces must be sorted and distinct ('";
      why += spec.allowed_namespaces[i - 1];
      why += "' then '";
      why += ns;
      why += "')";
      return InvalidArgument(why);
    }
  }
  return Status::Ok();
}

std::string_view EvictionPolicyName(EvictionPolicy p) {
  return p == EvictionPolicy::kNone ? "none" : "lru";
}

Result<EvictionPolicy> ParseEvictionPolicy(std::string_view text) {
  if (text == "lru") return EvictionPolicy::kLru;
  if (text == "none") return EvictionPolicy::kNone;
  return InvalidArgument("eviction policy '" + std::string(text) + "' is not one of: lru, none");
}

std::string_view PoolScopeName(PoolScope s) {
  return s == PoolScope::kCluster ? "cluster" : "local";
}

Result<PoolScope> ParsePoolScope(std::string_view text) {
  if (text == "local") return PoolScope::kLocal;
  if (text == "cluster") return PoolScope::kCluster;
  return InvalidArgument("pool scope '" + std::string(text) + "' is not one of: local, cluster");
}

}  // namespace tokenmem::pool
