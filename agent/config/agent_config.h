// AgentConfig: everything tokenmem-agent is told at start, its embedded
// default and its checks.
//
// The structs are plain values: copy them freely; nothing here is shared
// between threads. DefaultConfig() is the configuration the agent runs with
// when no file and no flags are given (the standalone case). Field defaults of
// the structs themselves are the "nothing configured" values (tiers off, no
// pools); DefaultConfig() fills in the standalone tiers and pool.
// docs/configuration.md lists every key, its YAML path and its default.
#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "pool/pool_spec.h"
#include "tokenmem/common/status.h"

namespace tokenmem::config {

inline constexpr uint64_t kMinSegmentBytes = 1ull << 20;
inline constexpr uint32_t kMaxQueueDepth = 4096;
inline constexpr int kMaxNumaNode = 1023;  // the kernel's largest MAX_NUMNODES, minus one
inline constexpr uint64_t kMinMessageBytes = 4096;
inline constexpr uint64_t kMaxMessageBytes = (2ull << 30) - 1;  // gRPC sizes are an int

// The control API is the node admin's plane; the data socket is the only
// thing tenant pods reach (docs/security-admin-plane.md).
struct ControlConfig {
  std::filesystem::path socket_path = "/run/tokenmem/agent.sock";
  uint32_t socket_mode = 0600;  // YAML/flag given as an octal string "0600"
  // The local data socket (the SDK's shared-memory path), in a directory of
  // its own so that the directory mounted into pods never holds the control
  // socket. Empty: "<socket stem>-data.sock" beside the control socket (the
  // older layout, still served; EffectiveDataSocket).
  std::filesystem::path data_socket = "/run/tokenmem/data/agent-data.sock";
  // Tenants of any uid connect; the lease secret is what authenticates them.
  uint32_t data_socket_mode = 0666;
  // Unix-socket callers admitted to the control API besides uid 0: these
  // uids, and callers whose primary or supplementary group is one of these
  // gids (read from the connection with SO_PEERCRED / SO_PEERGROUPS).
  std::vector<uint32_t> admin_uids;
  std::vector<uint32_t> admin_gids;
  std::string tcp_listen;  // "host:port"; empty = off (default)
  std::filesystem::path
      admin_token_file;  // required when tcp_listen is set; must exist and be non-empty
  // TLS for the TCP listener (PEM files): certificate and key together; with
  // tls_client_ca_file every caller must also present a certificate signed
  // by that CA (mTLS). All empty: plain TCP, admin token only.
  std::filesystem::path tls_cert_file;
  std::filesystem::path tls_key_file;
  std::filesystem::path tls_client_ca_file;
  uint64_t max_message_bytes = 256ull << 20;

  bool operator==(const ControlConfig&) const = default;
};

struct HttpConfig {
  // "host:port" of the HTTP server (/metrics, /healthz, /readyz, /v1/status);
  // port 0 picks a free port (logged); empty = off.
  std::string listen = "127.0.0.1:9464";
  // "host:port" of a second port that answers only /healthz and /readyz,
  // one thread polling every connection with a short deadline, so that slow
  // clients of `listen` cannot starve the kubelet's probes; empty = off.
  std::string probe_listen;

  bool operator==(const HttpConfig&) const = default;
};

struct MemoryTierConfig {
  uint64_t capacity_bytes = 0;  // 0 = tier off; else a multiple of 4KiB
  std::vector<int> numa_nodes;  // empty = every node of that kind

  bool operator==(const MemoryTierConfig&) const = default;
};

struct NvmeTierConfig {
  std::filesystem::path directory = "/var/lib/tokenmem/nvme";
  uint64_t capacity_bytes = 0;  // 0 = tier off; else a multiple of segment_bytes
  uint64_t segment_bytes = 256ull << 20;
  uint32_t queue_depth = 32;
  bool create_directory =
      false;  // true: create the directory (and parents) at start; false: it must exist

  bool operator==(const NvmeTierConfig&) const = default;
};

struct MovementConfig {
  double low_watermark =
      0.10;  // free fraction of a memory tier below which background demotion starts
  double high_watermark = 0.20;  // ...and the free fraction it restores
  uint32_t interval_ms = 10;     // how often the mover checks
  uint32_t ttl_sweep_ms = 1000;  // how often expired blocks are swept

