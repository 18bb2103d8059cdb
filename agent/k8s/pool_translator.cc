#include "k8s/pool_translator.h"

#include <array>
#include <string_view>

#include "tokenmem/common/units.h"

namespace tokenmem::k8s {

Result<uint64_t> ParseCrdSize(const nlohmann::json& value, const std::string& field) {
  if (value.is_number_unsigned()) return value.get<uint64_t>();
  if (value.is_number_integer()) {
    if (value.get<int64_t>() < 0) return InvalidArgument(field + ": must not be negative");
    return static_cast<uint64_t>(value.get<int64_t>());
  }
  if (!value.is_string()) {
    return InvalidArgument(field + ": must be an integer (bytes) or a string such as \"2Gi\"");
  }
  const std::string text = value.get<std::string>();
  size_t digits_end = text.find_first_not_of("0123456789.");
  std::string_view suffix = digits_end == std::string::npos
                                ? std::string_view()
                                : std::string_view(text).substr(digits_end);
  if (digits_end == 0 || text.empty()) {
    return InvalidArgument(field + ": '" + text + "' does not start with a number");
  }
  static constexpr std::array<std::string_view, 13> kSuffixes = {
      "", "Ki", "Mi", "Gi", "Ti", "KiB", "MiB", "GiB", "TiB", "KB", "MB", "GB", "TB"};
  bool known = false;
  for (auto s : kSuffixes) known = known || s == suffix;
  if (!known) {
    if (suffix == "K" || suffix == "M" || suffix == "G" || suffix == "T") {
      return InvalidArgument(field + ": '" + text + "' is ambiguous; write " + std::string(suffix) +
                             "i (powers of 1024) or " + std::string(suffix) + "B (powers of 1000)");
    }
    return InvalidArgument(field + ": '" + text + "' has an unknown unit '" + std::string(suffix) +
                           "' (use Ki, Mi, Gi, Ti, KiB... or KB, MB, GB, TB)");
  }
  // ParseByteSize spells binary units with the B; the CRD lets it be left off.
  std::string spelled = text;
  if (suffix.size() == 2 && suffix[1] == 'i') spelled += 'B';
  auto bytes = ParseByteSize(spelled);
  if (!bytes.ok()) return InvalidArgument(field + ": " + bytes.status().message());
  return bytes.value();
}

Result<pool::PoolSpec> TranslatePool(const nlohmann::json& object) {
  if (!object.is_object()) return InvalidArgument("the object is not a JSON object");
  pool::PoolSpec spec;
  const auto metadata = object.value("metadata", nlohmann::json::object());
  if (!metadata.is_object() || !metadata.contains("name") || !metadata["name"].is_string()) {
    return InvalidArgument("metadata.name: missing");
  }
  spec.name = metadata["name"].get<std::string>();
  TM_RETURN_IF_ERROR(pool::ValidatePoolName(spec.name));

  if (!object.contains("spec") || !object["spec"].is_object())
    return InvalidArgument("spec: missing");
  const auto& s = object["spec"];
  if (!s.contains("blockSize")) return InvalidArgument("spec.blockSize: missing");
  TM_ASSIGN_OR_RETURN(spec.block_size, ParseCrdSize(s["blockSize"], "spec.blockSize"));

  if (!s.contains("capacity") || !s["capacity"].is_object()) {
    return InvalidArgument("spec.capacity: missing (give dram, cxl and/or nvme)");
  }
  for (const auto& [key, value] : s["capacity"].items()) {
    std::string field = "spec.capacity." + key;
    TM_ASSIGN_OR_RETURN(uint64_t bytes, ParseCrdSize(value, field));
    if (key == "dram") {
      spec.capacity.dram = bytes;
    } else if (key == "cxl") {
      spec.capacity.cxl = bytes;
    } else if (key == "nvme") {
      spec.capacity.nvme = bytes;
    } else {
      return InvalidArgument(field + ": unknown tier (dram, cxl, nvme)");
    }
  }

  if (s.contains("evictionPolicy")) {
    if (!s["evictionPolicy"].is_string())
      return InvalidArgument("spec.evictionPolicy: must be a string");
    auto policy = pool::ParseEvictionPolicy(s["evictionPolicy"].get<std::string>());
    if (!policy.ok()) return InvalidArgument("spec.evictionPolicy: " + policy.status().message());
    spec.eviction = policy.value();
  }
  if (s.contains("ttlSeconds")) {
    const auto& ttl = s["ttlSeconds"];
    if (!ttl.is_number_integer() || (!ttl.is_number_unsigned() && ttl.get<int64_t>() < 0)) {
      return InvalidArgument("spec.ttlSeconds: must be a non-negative integer");
    }
    spec.ttl_seconds =
        ttl.is_number_unsigned() ? ttl.get<uint64_t>() : uint64_t(ttl.get<int64_t>());
  }
  if (s.contains("scope")) {
    const auto& scope = s["scope"];
    if (!scope.is_string() || (scope != "node" && scope != "cluster")) {
      return InvalidArgument("spec.scope: must be node or cluster");
    }
    spec.scope = scope == "cluster" ? pool::PoolScope::kCluster : pool::PoolScope::kLocal;
  }
  if (s.contains("allowedNamespaces")) {
    const auto& names = s["allowedNamespaces"];
    if (!names.is_array()) return InvalidArgument("spec.allowedNamespaces: must be a list");
    for (const auto& ns : names) {
      if (!ns.is_string()) {
        return InvalidArgument("spec.allowedNamespaces: every item must be a string");
      }
      spec.allowed_namespaces.push_back(ns.get<std::string>());
    }
    pool::NormalizeNamespaces(&spec.allowed_namespaces);
  }
  Status valid = pool::ValidatePoolSpec(spec);
  if (!valid.ok()) return InvalidArgument(valid.message());
  return spec;
}

}  // namespace tokenmem::k8s
