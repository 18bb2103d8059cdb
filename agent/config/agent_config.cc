#include "config/agent_config.h"

#include <sys/un.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <set>
#include <system_error>

#include "config/config_values.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem::config {
namespace {

using pool::TierKind;

Status Bad(std::string_view path, const std::string& message) {
  return InvalidArgument(std::string(path) + ": " + message);
}

std::string Quote(const std::filesystem::path& p) { return "'" + p.string() + "'"; }

Status CheckNodeName(const std::string& name) {
  if (name.size() > 253) return Bad("node_name", "longer than 253 characters");
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u <= ' ' || u == 0x7f || c == '/') {
      return Bad("node_name", "'" + name + "' may not hold spaces, control characters or '/'");
    }
  }
  return Status::Ok();
}

// A file holding a secret: it exists, is a regular file and is not empty.
Status CheckSecretFile(std::string_view path, const std::filesystem::path& file) {
  std::error_code ec;
  auto st = std::filesystem::status(file, ec);
  if (st.type() == std::filesystem::file_type::not_found) {
    return Bad(path, Quote(file) + " does not exist");
  }
  if (ec) return Bad(path, Quote(file) + ": " + ec.message());
  if (!std::filesystem::is_regular_file(st)) {
    return Bad(path, Quote(file) + " is not a regular file");
  }
  auto size = std::filesystem::file_size(file, ec);
  if (ec) return Bad(path, Quote(file) + ": " + ec.message());
  if (size == 0) return Bad(path, Quote(file) + " is empty");
  return Status::Ok();
}

// host:port where port 0 ("any free port") is allowed too.
Status CheckListenAddress(std::string_view path, const std::string& listen) {
  auto hp = ParseHostPort(listen);
  if (hp.ok()) return Status::Ok();
  if (listen.ends_with(":0") && ParseHostPort(listen.substr(0, listen.size() - 1) + "1").ok()) {
    return Status::Ok();
  }
  return Bad(path, std::string(hp.status().message()));
}

Status CheckSocketPath(std::string_view path, const std::filesystem::path& socket) {
  if (socket.native().size() >= sizeof(sockaddr_un{}.sun_path)) {
    return Bad(path, Quote(socket) + " is longer than a Unix socket address (" +
                         std::to_string(sizeof(sockaddr_un{}.sun_path) - 1) + " bytes)");
  }
  return Status::Ok();
}

Status CheckMode(std::string_view path, uint32_t mode) {
  if (mode > 0777) return Bad(path, FormatOctalMode(mode) + " is not a file mode in 0000..0777");
  return Status::Ok();
}

// (uid_t)-1 and (gid_t)-1 mean "no id" to the kernel (setresuid, chown):
// listing one would admit nobody real and hide a typo.
Status CheckIds(std::string_view path, const std::vector<uint32_t>& ids) {
  for (uint32_t id : ids) {
    if (id == UINT32_MAX) return Bad(path, std::to_string(id) + " is not a valid id");
  }
  return Status::Ok();
}

Status CheckTls(const ControlConfig& c) {
  const bool cert = !c.tls_cert_file.empty();
  const bool key = !c.tls_key_file.empty();
  const bool ca = !c.tls_client_ca_file.empty();
  if (!cert && !key && !ca) return Status::Ok();
  if (c.tcp_listen.empty()) {
    return Bad(cert ? "control.tls_cert_file"
                    : (key ? "control.tls_key_file" : "control.tls_client_ca_file"),
               "is set but control.tcp_listen is not (TLS applies to the TCP listener only)");
  }
  if (cert != key) {
    return Bad(cert ? "control.tls_key_file" : "control.tls_cert_file",
               "must be set together with " +
                   std::string(cert ? "control.tls_cert_file" : "control.tls_key_file"));
  }
  if (ca && !cert) {
    return Bad("control.tls_client_ca_file",
               "needs control.tls_cert_file and control.tls_key_file (mTLS is TLS first)");
  }
  if (cert) TM_RETURN_IF_ERROR(CheckSecretFile("control.tls_cert_file", c.tls_cert_file));
  if (key) TM_RETURN_IF_ERROR(CheckSecretFile("control.tls_key_file", c.tls_key_file));
  if (ca) TM_RETURN_IF_ERROR(CheckSecretFile("control.tls_client_ca_file", c.tls_client_ca_file));
  return Status::Ok();
}

