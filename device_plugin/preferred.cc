#include "preferred.h"

#include <algorithm>
#include <map>
#include <set>
#include <utility>

#include "devices.h"

namespace tokenmem::device_plugin {

Result<std::vector<std::string>> PreferredAllocation(const std::vector<std::string>& available,
                                                     const std::vector<std::string>& must_include,
                                                     int size) {
  if (size < 0) return InvalidArgument("allocation size " + std::to_string(size) + " is negative");
  std::vector<std::string> out;
  std::set<std::string> taken;
  std::set<int> must_nodes;
  for (const auto& id : must_include) {
    if (!taken.insert(id).second) continue;
    out.push_back(id);
    if (auto parsed = ParseDeviceId(id)) must_nodes.insert(parsed->numa_node);
  }
  if (out.size() >= static_cast<size_t>(size)) return out;
  size_t need = static_cast<size_t>(size) - out.size();

  // Free devices by node, lowest index first; IDs of unknown form apart.
  std::map<int, std::vector<std::pair<int, std::string>>> free_by_node;
  std::vector<std::string> foreign;
  std::set<std::string> seen = taken;
  size_t total_free = 0;
  for (const auto& id : available) {
    if (!seen.insert(id).second) continue;
    ++total_free;
    if (auto parsed = ParseDeviceId(id)) {
      free_by_node[parsed->numa_node].emplace_back(parsed->index, id);
    } else {
      foreign.push_back(id);
    }
  }
  if (total_free < need) {
    return InvalidArgument("cannot choose " + std::to_string(size) + " devices: only " +
                           std::to_string(total_free + out.size()) + " offered");
  }
  for (auto& [node, devices] : free_by_node) std::sort(devices.begin(), devices.end());

  auto take = [&](int node, size_t count) {
    auto& devices = free_by_node[node];
    const size_t n = std::min(count, devices.size());
    for (size_t i = 0; i < n; ++i) out.push_back(devices[i].second);
    devices.erase(devices.begin(), devices.begin() + static_cast<std::ptrdiff_t>(n));
    need -= n;
  };

  // One node, when one can do.
  if (must_nodes.size() <= 1) {
    int best = -1;
    size_t best_free = 0;
    for (const auto& [node, devices] : free_by_node) {
      if (!must_nodes.empty() && node != *must_nodes.begin()) continue;
      if (devices.size() < need) continue;
      if (best < 0 || devices.size() < best_free) {
        best = node;
        best_free = devices.size();
      }
    }
    if (best >= 0) {
      take(best, need);
      return out;
    }
  }

  // Several nodes: the must-include devices' nodes, then the fullest first.
  std::vector<int> order(must_nodes.begin(), must_nodes.end());
  std::vector<int> rest;
  for (const auto& [node, devices] : free_by_node) {
    if (!must_nodes.count(node)) rest.push_back(node);
  }
  std::stable_sort(rest.begin(), rest.end(),
                   [&](int a, int b) { return free_by_node[a].size() > free_by_node[b].size(); });
  order.insert(order.end(), rest.begin(), rest.end());
  for (int node : order) {
    if (need == 0) break;
    take(node, need);
  }
  for (size_t i = 0; i < foreign.size() && need > 0; ++i, --need) out.push_back(foreign[i]);
  return out;
}

}  // namespace tokenmem::device_plugin
