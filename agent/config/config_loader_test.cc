#include "config/config_loader.h"

#include <gtest/gtest.h>

#include "config/config_test_util.h"

namespace tokenmem::config {
namespace {

using testing::IsInvalid;
using testing::WriteFile;
using tokenmem::testing::TempDir;

Result<AgentConfig> Load(std::string_view text) {
  return LoadConfigYaml(text, DefaultConfig(), "test.yaml");
}

Status LoadError(std::string_view text) { return Load(text).status(); }

TEST(LoadConfigYamlTest, EmptyDocumentKeepsTheBase) {
  for (const char* text : {"", "# only a comment\n", "---\n"}) {
    auto c = Load(text);
    ASSERT_TRUE(c.ok()) << c.status().ToString();
    EXPECT_TRUE(*c == DefaultConfig()) << text;
  }
}

TEST(LoadConfigYamlTest, OverlaysOnlyTheKeysGiven) {
  auto c = Load(
      "node_name: node-7\n"
      "tiers:\n"
      "  dram: {capacity: 2GiB}\n"
      "  nvme:\n"
      "    queue_depth: 64\n"
      "movement: {low_watermark: 0.05}\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  AgentConfig want = DefaultConfig();
  want.node_name = "node-7";
  want.dram.capacity_bytes = 2ull << 30;
  want.nvme.queue_depth = 64;
  want.movement.low_watermark = 0.05;
  EXPECT_TRUE(*c == want) << ToYaml(*c);
}

TEST(LoadConfigYamlTest, ReadsEveryKey) {
  auto c = Load(R"(
node_name: n1
log_level: debug
sysfs_root: /tmp/sys
control:
  socket: /tmp/agent.sock
  socket_mode: 0600
  tcp_listen: "[::]:7070"
  admin_token_file: /etc/token
  max_message_size: 64MiB
http: {listen: "0.0.0.0:9100", probe_listen: "0.0.0.0:9101"}
tiers:
  dram: {capacity: 3GiB, numa_nodes: [0, 1]}
  cxl: {capacity: 1.5GiB, numa_nodes: [2]}
  nvme: {directory: /data/nvme, capacity: 10GiB, segment_size: 1GiB, queue_depth: 128, create_directory: no}
movement: {low_watermark: 0.25, high_watermark: 0.5, interval_ms: 20, ttl_sweep_ms: 500}
pools:
  - name: a
    block_size: 2MiB
    capacity: {dram: 1GiB, cxl: 1GiB, nvme: 4GiB}
    eviction: none
    ttl_seconds: 3600
  - name: b
    capacity: {dram: 64MiB}
)");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->node_name, "n1");
  EXPECT_EQ(c->log_level, "debug");
  EXPECT_EQ(c->sysfs_root, "/tmp/sys");
  EXPECT_EQ(c->control.socket_path, "/tmp/agent.sock");
  EXPECT_EQ(c->control.socket_mode, 0600u);  // unquoted still reads as octal
  EXPECT_EQ(c->control.tcp_listen, "[::]:7070");
  EXPECT_EQ(c->control.admin_token_file, "/etc/token");
  EXPECT_EQ(c->control.max_message_bytes, 64ull << 20);
  EXPECT_EQ(c->http.listen, "0.0.0.0:9100");
  EXPECT_EQ(c->http.probe_listen, "0.0.0.0:9101");
  EXPECT_EQ(c->dram.capacity_bytes, 3ull << 30);
  EXPECT_EQ(c->dram.numa_nodes, (std::vector<int>{0, 1}));
  EXPECT_EQ(c->cxl.capacity_bytes, 3ull << 29);
  EXPECT_EQ(c->cxl.numa_nodes, (std::vector<int>{2}));
  EXPECT_EQ(c->nvme.directory, "/data/nvme");
  EXPECT_EQ(c->nvme.capacity_bytes, 10ull << 30);
  EXPECT_EQ(c->nvme.segment_bytes, 1ull << 30);
  EXPECT_EQ(c->nvme.queue_depth, 128u);
  EXPECT_FALSE(c->nvme.create_directory);
  EXPECT_EQ(c->movement.low_watermark, 0.25);
  EXPECT_EQ(c->movement.high_watermark, 0.5);
  EXPECT_EQ(c->movement.interval_ms, 20u);
  EXPECT_EQ(c->movement.ttl_sweep_ms, 500u);
  ASSERT_EQ(c->pools.size(), 2u);  // replaced the default pool
  EXPECT_EQ(c->pools[0].name, "a");
  EXPECT_EQ(c->pools[0].block_size, 2u << 20);
  EXPECT_EQ(c->pools[0].capacity.cxl, 1ull << 30);
  EXPECT_EQ(c->pools[0].capacity.nvme, 4ull << 30);
  EXPECT_EQ(c->pools[0].eviction, pool::EvictionPolicy::kNone);
  EXPECT_EQ(c->pools[0].ttl_seconds, 3600u);
  EXPECT_EQ(c->pools[1].name, "b");
  EXPECT_EQ(c->pools[1].block_size, 256u << 10);  // PoolSpec's default
  EXPECT_EQ(c->pools[1].capacity.dram, 64u << 20);
  EXPECT_EQ(c->pools[1].capacity.nvme, 0u);
  EXPECT_EQ(c->pools[1].eviction, pool::EvictionPolicy::kLru);
}

TEST(LoadConfigYamlTest, ReadsTheAdminPlaneKeys) {
  auto c = Load(
      "control:\n"
      "  data_socket: /run/tm/data/d.sock\n"
      "  data_socket_mode: \"0660\"\n"
      "  admin_uids: [1000, 1001]\n"
      "  admin_gids: [2000]\n"
      "  tls_cert_file: /etc/tm/tls.crt\n"
      "  tls_key_file: /etc/tm/tls.key\n"
      "  tls_client_ca_file: /etc/tm/ca.crt\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->control.data_socket, "/run/tm/data/d.sock");
  EXPECT_EQ(c->control.data_socket_mode, 0660u);
  EXPECT_EQ(c->control.admin_uids, (std::vector<uint32_t>{1000, 1001}));
  EXPECT_EQ(c->control.admin_gids, (std::vector<uint32_t>{2000}));
  EXPECT_EQ(c->control.tls_cert_file, "/etc/tm/tls.crt");
  EXPECT_EQ(c->control.tls_key_file, "/etc/tm/tls.key");
  EXPECT_EQ(c->control.tls_client_ca_file, "/etc/tm/ca.crt");
  // The older layout, asked for explicitly.
  auto beside = Load("control: {socket: /tmp/a/ctl.sock, data_socket: \"\"}\n");
  ASSERT_TRUE(beside.ok()) << beside.status().ToString();
  EXPECT_EQ(EffectiveDataSocket(beside->control), "/tmp/a/ctl-data.sock");
  EXPECT_TRUE(IsInvalid(LoadError("control: {admin_uids: [root]}\n"),
                        "test.yaml:1: control.admin_uids[0]: "));
  EXPECT_TRUE(IsInvalid(LoadError("control: {admin_gids: 5}\n"),
                        "control.admin_gids: expected a list of numeric gids"));
}

TEST(LoadConfigYamlTest, ReadsLimits) {
  auto c = Load(
      "limits:\n"
      "  local_max_connections: 100\n"
      "  local_max_connections_per_client: 10\n"
      "  hello_timeout_ms: 2000\n"
      "  remote_max_connections_per_peer: 16\n"
      "  remote_max_requests_per_connection: 32\n"
      "  remote_max_bytes_per_connection: 128MiB\n"
      "  remote_max_bytes_per_lease: 512MiB\n"
      "  remote_max_queued_requests: 64\n"
      "  max_pinned_blocks_per_lease: 1000\n"
      "  http_max_connections: 16\n"
      "  http_max_connections_per_peer: 4\n"
      "  http_connection_timeout_ms: 3000\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->limits.local_max_connections, 100u);
  EXPECT_EQ(c->limits.local_max_connections_per_client, 10u);
  EXPECT_EQ(c->limits.hello_timeout_ms, 2000u);
  EXPECT_EQ(c->limits.remote_max_connections_per_peer, 16u);
  EXPECT_EQ(c->limits.remote_max_requests_per_connection, 32u);
  EXPECT_EQ(c->limits.remote_max_bytes_per_connection, 128ull << 20);
  EXPECT_EQ(c->limits.remote_max_bytes_per_lease, 512ull << 20);
  EXPECT_EQ(c->limits.remote_max_queued_requests, 64u);
  EXPECT_EQ(c->limits.max_pinned_blocks_per_lease, 1000u);
  EXPECT_EQ(c->limits.http_max_connections, 16u);
  EXPECT_EQ(c->limits.http_max_connections_per_peer, 4u);
  EXPECT_EQ(c->limits.http_connection_timeout_ms, 3000u);
  EXPECT_FALSE(Load("limits:\n  max_pins: 3\n").ok());
}

TEST(LoadConfigYamlTest, EmptyPoolListRemovesTheDefaultPool) {
  auto c = Load("pools: []\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->pools.empty());
}

TEST(LoadConfigYamlTest, UnknownKeysNameTheirPathAndLine) {
  Status s = LoadError("tiers:\n  dram:\n    capcity: 1GiB\n");
  EXPECT_TRUE(
      IsInvalid(s, "test.yaml:3: tiers.dram.capcity: unknown key (known: capacity, numa_nodes)"));
  EXPECT_TRUE(IsInvalid(LoadError("nodename: x\n"), "test.yaml:1: nodename: unknown key"));
  EXPECT_TRUE(IsInvalid(LoadError("http:\n  listn: x\n"),
                        "test.yaml:2: http.listn: unknown key (known: listen, probe_listen)"));
  EXPECT_TRUE(IsInvalid(LoadError("pools:\n  - name: a\n    evict: lru\n"),
                        "test.yaml:3: pools[0].evict: unknown key"));
  EXPECT_TRUE(IsInvalid(LoadError("pools:\n  - name: a\n    capacity: {ssd: 1GiB}\n"),
                        "pools[0].capacity.ssd: unknown key (known: dram, cxl, nvme)"));
}

TEST(LoadConfigYamlTest, WrongTypesNameTheirPathAndLine) {
  EXPECT_TRUE(
      IsInvalid(LoadError("tiers: 5\n"), "test.yaml:1: tiers: expected a mapping, got a scalar"));
  EXPECT_TRUE(IsInvalid(LoadError("log_level: info\ntiers:\n  dram:\n    capacity: [1]\n"),
                        "test.yaml:4: tiers.dram.capacity: expected a byte size, got a list"));
  EXPECT_TRUE(IsInvalid(LoadError("tiers:\n  nvme: {capacity: }\n"),
                        "tiers.nvme.capacity: expected a byte size, got nothing"));
  EXPECT_TRUE(IsInvalid(LoadError("node_name: {a: 1}\n"), "node_name: expected a string"));
  EXPECT_TRUE(IsInvalid(LoadError("pools: {name: a}\n"), "pools: expected a list of pools"));
  EXPECT_TRUE(IsInvalid(LoadError("pools: [a]\n"), "pools[0]: expected a mapping"));
  EXPECT_TRUE(IsInvalid(LoadError("- a\n- b\n"), "(top level): expected a mapping, got a list"));
  EXPECT_TRUE(IsInvalid(LoadError("tiers:\n  nvme: {create_directory: maybe}\n"),
                        "tiers.nvme.create_directory: 'maybe' is not true or false"));
  EXPECT_TRUE(IsInvalid(LoadError("tiers:\n  nvme: {queue_depth: -1}\n"),
                        "tiers.nvme.queue_depth: '-1' is not a whole number"));
  EXPECT_TRUE(
      IsInvalid(LoadError("movement: {interval_ms: 99999999999}\n"), "movement.interval_ms: "));
  EXPECT_TRUE(IsInvalid(LoadError("movement: {high_watermark: lots}\n"),
                        "movement.high_watermark: 'lots' is not a number"));
  EXPECT_TRUE(IsInvalid(LoadError("tiers:\n  cxl: {numa_nodes: [0, x]}\n"),
                        "tiers.cxl.numa_nodes[1]: 'x' is not a whole number"));
  EXPECT_TRUE(IsInvalid(LoadError("control: {socket_mode: \"0698\"}\n"),
                        "control.socket_mode: '0698' is not an octal file mode"));
  EXPECT_TRUE(IsInvalid(LoadError("pools:\n  - {name: a, eviction: fifo}\n"),
                        "test.yaml:2: pools[0].eviction: eviction policy 'fifo'"));
  EXPECT_TRUE(IsInvalid(LoadError("pools:\n  - {name: a, capacity: }\n"), "pools[0].capacity: "));
}

TEST(LoadConfigYamlTest, BadSizesNameTheirPathAndLine) {
  Status s = LoadError("tiers:\n  nvme:\n    capacity: 12XB\n");
  EXPECT_TRUE(IsInvalid(s, "test.yaml:3: tiers.nvme.capacity: '12XB' is not a byte size"));
  EXPECT_TRUE(IsInvalid(LoadError("control:\n  max_message_size: -5\n"),
                        "test.yaml:2: control.max_message_size: '-5'"));
  EXPECT_TRUE(IsInvalid(LoadError("pools:\n  - name: a\n    block_size: 1.5\n"),
                        "pools[0].block_size: '1.5' is not a whole number of bytes"));
}

TEST(LoadConfigYamlTest, PlainIntegersAreBytes) {
  auto c = Load("tiers: {dram: {capacity: 1048576}}\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->dram.capacity_bytes, 1u << 20);
}

TEST(LoadConfigYamlTest, StructuralErrors) {
  EXPECT_TRUE(IsInvalid(LoadError("log_level: info\nlog_level: debug\n"),
                        "test.yaml:2: log_level: key given twice"));
  EXPECT_TRUE(IsInvalid(LoadError("pools:\n  - block_size: 4KiB\n"),
                        "test.yaml:2: pools[0]: missing key 'name'"));
  EXPECT_TRUE(IsInvalid(LoadError("a: 1\n---\nb: 2\n"), "test.yaml: holds 2 YAML documents"));
  EXPECT_TRUE(IsInvalid(LoadError("? [a, b]\n: c\n"), "keys must be plain names"));
}

TEST(LoadConfigYamlTest, SyntaxErrorsBecomeStatuses) {
  Status s = LoadError("tiers:\n  dram: {capacity: 1GiB\n");
  EXPECT_TRUE(IsInvalid(s, "test.yaml:"));
  EXPECT_TRUE(IsInvalid(s, "YAML syntax error"));
  // None of these may throw, whatever they are.
  for (const char* text :
       {"[", "{{", "*undefined_alias\n", "a: b: c\n", "\t- x\n", "!!binary 7\n", "pools: &x [*x]\n",
        "\"unterminated\n", "key: 'x\n", "%YAML 9.9\n---\n"}) {
    EXPECT_NO_THROW({
      auto r = Load(text);
      (void)r;
    }) << text;
  }
}

TEST(LoadConfigYamlTest, ExampleFileLoadsAndValidates) {
  std::filesystem::path example =
      std::filesystem::path(TOKENMEM_SOURCE_DIR) / "agent" / "config" / "example.yaml";
  auto c = LoadConfigFile(example, AgentConfig{});
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  // The example documents the defaults: keep them in step.
  EXPECT_TRUE(*c == DefaultConfig()) << ToYaml(*c);

  TempDir dir;
  c->nvme.directory = dir.path();
  Status s = Validate(*c);
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(LoadConfigFileTest, MissingFileIsAnIoErrorNamingThePath) {
  TempDir dir;
  auto c = LoadConfigFile(dir.path() / "absent.yaml", DefaultConfig());
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kIoError);
  EXPECT_NE(c.status().message().find("absent.yaml"), std::string::npos);
}

TEST(LoadConfigFileTest, ErrorsNameTheFile) {
  TempDir dir;
  auto path = WriteFile(dir, "agent.yaml", "log_level: info\nbogus: 1\n");
  auto c = LoadConfigFile(path, DefaultConfig());
  EXPECT_TRUE(IsInvalid(c.status(), path.string() + ":2: bogus: unknown key"));
}

AgentConfig Unusual() {
  AgentConfig c;
  c.node_name = "yes";  // would read as a boolean if written bare
  c.log_level = "warn";
  c.sysfs_root = "/tmp/fake sys/\"quoted\"\\back";
  c.control.socket_path = "/tmp/a: b # not a comment";
  c.control.socket_mode = 0640;
  c.control.data_socket = "";
  c.control.data_socket_mode = 0;
  c.control.admin_uids = {0, 4294967294u};
  c.control.admin_gids = {7};
  c.control.tls_cert_file = "/etc/tm/tls.crt";
  c.control.tls_key_file = "/etc/tm/tls key";
  c.control.tls_client_ca_file = "/etc/tm/ca.crt";
  c.control.tcp_listen = "[::1]:7070";
  c.control.admin_token_file = "0660";
  c.control.max_message_bytes = 1000;
  c.http.listen = "";
  c.dram = {3ull << 30, {0, 1}};
  c.cxl = {12345ull * 4096, {3}};
  c.nvme = {"relative/dir\ttab", 7ull << 30, 1ull << 30, 7, false};
  c.movement = {0.1 + 0.2, 1.0 / 3.0, 1, 4294967295u};
  pool::PoolSpec p;
  p.name = "null";
  p.block_size = 12288;
  p.capacity = {1, 0, 18446744073709551615ull};
  p.eviction = pool::EvictionPolicy::kNone;
  p.ttl_seconds = 86400;
  p.scope = pool::PoolScope::kCluster;
  p.allowed_namespaces = {"inference", "team-b"};
  c.pools = {p, pool::PoolSpec{}};
  c.remote = {"[::]:0", 1, 64, 1ull << 30};
  c.cluster.peers = {"10.0.0.1:7080", "[fd00::1]:7080", "yes:1"};
  c.cluster.dns_name = "tokenmem-peers.tokenmem.svc.cluster.local:7080";
  c.cluster.heartbeat_interval_ms = 250;
  c.cluster.heartbeat_timeout_ms = 4294967295u;
  c.cluster.dns_refresh_ms = 1;
  c.cluster.secret_file = "/etc/tokenmem/cluster secret";
  c.cluster.forward_queue_blocks = 1u << 20;
  return c;
}

TEST(ToYamlTest, RoundTripsToAnEqualConfig) {
  for (const AgentConfig& original : {DefaultConfig(), AgentConfig{}, Unusual()}) {
    std::string yaml = ToYaml(original);
    for (const AgentConfig& base : {DefaultConfig(), AgentConfig{}}) {
      auto back = LoadConfigYaml(yaml, base, "round-trip");
      ASSERT_TRUE(back.ok()) << back.status().ToString() << "\n" << yaml;
      EXPECT_TRUE(*back == original) << yaml << "\n---\n" << ToYaml(*back);
    }
  }
}

TEST(ToYamlTest, WritesTheDocumentedSchema) {
  std::string yaml = ToYaml(DefaultConfig());
  for (const char* line : {"log_level: \"info\"\n",
                           "  socket: \"/run/tokenmem/agent.sock\"\n",
                           "  socket_mode: \"0600\"\n",
                           "  data_socket: \"/run/tokenmem/data/agent-data.sock\"\n",
                           "  data_socket_mode: \"0666\"\n",
                           "  admin_uids: []\n",
                           "  tls_client_ca_file: \"\"\n",
                           "  max_message_size: 256MiB\n",
                           "http:\n  listen: \"127.0.0.1:9464\"\n",
                           "    capacity: 1GiB\n",
                           "    capacity: 0\n",
                           "    segment_size: 256MiB\n",
                           "    create_directory: true\n",
                           "  low_watermark: 0.1\n",
                           "  - name: \"default\"\n",
                           "    capacity: {dram: 512MiB, cxl: 0, nvme: 2GiB}\n",
                           "    eviction: lru\n",
                           "    scope: local\n",
                           "remote:\n  listen: \"\"\n",
                           "  max_batch_size: 64MiB\n",
                           "cluster:\n  peers: []\n",
                           "  heartbeat_timeout_ms: 3000\n",
                           "  forward_queue_blocks: 1024\n"}) {
    EXPECT_NE(yaml.find(line), std::string::npos) << line << "\n" << yaml;
  }
  EXPECT_NE(ToYaml(AgentConfig{}).find("pools: []\n"), std::string::npos);
}

}  // namespace
}  // namespace tokenmem::config

namespace tokenmem::config {
namespace {

TEST(LoadConfigYamlTest, ReadsAndChecksTheKubernetesSection) {
  auto c = Load(
      "kubernetes:\n"
      "  enabled: true\n"
      "  api_server: http://127.0.0.1:8001\n"
      "  token_file: /t\n"
      "  ca_file: /c\n"
      "  kubeconfig: /k\n"
      "  node_status_interval_s: 5\n"
      "  backoff_initial_ms: 100\n"
      "  backoff_max_ms: 1000\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_TRUE(c->kubernetes.enabled);
  EXPECT_EQ(c->kubernetes.api_server, "http://127.0.0.1:8001");
  EXPECT_EQ(c->kubernetes.token_file, "/t");
  EXPECT_EQ(c->kubernetes.ca_file, "/c");
  EXPECT_EQ(c->kubernetes.kubeconfig, "/k");
  EXPECT_EQ(c->kubernetes.node_status_interval_s, 5u);
  EXPECT_EQ(c->kubernetes.backoff_initial_ms, 100u);
  EXPECT_EQ(c->kubernetes.backoff_max_ms, 1000u);
  auto back = Load(ToYaml(*c));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == *c);
  EXPECT_FALSE(DefaultConfig().kubernetes.enabled);

  AgentConfig bad = DefaultConfig();
  bad.kubernetes.enabled = true;
  Status st = Validate(bad);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("kubernetes.api_server"), std::string::npos) << st.ToString();
  bad.kubernetes.api_server = "ftp://x";
  EXPECT_NE(Validate(bad).message().find("kubernetes.api_server"), std::string::npos);
  bad.kubernetes.api_server = "http://x:1";
  bad.kubernetes.backoff_max_ms = 1;
  EXPECT_NE(Validate(bad).message().find("kubernetes.backoff_max_ms"), std::string::npos);
  EXPECT_FALSE(Load("kubernetes: {enabled: maybe}\n").ok());
  EXPECT_FALSE(Load("kubernetes: {server: x}\n").ok());
}

}  // namespace
}  // namespace tokenmem::config

namespace tokenmem::config {
namespace {

TEST(LoadConfigYamlTest, ReadsTheRemoteAndClusterSections) {
  auto c = Load(
      "remote:\n"
      "  listen: \"0.0.0.0:7080\"\n"
      "  max_connections: 64\n"
      "  workers: 8\n"
      "  max_batch_size: 16MiB\n"
      "cluster:\n"
      "  peers: [\"10.0.0.2:7080\", \"[fd00::3]:7080\"]\n"
      "  dns_name: peers.tokenmem.svc:7080\n"
      "  heartbeat_interval_ms: 200\n"
      "  heartbeat_timeout_ms: 900\n"
      "  dns_refresh_ms: 5000\n"
      "  secret_file: /etc/tokenmem/secret\n"
      "  forward_queue_blocks: 4096\n"
      "pools:\n"
      "  - {name: shared, capacity: {dram: 1GiB}, scope: cluster}\n"
      "  - {name: mine, capacity: {dram: 1GiB}, allowed_namespaces: [b, a, b]}\n");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->remote.listen, "0.0.0.0:7080");
  EXPECT_EQ(c->remote.max_connections, 64u);
  EXPECT_EQ(c->remote.workers, 8u);
  EXPECT_EQ(c->remote.max_batch_bytes, 16ull << 20);
  EXPECT_EQ(c->cluster.peers, (std::vector<std::string>{"10.0.0.2:7080", "[fd00::3]:7080"}));
  EXPECT_EQ(c->cluster.dns_name, "peers.tokenmem.svc:7080");
  EXPECT_EQ(c->cluster.heartbeat_interval_ms, 200u);
  EXPECT_EQ(c->cluster.heartbeat_timeout_ms, 900u);
  EXPECT_EQ(c->cluster.dns_refresh_ms, 5000u);
  EXPECT_EQ(c->cluster.secret_file, "/etc/tokenmem/secret");
  EXPECT_EQ(c->cluster.forward_queue_blocks, 4096u);
  ASSERT_EQ(c->pools.size(), 2u);
  EXPECT_EQ(c->pools[0].scope, pool::PoolScope::kCluster);
  EXPECT_EQ(c->pools[1].scope, pool::PoolScope::kLocal);
  EXPECT_TRUE(c->pools[0].allowed_namespaces.empty());
  EXPECT_EQ(c->pools[1].allowed_namespaces, (std::vector<std::string>{"a", "b"}));
  auto back = Load(ToYaml(*c));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(*back == *c);

  auto empty = Load("cluster: {peers: []}\n");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_TRUE(empty->cluster.peers.empty());
  EXPECT_TRUE(IsInvalid(Load("cluster: {peers: \"a:1\"}\n").status(),
                        "cluster.peers: expected a list of host:port, got a scalar"));
  EXPECT_TRUE(IsInvalid(Load("cluster: {peers: [[a]]}\n").status(), "cluster.peers[0]"));
  EXPECT_TRUE(IsInvalid(Load("cluster: {peer: []}\n").status(), "cluster.peer: unknown key"));
  EXPECT_TRUE(IsInvalid(Load("remote: {workers: -1}\n").status(), "remote.workers"));
  EXPECT_TRUE(IsInvalid(Load("pools:\n  - {name: p, scope: node}\n").status(),
                        "pools[0].scope: pool scope 'node' is not one of: local, cluster"));
  EXPECT_TRUE(IsInvalid(Load("pools:\n  - {name: p, allowed_namespaces: [Team_A]}\n").status(),
                        "pools[0].allowed_namespaces: 'Team_A' is not a namespace name"));
}

}  // namespace
}  // namespace tokenmem::config