Status CheckControl(const ControlConfig& c) {
  if (c.socket_path.empty()) return Bad("control.socket", "is empty");
  TM_RETURN_IF_ERROR(CheckSocketPath("control.socket", c.socket_path));
  const std::filesystem::path data = EffectiveDataSocket(c);
  TM_RETURN_IF_ERROR(CheckSocketPath("control.data_socket", data));
  if (data.lexically_normal() == c.socket_path.lexically_normal()) {
    return Bad("control.data_socket", Quote(data) + " is the control socket too");
  }
  TM_RETURN_IF_ERROR(CheckMode("control.socket_mode", c.socket_mode));
  TM_RETURN_IF_ERROR(CheckMode("control.data_socket_mode", c.data_socket_mode));
  TM_RETURN_IF_ERROR(CheckIds("control.admin_uids", c.admin_uids));
  TM_RETURN_IF_ERROR(CheckIds("control.admin_gids", c.admin_gids));
  if (c.max_message_bytes < kMinMessageBytes || c.max_message_bytes > kMaxMessageBytes) {
    return Bad("control.max_message_size",
               FormatByteSize(c.max_message_bytes) + " is outside 4KiB..2GiB-1 (gRPC's limit)");
  }
  if (!c.tcp_listen.empty()) {
    auto hp = ParseHostPort(c.tcp_listen);
    if (!hp.ok()) return Bad("control.tcp_listen", hp.status().message());
    // TCP reaches beyond this node, so it is never open without an admin token.
    if (c.admin_token_file.empty()) {
      return Bad("control.admin_token_file", "must be set when control.tcp_listen is set");
    }
    TM_RETURN_IF_ERROR(CheckSecretFile("control.admin_token_file", c.admin_token_file));
  }
  return CheckTls(c);
}

Status CheckHttp(const HttpConfig& h) {
  if (!h.probe_listen.empty()) {
    if (h.listen.empty()) {
      return InvalidArgument(
          "http.probe_listen needs http.listen (the probes' answers come "
          "from the HTTP server)");
    }
    TM_RETURN_IF_ERROR(CheckListenAddress("http.probe_listen", h.probe_listen));
    if (h.probe_listen == h.listen) {
      return InvalidArgument("http.probe_listen must be another port than http.listen");
    }
  }
  if (h.listen.empty()) return Status::Ok();
  // Port 0 (any free port) is fine here, unlike for the control API:
  // scrapers find the port through service discovery or the log.
  return CheckListenAddress("http.listen", h.listen);
}

Status CheckRemote(const RemoteConfig& r) {
  if (!r.listen.empty()) TM_RETURN_IF_ERROR(CheckListenAddress("remote.listen", r.listen));
  if (r.max_connections < 1 || r.max_connections > kMaxRemoteConnections) {
    return Bad("remote.max_connections", std::to_string(r.max_connections) + " is outside 1.." +
                                             std::to_string(kMaxRemoteConnections));
  }
  if (r.workers < 1 || r.workers > kMaxRemoteWorkers) {
    return Bad("remote.workers",
               std::to_string(r.workers) + " is outside 1.." + std::to_string(kMaxRemoteWorkers));
  }
  if (r.max_batch_bytes < kMinRemoteBatchBytes || r.max_batch_bytes > kMaxRemoteBatchBytes) {
    return Bad("remote.max_batch_size",
               FormatByteSize(r.max_batch_bytes) + " is outside 1MiB..1GiB");
  }
  return Status::Ok();
}

Status CheckRange(std::string_view key, uint64_t value, uint64_t low, uint64_t high) {
  if (value >= low && value <= high) return Status::Ok();
  return Bad("limits." + std::string(key), std::to_string(value) + " is outside " +
                                               std::to_string(low) + ".." + std::to_string(high));
}