  bool operator==(const MovementConfig&) const = default;
};

// The Kubernetes reconciler (TokenMemoryPool -> pools, TokenMemoryNode
// status); docs/kubernetes.md. The node is named by AgentConfig::node_name.
struct KubernetesConfig {
  bool enabled = false;
  std::string api_server;  // "http://host:port"; empty: read from kubeconfig
  std::filesystem::path token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::filesystem::path ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::filesystem::path kubeconfig;  // used when api_server is empty
  uint32_t node_status_interval_s = 10;
  uint32_t backoff_initial_ms = 500;
  uint32_t backoff_max_ms = 30000;

  bool operator==(const KubernetesConfig&) const = default;
};

inline constexpr uint32_t kMaxRemoteConnections = 65536;
inline constexpr uint32_t kMaxRemoteWorkers = 64;
inline constexpr uint64_t kMinRemoteBatchBytes = 1ull << 20;
inline constexpr uint64_t kMaxRemoteBatchBytes = 1ull << 30;
inline constexpr uint32_t kMaxForwardQueueBlocks = 1u << 20;

// The remote data server (UCX): remote clients and peer agents reach the
// pools through it; docs/configuration.md.
struct RemoteConfig {
  // "host:port" of the UCX data listener; port 0 picks a free port (logged); empty = off.
  std::string listen;
  uint32_t max_connections = 1024;         // 1..65536
  uint32_t workers = 2;                    // threads that execute requests, 1..64
  uint64_t max_batch_bytes = 64ull << 20;  // largest payload of one request, 1MiB..1GiB

  bool operator==(const RemoteConfig&) const = default;
};

// Cluster membership and key ownership (docs/cluster.md). The cluster is on
// when peers or dns_name is set (ClusterEnabled).
struct ClusterConfig {
  std::vector<std::string> peers;  // static "host:port" list of peer agents' remote.listen
  std::string dns_name;            // "name:port": a DNS name whose A/AAAA records are the peers
  uint32_t heartbeat_interval_ms = 1000;
  uint32_t heartbeat_timeout_ms = 3000;  // a peer is live while its last good ping is younger
  uint32_t dns_refresh_ms = 10000;
  // Shared secret the agents present to each other; required (exists, non-empty) when on.
  std::filesystem::path secret_file;
  uint32_t forward_queue_blocks = 1024;  // bounded queue of puts forwarded to owners, 1..1M

  bool operator==(const ClusterConfig&) const = default;
};

// What a tenant (a pod holding a lease, perhaps hostile) may use of the
// agent; docs/limits.md says what each limit protects and what the caller
// gets when it is hit. Ranges are checked by Validate.
struct LimitsConfig {
  uint32_t local_max_connections = 1024;              // data socket connections, 1..65536
  uint32_t local_max_connections_per_client = 64;     // per process (pid, uid), 1..local_max
  uint32_t hello_timeout_ms = 5000;                   // HELLO deadline, local and UCX, 100..600000
  uint32_t remote_max_connections_per_peer = 256;     // per address, 1..remote.max_connections
  uint32_t remote_max_requests_per_connection = 256;  // in flight, 1..65536
  uint64_t remote_max_bytes_per_connection = 256ull << 20;  // buffered, >= max_batch_size
  uint64_t remote_max_bytes_per_lease = 1ull << 30;         // buffered, >= per connection
  uint32_t remote_max_queued_requests = 4096;               // executor queue, 1..1048576
  uint32_t max_pinned_blocks_per_lease = 65536;             // 1..2^31
  uint32_t http_max_connections = 32;                       // 2..1024
  uint32_t http_max_connections_per_peer = 8;               // 1..http_max_connections - 1
  uint32_t http_connection_timeout_ms = 10000;              // 100..600000

