// Cross-check of sysfs discovery against libnuma, which the kernel's
// mempolicy calls (and so MemorySegment's mbind) ultimately agree with.
#include <numa.h>

#include <set>

#include "topology/numa_topology.h"

namespace tokenmem::topology {

std::vector<std::string> LibnumaDisagreements(const Topology& topology) {
  std::vector<std::string> out;
  if (numa_available() < 0) return out;
  std::set<int> libnuma_nodes;
  const int max_node = numa_max_node();
  for (int id = 0; id <= max_node; ++id) {
    const long long size = numa_node_size64(id, nullptr);
    if (size <= 0) continue;
    libnuma_nodes.insert(id);
    const NumaNode* node = topology.Find(id);
    if (node == nullptr) {
      out.push_back("libnuma has memory node " + std::to_string(id) + " (" + std::to_string(size) +
                    " bytes) that sysfs discovery lacks");
    } else if (node->total_bytes != static_cast<uint64_t>(size)) {
      out.push_back("node " + std::to_string(id) + " has " + std::to_string(node->total_bytes) +
                    " bytes in sysfs but " + std::to_string(size) + " in libnuma");
    }
  }
  for (const NumaNode& node : topology.nodes) {
    if (!libnuma_nodes.contains(node.id)) {
      out.push_back("sysfs memory node " + std::to_string(node.id) +
                    " is unknown to libnuma (numa_max_node() = " + std::to_string(max_node) + ")");
    }
  }
  return out;
}

}  // namespace tokenmem::topology