Status CheckLimits(const AgentConfig& a) {
  const LimitsConfig& l = a.limits;
  TM_RETURN_IF_ERROR(CheckRange("local_max_connections", l.local_max_connections, 1, 65536));
  TM_RETURN_IF_ERROR(CheckRange("local_max_connections_per_client",
                                l.local_max_connections_per_client, 1, l.local_max_connections));
  TM_RETURN_IF_ERROR(CheckRange("hello_timeout_ms", l.hello_timeout_ms, 100, 600000));
  // The per-address and byte budgets are bounded by the remote settings
  // they sit under (EffectiveLimits), so that changing remote.* alone never
  // makes a configuration with default limits invalid.
  TM_RETURN_IF_ERROR(
      CheckRange("remote_max_connections_per_peer", l.remote_max_connections_per_peer, 1, 65536));
  TM_RETURN_IF_ERROR(CheckRange("remote_max_requests_per_connection",
                                l.remote_max_requests_per_connection, 1, 65536));
  if (l.remote_max_bytes_per_connection < (1ull << 20)) {
    return Bad("limits.remote_max_bytes_per_connection",
               FormatByteSize(l.remote_max_bytes_per_connection) + " is less than 1MiB");
  }
  if (l.remote_max_bytes_per_lease < (1ull << 20)) {
    return Bad("limits.remote_max_bytes_per_lease",
               FormatByteSize(l.remote_max_bytes_per_lease) + " is less than 1MiB");
  }
  TM_RETURN_IF_ERROR(
      CheckRange("remote_max_queued_requests", l.remote_max_queued_requests, 1, 1u << 20));
  TM_RETURN_IF_ERROR(
      CheckRange("max_pinned_blocks_per_lease", l.max_pinned_blocks_per_lease, 1, 1u << 31));
  TM_RETURN_IF_ERROR(CheckRange("http_max_connections", l.http_max_connections, 2, 1024));
  // Below the total, so one address can never take every connection.
  TM_RETURN_IF_ERROR(CheckRange("http_max_connections_per_peer", l.http_max_connections_per_peer, 1,
                                l.http_max_connections - 1));
  return CheckRange("http_connection_timeout_ms", l.http_connection_timeout_ms, 100, 600000);
}

Status CheckCluster(const AgentConfig& a) {
  const ClusterConfig& c = a.cluster;
  for (size_t i = 0; i < c.peers.size(); ++i) {
    const std::string where = "cluster.peers[" + std::to_string(i) + "]";
    auto hp = ParseHostPort(c.peers[i]);
    if (!hp.ok()) return Bad(where, hp.status().message());
    for (size_t j = 0; j < i; ++j) {
      auto other = ParseHostPort(c.peers[j]);
      if (other.ok() && other->host == hp->host && other->port == hp->port) {
        return Bad(where,
                   "'" + c.peers[i] + "' is already cluster.peers[" + std::to_string(j) + "]");
      }
    }
  }
  if (!c.dns_name.empty()) {
    auto hp = ParseHostPort(c.dns_name);
    if (!hp.ok()) return Bad("cluster.dns_name", hp.status().message());
  }
  if (c.heartbeat_interval_ms == 0)
    return Bad("cluster.heartbeat_interval_ms", "must be at least 1");
  if (c.heartbeat_timeout_ms <= c.heartbeat_interval_ms) {
    return Bad("cluster.heartbeat_timeout_ms",
               std::to_string(c.heartbeat_timeout_ms) +
                   " must be greater than cluster.heartbeat_interval_ms (" +
                   std::to_string(c.heartbeat_interval_ms) + ")");
  }
  if (c.dns_refresh_ms == 0) return Bad("cluster.dns_refresh_ms", "must be at least 1");
  if (c.forward_queue_blocks < 1 || c.forward_queue_blocks > kMaxForwardQueueBlocks) {
    return Bad("cluster.forward_queue_blocks", std::to_string(c.forward_queue_blocks) +
                                                   " is outside 1.." +
                                                   std::to_string(kMaxForwardQueueBlocks));
  }
  if (!ClusterEnabled(a)) return Status::Ok();
  // Peers reach each other's pools through the remote listener.
  if (a.remote.listen.empty()) {
    return Bad("remote.listen",
               "must be set when the cluster is on (cluster.peers or cluster.dns_name): peers "
               "reach this agent through it");
  }
  if (c.secret_file.empty()) {
    return Bad("cluster.secret_file",
               "must be set when the cluster is on (cluster.peers or cluster.dns_name)");
  }
  return CheckSecretFile("cluster.secret_file", c.secret_file);
}

