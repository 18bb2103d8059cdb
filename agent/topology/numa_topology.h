// NUMA topology discovery: which memory nodes this machine has, which of them
// are DRAM (nodes with CPUs) and which are CXL (CPU-less memory nodes), how big
// they are, and which kernel memory tier each one sits in.
//
// Everything is read from a sysfs tree whose root is a parameter, so tests feed
// a fixture (tests/fixtures/sysfs/) and the agent passes "/sys".
// Thread-safety: all functions are pure apart from reading files and may be
// called from any thread; a Topology is a plain value.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::topology {

enum class MemoryKind { kDram, kCxl };  // node with CPUs = DRAM; CPU-less memory node = CXL

// "dram" or "cxl".
std::string_view MemoryKindName(MemoryKind k);

struct NumaNode {
  int id = 0;
  MemoryKind kind = MemoryKind::kDram;
  std::vector<int> cpus;           // ascending, from nodeN/cpulist
  uint64_t total_bytes = 0;        // nodeN/meminfo "MemTotal"
  uint64_t free_bytes = 0;         // nodeN/meminfo "MemFree", at discovery time
  std::optional<int> memory_tier;  // K of memory_tierK whose nodelist holds this node
};

struct Topology {
  std::vector<NumaNode> nodes;  // memory nodes only, sorted by id

  // Ids of the nodes of `kind`, ascending; empty when there are none.
  std::vector<int> NodesOfKind(MemoryKind kind) const;
  // Sum of total_bytes over the nodes of `kind`.
  uint64_t TotalBytes(MemoryKind kind) const;
  // The node with `id`, or nullptr when it is not a memory node.
  const NumaNode* Find(int id) const;
};

// Reads <sysfs_root>/devices/system/node/: the "has_memory" list (or "online"
// where the kernel has no has_memory), then nodeN/cpulist and nodeN/meminfo of
// each listed node, and <sysfs_root>/devices/virtual/memory_tiering/ where present.
// Nodes whose MemTotal is 0 are skipped.
// Errors, each naming the path: kNotFound when the root, the node directory,
// the node list or a node's cpulist/meminfo is missing; kInvalidArgument when a
// file is malformed; kIoError when a file cannot be read.
// With sysfs_root "/sys" the result is also compared with libnuma (see
// LibnumaDisagreements) and each disagreement is logged as a warning.
Result<Topology> DiscoverTopology(const std::filesystem::path& sysfs_root);

// Ids listed in <sysfs_root>/devices/system/node/has_memory, ascending, without
// reading each node; on kernels without has_memory, the "online" list (which
// may name nodes without memory). Same errors as DiscoverTopology.
Result<std::vector<int>> ListMemoryNodes(const std::filesystem::path& sysfs_root);

// Parses a kernel list such as "0-3,8,10-11" (surrounding whitespace and a
// trailing newline allowed) into ascending, duplicate-free ids. An empty or
// blank string gives an empty list. kInvalidArgument for anything else
// (negative or reversed ranges, stray characters, ids above 1,000,000).
Result<std::vector<int>> ParseCpuList(std::string_view text);

// Differences between `topology` (discovered from "/sys") and what libnuma
// reports: memory node ids (nodes 0..numa_max_node() with a positive
// numa_node_size64) and each node's total size. One human-readable line per
// difference; empty when they agree or when libnuma is unavailable
// (numa_available() < 0).
std::vector<std::string> LibnumaDisagreements(const Topology& topology);

}  // namespace tokenmem::topology