  bool operator==(const LimitsConfig&) const = default;
};

struct AgentConfig {
  std::string node_name;           // default: the host name (filled by ApplyEnvironmentDefaults)
  std::string log_level = "info";  // debug|info|warn|error
  std::filesystem::path sysfs_root = "/sys";
  ControlConfig control;
  HttpConfig http;
  MemoryTierConfig dram;
  MemoryTierConfig cxl;
  NvmeTierConfig nvme;
  MovementConfig movement;
  std::vector<pool::PoolSpec> pools;  // pools created at start (if absent)
  KubernetesConfig kubernetes;
  RemoteConfig remote;
  ClusterConfig cluster;
  LimitsConfig limits;
};

// The data socket the agent serves: control.data_socket, or when that is
// empty "<socket stem>-data.sock" beside control.socket
// (/run/tokenmem/agent.sock -> /run/tokenmem/agent-data.sock).
std::filesystem::path EffectiveDataSocket(const ControlConfig& control);

// True when cluster.peers or cluster.dns_name is set.
bool ClusterEnabled(const AgentConfig& config);

bool operator==(const AgentConfig& a, const AgentConfig& b);

// The embedded default: DRAM 1GiB, no CXL, NVMe 4GiB under /var/lib/tokenmem/nvme with
// create_directory=true, control socket /run/tokenmem/agent.sock (its parent directory is created
// by the agent), HTTP on 127.0.0.1:9464, one pool "default" (block_size 256KiB, dram 512MiB,
// nvme 2GiB, lru, no TTL).
AgentConfig DefaultConfig();

// "host:port" split; the host keeps no brackets ("[::1]:7070" gives "::1").
struct HostPort {
  std::string host;
  uint16_t port = 0;
};
// kInvalidArgument unless the text is host:port with a non-empty host (IPv6 addresses in
// brackets) and a decimal port in 1..65535.
Result<HostPort> ParseHostPort(std::string_view text);

// Checks every field; the first problem found is returned as kInvalidArgument whose message
// starts with the YAML path of the field ("tiers.nvme.capacity: ..."). OK when the agent can
// start with this configuration as far as the configuration alone can tell.
//
// Value checks: log_level known; node_name (empty allowed: the host name fills it) without
// spaces, control characters or '/'; control.socket non-empty and short enough for a Unix
// socket address; the effective data socket short enough too and not the control socket;
// socket_mode and data_socket_mode <= 0777; admin_uids/admin_gids below 2^32-1 (-1 means "no
// id" to the kernel); max_message_size 4KiB..2GiB-1; tcp_listen (when set) is host:port with
// port 1..65535, and then admin_token_file is set, is a regular file and is non-empty;
// tls_cert_file and tls_key_file set together, tls_client_ca_file only with them, any of them
// only with tcp_listen, each a non-empty regular file; http.listen (when set) is host:port with
// port 0..65535; memory tier capacities multiples of 4KiB; NUMA nodes 0..1023, none listed twice or
// in both memory tiers; nvme segment_size >= 1MiB and a multiple of 4KiB, capacity a multiple of
// segment_size, queue_depth 1..4096; kubernetes (when enabled): api_server or kubeconfig set,
// api_server starting with http:// or https://, node_status_interval_s and
// backoff_initial_ms >= 1, backoff_max_ms >= backoff_initial_ms; watermarks 0 < low < high < 1;
// interval_ms and ttl_sweep_ms >= 1; remote.listen (when set) host:port with port 0..65535,
// max_connections 1..65536, workers 1..64, max_batch_size 1MiB..1GiB; cluster: peers
// host:port (port 1..65535) listed once each, dns_name (when set) host:port,
// heartbeat_interval_ms >= 1, heartbeat_timeout_ms > heartbeat_interval_ms, dns_refresh_ms >= 1,
// forward_queue_blocks 1..1M, and when ClusterEnabled: remote.listen set and secret_file set, a
// regular file and non-empty; pools valid (pool::ValidatePoolSpec), unique names, blocks
// that use NVMe no larger than a segment, and the sum of pool capacities per tier <= that tier's
// capacity (the message names the tier, the sum and the capacity). Filesystem checks (run last):
// sysfs_root is a directory; when the NVMe tier is on, nvme.directory is a directory, or with
// create_directory its nearest existing ancestor is. Reads the filesystem only; changes nothing.
Status Validate(const AgentConfig& config);

// The limits as enforced: the per-address UCX cap at most
// remote.max_connections, the byte budgets at least one batch
// (remote.max_batch_size) and the per-lease one at least the per-connection one.
LimitsConfig EffectiveLimits(const AgentConfig& config);

}  // namespace tokenmem::config