Status CheckNumaNodes(std::string_view path, const std::vector<int>& nodes,
                      std::set<int>* seen_in_other) {
  std::set<int> seen;
  for (int n : nodes) {
    if (n < 0 || n > kMaxNumaNode) {
      return Bad(path,
                 "node " + std::to_string(n) + " is outside 0.." + std::to_string(kMaxNumaNode));
    }
    if (!seen.insert(n).second) return Bad(path, "node " + std::to_string(n) + " is listed twice");
    if (seen_in_other->count(n)) {
      return Bad(path, "node " + std::to_string(n) + " is listed in both memory tiers");
    }
  }
  seen_in_other->insert(seen.begin(), seen.end());
  return Status::Ok();
}

Status CheckTiers(const AgentConfig& c) {
  for (auto [name, tier] : {std::pair{"dram", &c.dram}, std::pair{"cxl", &c.cxl}}) {
    if (tier->capacity_bytes % pool::kBlockAlignment != 0) {
      return Bad(std::string("tiers.") + name + ".capacity",
                 FormatByteSize(tier->capacity_bytes) + " is not a multiple of 4KiB");
    }
  }
  std::set<int> memory_nodes;
  TM_RETURN_IF_ERROR(CheckNumaNodes("tiers.dram.numa_nodes", c.dram.numa_nodes, &memory_nodes));
  TM_RETURN_IF_ERROR(CheckNumaNodes("tiers.cxl.numa_nodes", c.cxl.numa_nodes, &memory_nodes));

  const NvmeTierConfig& n = c.nvme;
  if (n.segment_bytes < kMinSegmentBytes || n.segment_bytes % pool::kBlockAlignment != 0) {
    return Bad("tiers.nvme.segment_size",
               FormatByteSize(n.segment_bytes) + " must be at least 1MiB and a multiple of 4KiB");
  }
  if (n.capacity_bytes % n.segment_bytes != 0) {
    return Bad("tiers.nvme.capacity", FormatByteSize(n.capacity_bytes) +
                                          " is not a whole number of segments of " +
                                          FormatByteSize(n.segment_bytes));
  }
  if (n.queue_depth < 1 || n.queue_depth > kMaxQueueDepth) {
    return Bad("tiers.nvme.queue_depth",
               std::to_string(n.queue_depth) + " is outside 1.." + std::to_string(kMaxQueueDepth));
  }
  if (n.capacity_bytes != 0 && n.directory.empty()) return Bad("tiers.nvme.directory", "is empty");
  return Status::Ok();
}

Status CheckKubernetes(const KubernetesConfig& k) {
  if (!k.enabled) return Status::Ok();
  if (k.api_server.empty() && k.kubeconfig.empty()) {
    return Bad("kubernetes.api_server", "is empty and no kubernetes.kubeconfig is given");
  }
  if (!k.api_server.empty() && k.api_server.rfind("http://", 0) != 0 &&
      k.api_server.rfind("https://", 0) != 0) {
    return Bad("kubernetes.api_server",
               "'" + k.api_server + "' must start with http:// or https://");
  }
  if (k.node_status_interval_s == 0)
    return Bad("kubernetes.node_status_interval_s", "must be at least 1");
  if (k.backoff_initial_ms == 0) return Bad("kubernetes.backoff_initial_ms", "must be at least 1");
  if (k.backoff_max_ms < k.backoff_initial_ms) {
    return Bad("kubernetes.backoff_max_ms", "must be at least kubernetes.backoff_initial_ms");
  }
  return Status::Ok();
}

