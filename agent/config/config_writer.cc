// AgentConfig -> YAML, written by hand rather than through YAML::Emitter so
// that the layout matches docs/configuration.md and nothing can throw.
#include <sstream>

#include "config/config_loader.h"
#include "config/config_values.h"
#include "tokenmem/common/units.h"

namespace tokenmem::config {
namespace {

// A YAML double-quoted scalar: always quoted, so that text such as "yes",
// "0660" or "" stays a string.
std::string Quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (u < 0x20 || u == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\x";
          out += kHex[u >> 4];
          out += kHex[u & 15];
        } else {
          out += c;
        }
    }
  }
  out += '"';
  return out;
}

std::string Size(uint64_t bytes) { return bytes == 0 ? "0" : FormatByteSize(bytes); }

std::string IntList(const std::vector<int>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i != 0) out += ", ";
    out += std::to_string(v[i]);
  }
  return out + "]";
}

std::string IdList(const std::vector<uint32_t>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i != 0) out += ", ";
    out += std::to_string(v[i]);
  }
  return out + "]";
}

std::string StringList(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i != 0) out += ", ";
    out += Quoted(v[i]);
  }
  return out + "]";
}

}  // namespace

std::string ToYaml(const AgentConfig& c) {
  std::ostringstream o;
  o << "node_name: " << Quoted(c.node_name) << "\n"
    << "log_level: " << Quoted(c.log_level) << "\n"
    << "sysfs_root: " << Quoted(c.sysfs_root.string()) << "\n"
    << "control:\n"
    << "  socket: " << Quoted(c.control.socket_path.string()) << "\n"
    << "  socket_mode: \"" << FormatOctalMode(c.control.socket_mode) << "\"\n"
    << "  data_socket: " << Quoted(c.control.data_socket.string()) << "\n"
    << "  data_socket_mode: \"" << FormatOctalMode(c.control.data_socket_mode) << "\"\n"
    << "  admin_uids: " << IdList(c.control.admin_uids) << "\n"
    << "  admin_gids: " << IdList(c.control.admin_gids) << "\n"
    << "  tcp_listen: " << Quoted(c.control.tcp_listen) << "\n"
    << "  admin_token_file: " << Quoted(c.control.admin_token_file.string()) << "\n"
    << "  tls_cert_file: " << Quoted(c.control.tls_cert_file.string()) << "\n"
    << "  tls_key_file: " << Quoted(c.control.tls_key_file.string()) << "\n"
    << "  tls_client_ca_file: " << Quoted(c.control.tls_client_ca_file.string()) << "\n"
    << "  max_message_size: " << Size(c.control.max_message_bytes) << "\n"
    << "http:\n"
    << "  listen: " << Quoted(c.http.listen) << "\n"
    << "tiers:\n";
  for (auto [name, tier] : {std::pair{"dram", &c.dram}, std::pair{"cxl", &c.cxl}}) {
    o << "  " << name << ":\n"
      << "    capacity: " << Size(tier->capacity_bytes) << "\n"
      << "    numa_nodes: " << IntList(tier->numa_nodes) << "\n";
  }
  o << "  nvme:\n"
    << "    directory: " << Quoted(c.nvme.directory.string()) << "\n"
    << "    capacity: " << Size(c.nvme.capacity_bytes) << "\n"
    << "    segment_size: " << Size(c.nvme.segment_bytes) << "\n"
    << "    queue_depth: " << c.nvme.queue_depth << "\n"
    << "    create_directory: " << (c.nvme.create_directory ? "true" : "false") << "\n"
    << "movement:\n"
    << "  low_watermark: " << FormatDouble(c.movement.low_watermark) << "\n"
    << "  high_watermark: " << FormatDouble(c.movement.high_watermark) << "\n"
    << "  interval_ms: " << c.movement.interval_ms << "\n"
    << "  ttl_sweep_ms: " << c.movement.ttl_sweep_ms << "\n"
    << "kubernetes:\n"
    << "  enabled: " << (c.kubernetes.enabled ? "true" : "false") << "\n"
    << "  api_server: " << Quoted(c.kubernetes.api_server) << "\n"
    << "  token_file: " << Quoted(c.kubernetes.token_file.string()) << "\n"
    << "  ca_file: " << Quoted(c.kubernetes.ca_file.string()) << "\n"
    << "  kubeconfig: " << Quoted(c.kubernetes.kubeconfig.string()) << "\n"
    << "  node_status_interval_s: " << c.kubernetes.node_status_interval_s << "\n"
    << "  backoff_initial_ms: " << c.kubernetes.backoff_initial_ms << "\n"
    << "  backoff_max_ms: " << c.kubernetes.backoff_max_ms << "\n"
    << "remote:\n"
    << "  listen: " << Quoted(c.remote.listen) << "\n"
    << "  max_connections: " << c.remote.max_connections << "\n"
    << "  workers: " << c.remote.workers << "\n"
    << "  max_batch_size: " << Size(c.remote.max_batch_bytes) << "\n"
    << "cluster:\n"
    << "  peers: " << StringList(c.cluster.peers) << "\n"
    << "  dns_name: " << Quoted(c.cluster.dns_name) << "\n"
    << "  heartbeat_interval_ms: " << c.cluster.heartbeat_interval_ms << "\n"
    << "  heartbeat_timeout_ms: " << c.cluster.heartbeat_timeout_ms << "\n"
    << "  dns_refresh_ms: " << c.cluster.dns_refresh_ms << "\n"
    << "  secret_file: " << Quoted(c.cluster.secret_file.string()) << "\n"
    << "  forward_queue_blocks: " << c.cluster.forward_queue_blocks << "\n"
    << "limits:\n"
    << "  local_max_connections: " << c.limits.local_max_connections << "\n"
    << "  local_max_connections_per_client: " << c.limits.local_max_connections_per_client << "\n"
    << "  hello_timeout_ms: " << c.limits.hello_timeout_ms << "\n"
    << "  remote_max_connections_per_peer: " << c.limits.remote_max_connections_per_peer << "\n"
    << "  remote_max_requests_per_connection: " << c.limits.remote_max_requests_per_connection
    << "\n"
    << "  remote_max_bytes_per_connection: " << Size(c.limits.remote_max_bytes_per_connection)
    << "\n"
    << "  remote_max_bytes_per_lease: " << Size(c.limits.remote_max_bytes_per_lease) << "\n"
    << "  remote_max_queued_requests: " << c.limits.remote_max_queued_requests << "\n"
    << "  max_pinned_blocks_per_lease: " << c.limits.max_pinned_blocks_per_lease << "\n"
    << "  http_max_connections: " << c.limits.http_max_connections << "\n"
    << "  http_max_connections_per_peer: " << c.limits.http_max_connections_per_peer << "\n"
    << "  http_connection_timeout_ms: " << c.limits.http_connection_timeout_ms << "\n";
  if (c.pools.empty()) {
    o << "pools: []\n";
  } else {
    o << "pools:\n";
  }
  for (const pool::PoolSpec& p : c.pools) {
    o << "  - name: " << Quoted(p.name) << "\n"
      << "    block_size: " << Size(p.block_size) << "\n"
      << "    capacity: {dram: " << Size(p.capacity.dram) << ", cxl: " << Size(p.capacity.cxl)
      << ", nvme: " << Size(p.capacity.nvme) << "}\n"
      << "    eviction: " << pool::EvictionPolicyName(p.eviction) << "\n"
      << "    ttl_seconds: " << p.ttl_seconds << "\n"
      << "    scope: " << pool::PoolScopeName(p.scope) << "\n";
    if (!p.allowed_namespaces.empty()) {
      o << "    allowed_namespaces: [";
      for (size_t i = 0; i < p.allowed_namespaces.size(); ++i) {
        o << (i ? ", " : "") << Quoted(p.allowed_namespaces[i]);
      }
      o << "]\n";
    }
  }
  return o.str();
}

}  // namespace tokenmem::config
