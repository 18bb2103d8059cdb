#include "devices.h"

#include <algorithm>
#include <charconv>
#include <tuple>
#include <unordered_set>

namespace tokenmem::device_plugin {
namespace {

constexpr std::string_view kPrefix = "tokenmem-n";

bool ParseInt(std::string_view text, int* out) {
  if (text.empty() || (text.size() > 1 && text.front() == '0')) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), *out);
  return ec == std::errc() && end == text.data() + text.size() && *out >= 0;
}

bool Before(const Device& a, const Device& b) {
  const auto pa = ParseDeviceId(a.id);
  const auto pb = ParseDeviceId(b.id);
  if (pa && pb) return std::tie(pa->numa_node, pa->index) < std::tie(pb->numa_node, pb->index);
  if (pa.has_value() != pb.has_value()) return pa.has_value();
  return a.id < b.id;
}

}  // namespace

std::string DeviceId(int numa_node, int index) {
  return std::string(kPrefix) + std::to_string(numa_node) + "-" + std::to_string(index);
}

std::optional<ParsedDeviceId> ParseDeviceId(std::string_view id) {
  if (id.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  id.remove_prefix(kPrefix.size());
  const size_t dash = id.find('-');
  if (dash == std::string_view::npos) return std::nullopt;
  ParsedDeviceId out;
  if (!ParseInt(id.substr(0, dash), &out.numa_node) || !ParseInt(id.substr(dash + 1), &out.index)) {
    return std::nullopt;
  }
  return out;
}

std::map<int, uint64_t> CapacityByNode(const AgentStatus& status, CapacitySource source) {
  std::map<int, uint64_t> out;
  for (const auto& tier : status.tiers) {
    if (tier.kind != TierKind::kDram && tier.kind != TierKind::kCxl) continue;
    const uint64_t bytes = source == CapacitySource::kPools
                               ? std::min(tier.reserved_bytes, tier.capacity_bytes)
                               : tier.capacity_bytes;
    std::vector<int> nodes;
    for (int node : tier.numa_nodes) {
      if (node >= 0 && std::find(nodes.begin(), nodes.end(), node) == nodes.end()) {
        nodes.push_back(node);
      }
    }
    if (nodes.empty()) nodes.push_back(0);
    const uint64_t share = bytes / nodes.size();
    for (int node : nodes) out[node] += share;
  }
  return out;
}

std::vector<Device> BuildDevices(const std::map<int, uint64_t>& capacity, uint64_t unit_bytes,
                                 const std::vector<Device>& previous) {
  std::vector<Device> out;
  if (unit_bytes == 0) return out;
  for (const auto& [node, bytes] : capacity) {
    const uint64_t count = bytes / unit_bytes;
    for (uint64_t i = 0; i < count; ++i) {
      out.push_back({DeviceId(node, static_cast<int>(i)), node, true});
    }
  }
  std::unordered_set<std::string> listed;
  for (const auto& d : out) listed.insert(d.id);
  for (const auto& old : previous) {
    if (listed.insert(old.id).second) out.push_back({old.id, old.numa_node, false});
  }
  std::sort(out.begin(), out.end(), Before);
  return out;
}

std::vector<Device> AllUnhealthy(std::vector<Device> devices) {
  for (auto& d : devices) d.healthy = false;
  return devices;
}

}  // namespace tokenmem::device_plugin
