#include "topology/numa_topology.h"

#include <algorithm>
#include <charconv>
#include <map>
#include <system_error>
#include <utility>

#include "tokenmem/common/log.h"
#include "topology/sysfs_file.h"

namespace tokenmem::topology {
namespace {

namespace fs = std::filesystem;

// Larger than any kernel's CONFIG_NR_CPUS; stops "0-4000000000" from
// allocating gigabytes.
constexpr int kMaxListId = 1'000'000;

std::string_view Trim(std::string_view s) {
  const auto is_space = [](char c) { return c == ' ' || c == '\n' || c == '\t' || c == '\r'; };
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

bool ParseInt(std::string_view s, int* out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

bool ParseU64(std::string_view s, uint64_t* out) {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), *out);
  return ec == std::errc() && end == s.data() + s.size();
}

// Reads and parses a list file; errors name the path.
Result<std::vector<int>> ReadList(const fs::path& path) {
  TM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  Result<std::vector<int>> list = ParseCpuList(text);
  if (!list.ok()) return list.status().WithContext(path.string());
  return list;
}

// Splits on runs of spaces/tabs.
std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

// Reads "Node <id> MemTotal: <n> kB" and "... MemFree: ..." from a node's meminfo.
Status ReadMeminfo(const fs::path& path, NumaNode* node) {
  TM_ASSIGN_OR_RETURN(std::string text, ReadSmallFile(path));
  std::optional<uint64_t> total;
  std::optional<uint64_t> free;
  std::string_view rest = text;
  while (!rest.empty()) {
    const size_t eol = rest.find('\n');
    const std::string_view line = rest.substr(0, eol);
    rest = eol == std::string_view::npos ? std::string_view() : rest.substr(eol + 1);
    const std::vector<std::string_view> f = Fields(line);
    if (f.size() < 2 || f[0] != "Node") continue;
    const bool is_total = f.size() > 2 && f[2] == "MemTotal:";
    const bool is_free = f.size() > 2 && f[2] == "MemFree:";
    if (!is_total && !is_free) continue;
    int id = -1;
    uint64_t kib = 0;
    if (f.size() != 5 || !ParseInt(f[1], &id) || id != node->id || !ParseU64(f[3], &kib) ||
        f[4] != "kB" || kib > (UINT64_MAX >> 10)) {
      return InvalidArgument(path.string() + ": malformed line \"" + std::string(line) + "\"");
    }
    (is_total ? total : free) = kib << 10;
  }
  if (!total || !free) {
    return InvalidArgument(path.string() + ": no \"Node " + std::to_string(node->id) +
                           " MemTotal\"/\"MemFree\" lines");
  }
  node->total_bytes = *total;
  node->free_bytes = *free;
  return Status::Ok();
}

// Node id -> K, from <root>/devices/virtual/memory_tiering/memory_tierK/nodelist.
// Empty when the kernel has no memory tiering.
Result<std::map<int, int>> ReadMemoryTiers(const fs::path& sysfs_root) {
  const fs::path dir = sysfs_root / "devices/virtual/memory_tiering";
  std::map<int, int> tiers;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return tiers;
  constexpr std::string_view kPrefix = "memory_tier";
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    int tier = -1;
    if (!name.starts_with(kPrefix) ||
        !ParseInt(std::string_view(name).substr(kPrefix.size()), &tier)) {
      continue;
    }
    TM_ASSIGN_OR_RETURN(std::vector<int> nodes, ReadList(it->path() / "nodelist"));
    for (int n : nodes) {
      const auto [pos, inserted] = tiers.emplace(n, tier);
      if (!inserted) {
        return InvalidArgument(dir.string() + ": node " + std::to_string(n) + " is in tiers " +
                               std::to_string(pos->second) + " and " + std::to_string(tier));
      }
    }
  }
  if (ec) return ErrnoError("list " + dir.string(), ec.value());
  return tiers;
}

bool IsRealSysfs(const fs::path& root) {
  std::error_code ec;
  return fs::equivalent(root, "/sys", ec) && !ec;
}

}  // namespace

