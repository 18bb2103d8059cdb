#include "http/status_page.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "wire/json_writer.h"

namespace tokenmem::http {
namespace {

using pool::TierKind;

// Empty when something accepts connections on the Unix socket at `path`,
// else why not.
std::string SocketProblem(const std::filesystem::path& path) {
  sockaddr_un addr{};
  if (path.native().size() >= sizeof(addr.sun_path)) return "path too long";
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::strerror(errno);
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  std::string problem;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    problem = std::strerror(errno);
  }
  ::close(fd);
  return problem;
}

double Ratio(uint64_t part, uint64_t whole) {
  return whole == 0 ? 0.0 : static_cast<double>(part) / static_cast<double>(whole);
}

void WriteTierUsage(wire::JsonWriter& j, TierKind t, const pool::TierUsage& u,
                    const pool::TierCounters& c) {
  j.BeginObject()
      .StringField("tier", pool::TierName(t))
      .UintField("capacity_bytes", u.capacity_bytes)
      .UintField("used_bytes", u.used_bytes)
      .UintField("blocks", u.blocks)
      .UintField("pinned_blocks", u.pinned_blocks)
      .UintField("hits", c.hits)
      .UintField("bytes_read", c.bytes_read)
      .UintField("bytes_written", c.bytes_written)
      .UintField("demotions_out", c.demotions_out)
      .UintField("promotions_in", c.promotions_in)
      .UintField("evictions", c.evictions)
      .EndObject();
}

void WritePool(wire::JsonWriter& j, const pool::PoolSnapshot& s) {
  const pool::PoolCounters& c = s.counters;
  uint64_t hits = 0;
  for (const auto& t : c.tiers) hits += t.hits;
  j.BeginObject()
      .StringField("name", s.spec.name)
      .UintField("block_size", s.spec.block_size)
      .StringField("eviction", pool::EvictionPolicyName(s.spec.eviction))
      .UintField("ttl_seconds", s.spec.ttl_seconds);
  j.Key("tiers").BeginArray();
  for (TierKind t : {TierKind::kDram, TierKind::kCxl, TierKind::kNvme}) {
    const int i = static_cast<int>(t);
    if (s.spec.capacity.of(t) == 0 && s.usage[i].capacity_bytes == 0) continue;
    WriteTierUsage(j, t, s.usage[i], c.tiers[i]);
  }
  j.EndArray();
  j.Key("counters")
      .BeginObject()
      .UintField("puts", c.puts)
      .UintField("gets", c.gets)
      .UintField("hits", hits)
      .UintField("misses", c.misses)
      .DoubleField("hit_ratio", Ratio(hits, hits + c.misses))
      .UintField("prefix_lookups", c.prefix_lookups)
      .UintField("prefix_keys_matched", c.prefix_keys_matched)
      .UintField("expired", c.expired)
      .UintField("checksum_failures", c.checksum_failures)
      .UintField("quota_rejections", c.quota_rejections)
      .UintField("capacity_rejections", c.capacity_rejections)
      .UintField("io_errors", c.io_errors)
      .EndObject();
  j.EndObject();
}

}  // namespace

std::vector<std::string> ReadinessProblems(const AgentFacts& facts, bool stopping) {
  std::vector<std::string> problems;
  if (stopping) problems.push_back("the agent is shutting down");
  if (!facts.control_socket.empty()) {
    std::string why = SocketProblem(facts.control_socket);
    if (!why.empty()) {
      problems.push_back("control socket " + facts.control_socket.string() +
                         " does not answer: " + why);
    }
  }
  bool any_tier = false;
  for (const auto& tier : facts.tiers) {
    if (tier.capacity_bytes == 0) continue;
    any_tier = true;
    if (tier.kind != TierKind::kNvme) continue;
    std::error_code ec;
    if (!std::filesystem::is_directory(tier.path, ec)) {
      problems.push_back("nvme tier directory " + tier.path + " is missing");
    } else if (::access(tier.path.c_str(), W_OK | X_OK) != 0) {
      problems.push_back("nvme tier directory " + tier.path +
                         " is not writable: " + std::strerror(errno));
    }
  }
  if (!any_tier) problems.push_back("no tier has capacity");
  return problems;
}