Status CheckMovement(const MovementConfig& m) {
  // Written so that NaN fails too.
  if (!(m.low_watermark > 0 && m.low_watermark < 1)) {
    return Bad("movement.low_watermark", FormatDouble(m.low_watermark) + " is not in (0, 1)");
  }
  if (!(m.high_watermark > 0 && m.high_watermark < 1)) {
    return Bad("movement.high_watermark", FormatDouble(m.high_watermark) + " is not in (0, 1)");
  }
  if (!(m.low_watermark < m.high_watermark)) {
    return Bad("movement.low_watermark", FormatDouble(m.low_watermark) +
                                             " must be below movement.high_watermark (" +
                                             FormatDouble(m.high_watermark) + ")");
  }
  if (m.interval_ms == 0) return Bad("movement.interval_ms", "must be at least 1");
  if (m.ttl_sweep_ms == 0) return Bad("movement.ttl_sweep_ms", "must be at least 1");
  return Status::Ok();
}

Status CheckPools(const AgentConfig& c) {
  pool::TierCapacities sum;
  for (size_t i = 0; i < c.pools.size(); ++i) {
    const pool::PoolSpec& p = c.pools[i];
    const std::string where = "pools[" + std::to_string(i) + "]";
    Status s = pool::ValidatePoolSpec(p);
    if (!s.ok()) return Bad(where, s.message());
    for (size_t j = 0; j < i; ++j) {
      if (c.pools[j].name == p.name) {
        return Bad(where + ".name",
                   "'" + p.name + "' is already the name of pools[" + std::to_string(j) + "]");
      }
    }
    if (p.capacity.nvme != 0 && p.block_size > c.nvme.segment_bytes) {
      return Bad(where + ".block_size", FormatByteSize(p.block_size) +
                                            " is larger than tiers.nvme.segment_size (" +
                                            FormatByteSize(c.nvme.segment_bytes) + ")");
    }
    for (TierKind t : {TierKind::kDram, TierKind::kCxl, TierKind::kNvme}) {
      uint64_t& total = sum.of(t);
      total = p.capacity.of(t) > UINT64_MAX - total ? UINT64_MAX : total + p.capacity.of(t);
    }
  }
  pool::TierCapacities have{c.dram.capacity_bytes, c.cxl.capacity_bytes, c.nvme.capacity_bytes};
  for (TierKind t : {TierKind::kDram, TierKind::kCxl, TierKind::kNvme}) {
    if (sum.of(t) > have.of(t)) {
      std::string tier(pool::TierName(t));
      return Bad("tiers." + tier + ".capacity", "pools reserve " + FormatByteSize(sum.of(t)) +
                                                    " of " + tier + " in total, more than the " +
                                                    tier + " tier's capacity of " +
                                                    FormatByteSize(have.of(t)));
    }
  }
  return Status::Ok();
}

Status CheckFilesystem(const AgentConfig& c) {
  namespace fs = std::filesystem;
  std::error_code ec;
  auto st = fs::status(c.sysfs_root, ec);
  if (st.type() == fs::file_type::not_found) {
    return Bad("sysfs_root", Quote(c.sysfs_root) + " does not exist");
  }
  if (ec) return Bad("sysfs_root", Quote(c.sysfs_root) + ": " + ec.message());
  if (!fs::is_directory(st)) return Bad("sysfs_root", Quote(c.sysfs_root) + " is not a directory");

  if (c.nvme.capacity_bytes == 0) return Status::Ok();  // tier off: the directory is never used
  const fs::path& dir = c.nvme.directory;
  st = fs::status(dir, ec);
  if (st.type() != fs::file_type::not_found) {
    if (ec) return Bad("tiers.nvme.directory", Quote(dir) + ": " + ec.message());
    if (!fs::is_directory(st))
      return Bad("tiers.nvme.directory", Quote(dir) + " is not a directory");
    return Status::Ok();
  }
  if (!c.nvme.create_directory) {
    return Bad("tiers.nvme.directory",
               Quote(dir) + " does not exist (create it, or set create_directory: true)");
  }
  fs::path p = fs::absolute(dir, ec);
  if (ec) return Bad("tiers.nvme.directory", Quote(dir) + ": " + ec.message());
  while (p.has_relative_path()) {
    p = p.parent_path();
    st = fs::status(p, ec);
    if (st.type() == fs::file_type::not_found) continue;
    if (ec) return Bad("tiers.nvme.directory", "cannot check " + Quote(p) + ": " + ec.message());
    if (!fs::is_directory(st)) {
      return Bad("tiers.nvme.directory",
                 "cannot create " + Quote(dir) + ": " + Quote(p) + " is not a directory");
    }
    return Status::Ok();
  }
  return Status::Ok();  // reached "/", which exists
}

}  // namespace