std::string_view MemoryKindName(MemoryKind k) {
  switch (k) {
    case MemoryKind::kDram:
      return "dram";
    case MemoryKind::kCxl:
      return "cxl";
  }
  return "unknown";
}

std::vector<int> Topology::NodesOfKind(MemoryKind kind) const {
  std::vector<int> ids;
  for (const NumaNode& n : nodes) {
    if (n.kind == kind) ids.push_back(n.id);
  }
  return ids;
}

uint64_t Topology::TotalBytes(MemoryKind kind) const {
  uint64_t sum = 0;
  for (const NumaNode& n : nodes) {
    if (n.kind == kind) sum += n.total_bytes;
  }
  return sum;
}

const NumaNode* Topology::Find(int id) const {
  for (const NumaNode& n : nodes) {
    if (n.id == id) return &n;
  }
  return nullptr;
}

Result<std::vector<int>> ParseCpuList(std::string_view text) {
  text = Trim(text);
  std::vector<int> ids;
  if (text.empty()) return ids;
  const auto bad = [&](std::string_view why) {
    return InvalidArgument("bad list \"" + std::string(text) + "\": " + std::string(why));
  };
  while (true) {
    const size_t comma = text.find(',');
    const std::string_view item = text.substr(0, comma);
    const size_t dash = item.find('-');
    int lo = 0;
    int hi = 0;
    if (dash == std::string_view::npos) {
      if (!ParseInt(item, &lo)) return bad("\"" + std::string(item) + "\" is not a number");
      hi = lo;
    } else if (!ParseInt(item.substr(0, dash), &lo) || !ParseInt(item.substr(dash + 1), &hi)) {
      return bad("\"" + std::string(item) + "\" is not a range");
    }
    if (lo < 0 || hi > kMaxListId) return bad("id out of range");
    if (hi < lo) return bad("reversed range \"" + std::string(item) + "\"");
    for (int i = lo; i <= hi; ++i) ids.push_back(i);
    if (comma == std::string_view::npos) break;
    text.remove_prefix(comma + 1);
  }
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  return ids;
}

Result<std::vector<int>> ListMemoryNodes(const fs::path& sysfs_root) {
  std::error_code ec;
  if (!fs::is_directory(sysfs_root, ec)) {
    return NotFound("sysfs root " + sysfs_root.string() + " is not a directory");
  }
  const fs::path node_dir = sysfs_root / "devices/system/node";
  if (!fs::is_directory(node_dir, ec)) {
    return NotFound(node_dir.string() + " does not exist (kernel without NUMA support?)");
  }
  Result<std::vector<int>> ids = ReadList(node_dir / "has_memory");
  if (ids.ok() || !ids.status().IsNotFound()) return ids;
  return ReadList(node_dir / "online");
}

Result<Topology> DiscoverTopology(const fs::path& sysfs_root) {
  TM_ASSIGN_OR_RETURN(std::vector<int> ids, ListMemoryNodes(sysfs_root));
  TM_ASSIGN_OR_RETURN(auto tiers, ReadMemoryTiers(sysfs_root));
  const fs::path node_dir = sysfs_root / "devices/system/node";
  Topology topo;
  for (int id : ids) {
    NumaNode node;
    node.id = id;
    const fs::path dir = node_dir / ("node" + std::to_string(id));
    TM_RETURN_IF_ERROR(ReadMeminfo(dir / "meminfo", &node));
    if (node.total_bytes == 0) continue;
    TM_ASSIGN_OR_RETURN(node.cpus, ReadList(dir / "cpulist"));
    node.kind = node.cpus.empty() ? MemoryKind::kCxl : MemoryKind::kDram;
    if (auto it = tiers.find(id); it != tiers.end()) node.memory_tier = it->second;
    topo.nodes.push_back(std::move(node));
  }
  if (IsRealSysfs(sysfs_root)) {
    for (const std::string& line : LibnumaDisagreements(topo)) {
      TM_LOG(Warn, "topology") << "sysfs and libnuma disagree: " << line;
    }
  }
  return topo;
}

}  // namespace tokenmem::topology