std::string StatusJson(const AgentFacts& facts, const pool::PoolManager& pools,
                       const pool::LeaseTable& leases, size_t local_clients,
                       const std::vector<std::string>& problems) {
  const auto now = std::chrono::system_clock::now();
  const auto pool_list = pools.List();
  std::vector<pool::PoolSnapshot> snapshots;
  snapshots.reserve(pool_list.size());
  for (const auto& p : pool_list) snapshots.push_back(p->Snapshot());
  const pool::TierCapacities reserved = pools.Reserved();

  wire::JsonWriter j;
  j.BeginObject()
      .StringField("version", facts.version)
      .StringField("node_name", facts.node_name)
      .IntField("started_unix_seconds",
                std::chrono::duration_cast<std::chrono::seconds>(facts.started.time_since_epoch())
                    .count())
      .IntField("uptime_seconds",
                std::chrono::duration_cast<std::chrono::seconds>(now - facts.started).count())
      .BoolField("ready", problems.empty());
  j.Key("problems").BeginArray();
  for (const auto& p : problems) j.String(p);
  j.EndArray();

  j.Key("tiers").BeginArray();
  for (const auto& tier : facts.tiers) {
    const int i = static_cast<int>(tier.kind);
    uint64_t used = 0, blocks = 0;
    for (const auto& s : snapshots) {
      used += s.usage[i].used_bytes;
      blocks += s.usage[i].blocks;
    }
    j.BeginObject().StringField("tier", pool::TierName(tier.kind));
    j.Key("numa_nodes").BeginArray();
    for (int n : tier.numa_nodes) j.Int(n);
    j.EndArray()
        .StringField("path", tier.path)
        .UintField("capacity_bytes", tier.capacity_bytes)
        .UintField("reserved_bytes", reserved.of(tier.kind))
        .UintField("used_bytes", used)
        .UintField("blocks", blocks)
        .EndObject();
  }
  j.EndArray();

  j.Key("pools").BeginArray();
  for (const auto& s : snapshots) WritePool(j, s);
  j.EndArray();

  const auto lease_list = leases.List();
  uint64_t quota = 0, charged = 0;
  for (const auto& l : lease_list) {
    quota += l->options().quota_bytes;
    charged += l->used_bytes();
  }
  j.Key("leases")
      .BeginObject()
      .UintField("count", lease_list.size())
      .UintField("quota_bytes", quota)
      .UintField("used_bytes", charged);
  j.Key("items").BeginArray();
  for (const auto& l : lease_list) {
    // Never the secret: the id alone opens nothing.
    j.BeginObject()
        .StringField("id", l->id())
        .StringField("owner", l->options().owner)
        .UintField("quota_bytes", l->options().quota_bytes)
        .UintField("used_bytes", l->used_bytes())
        .BoolField("read_only", l->options().read_only)
        .IntField("created_unix_seconds", l->created_unix_seconds());
    j.Key("pools").BeginArray();
    for (const auto& p : l->options().pools) j.String(p);
    j.EndArray().EndObject();
  }
  j.EndArray().EndObject();
  j.Key("clients").BeginObject().UintField("local", local_clients).EndObject();

  // Live cluster peers; a standalone agent has none.
  j.Key("peers").BeginArray();
  if (facts.peers) {
    for (const auto& peer : facts.peers()) {
      j.BeginObject()
          .StringField("node", peer.node)
          .StringField("address", peer.address)
          .EndObject();
    }
  }
  j.EndArray();
  j.EndObject();
  return j.str() + "\n";
}

}  // namespace tokenmem::http