bool operator==(const AgentConfig& a, const AgentConfig& b) {
  return a.node_name == b.node_name && a.log_level == b.log_level && a.sysfs_root == b.sysfs_root &&
         a.control == b.control && a.http == b.http && a.dram == b.dram && a.cxl == b.cxl &&
         a.nvme == b.nvme && a.movement == b.movement && a.kubernetes == b.kubernetes &&
         a.remote == b.remote && a.cluster == b.cluster && a.pools == b.pools &&
         a.limits == b.limits;
}

std::filesystem::path EffectiveDataSocket(const ControlConfig& control) {
  if (!control.data_socket.empty()) return control.data_socket;
  return control.socket_path.parent_path() / (control.socket_path.stem().string() + "-data.sock");
}

bool ClusterEnabled(const AgentConfig& config) {
  return !config.cluster.peers.empty() || !config.cluster.dns_name.empty();
}

AgentConfig DefaultConfig() {
  AgentConfig c;
  c.dram.capacity_bytes = 1ull << 30;
  c.nvme.directory = "/var/lib/tokenmem/nvme";
  c.nvme.capacity_bytes = 4ull << 30;
  c.nvme.create_directory = true;
  pool::PoolSpec p;
  p.name = "default";
  p.block_size = 256ull << 10;
  p.capacity.dram = 512ull << 20;
  p.capacity.nvme = 2ull << 30;
  p.eviction = pool::EvictionPolicy::kLru;
  p.ttl_seconds = 0;
  c.pools.push_back(p);
  return c;
}

Result<HostPort> ParseHostPort(std::string_view text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument("'" + std::string(text) + "' is not host:port (" + why + ")");
  };
  size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) return bad("no port");
  std::string_view host = text.substr(0, colon);
  std::string_view port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find_first_of("[]:") != std::string_view::npos) {
    return bad("an IPv6 address goes in brackets, as in [::1]:7070");
  }
  if (host.empty()) return bad("empty host; use 0.0.0.0 or [::] for every address");
  if (host.find_first_of(" \t/") != std::string_view::npos) return bad("bad host");
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 1 ||
      value > 65535) {
    return bad("the port must be a number in 1..65535");
  }
  return HostPort{std::string(host), static_cast<uint16_t>(value)};
}

LimitsConfig EffectiveLimits(const AgentConfig& c) {
  LimitsConfig l = c.limits;
  l.remote_max_connections_per_peer =
      std::min(l.remote_max_connections_per_peer, c.remote.max_connections);
  // A budget below one batch could never admit a batch.
  l.remote_max_bytes_per_connection =
      std::max(l.remote_max_bytes_per_connection, c.remote.max_batch_bytes);
  l.remote_max_bytes_per_lease =
      std::max(l.remote_max_bytes_per_lease, l.remote_max_bytes_per_connection);
  return l;
}

Status Validate(const AgentConfig& c) {
  LogLevel level;
  if (!ParseLogLevel(c.log_level, &level)) {
    return Bad("log_level", "'" + c.log_level + "' is not one of: debug, info, warn, error");
  }
  TM_RETURN_IF_ERROR(CheckNodeName(c.node_name));
  TM_RETURN_IF_ERROR(CheckControl(c.control));
  TM_RETURN_IF_ERROR(CheckHttp(c.http));
  TM_RETURN_IF_ERROR(CheckTiers(c));
  TM_RETURN_IF_ERROR(CheckMovement(c.movement));
  TM_RETURN_IF_ERROR(CheckPools(c));
  TM_RETURN_IF_ERROR(CheckKubernetes(c.kubernetes));
  TM_RETURN_IF_ERROR(CheckRemote(c.remote));
  TM_RETURN_IF_ERROR(CheckCluster(c));
  TM_RETURN_IF_ERROR(CheckLimits(c));
  return CheckFilesystem(c);
}

}  // namespace tokenmem::config
