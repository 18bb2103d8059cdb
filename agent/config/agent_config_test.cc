#include "config/agent_config.h"

#include <gtest/gtest.h>

#include <functional>

#include "config/config_test_util.h"

namespace tokenmem::config {
namespace {

using testing::IsInvalid;
using testing::WriteFile;
using tokenmem::testing::TempDir;

class ValidateTest : public ::testing::Test {
 protected:
  // DefaultConfig() with its NVMe directory inside the temporary directory.
  AgentConfig Base() const {
    AgentConfig c = DefaultConfig();
    c.nvme.directory = dir_.path();
    return c;
  }
  Status ValidateWith(const std::function<void(AgentConfig&)>& edit) const {
    AgentConfig c = Base();
    edit(c);
    return Validate(c);
  }
  pool::PoolSpec Pool(std::string name, uint64_t dram, uint64_t nvme) const {
    pool::PoolSpec p;
    p.name = std::move(name);
    p.capacity.dram = dram;
    p.capacity.nvme = nvme;
    return p;
  }

  TempDir dir_;
};

TEST(DefaultConfigTest, HoldsTheDocumentedValues) {
  AgentConfig c = DefaultConfig();
  EXPECT_EQ(c.node_name, "");
  EXPECT_EQ(c.log_level, "info");
  EXPECT_EQ(c.sysfs_root, "/sys");
  EXPECT_EQ(c.control.socket_path, "/run/tokenmem/agent.sock");
  EXPECT_EQ(c.control.socket_mode, 0600u);
  EXPECT_EQ(c.control.data_socket, "/run/tokenmem/data/agent-data.sock");
  EXPECT_EQ(c.control.data_socket_mode, 0666u);
  EXPECT_TRUE(c.control.admin_uids.empty());
  EXPECT_TRUE(c.control.admin_gids.empty());
  EXPECT_EQ(c.control.tls_cert_file, "");
  EXPECT_EQ(c.control.tcp_listen, "");
  EXPECT_EQ(c.control.max_message_bytes, 256ull << 20);
  EXPECT_EQ(c.http.listen, "127.0.0.1:9464");
  EXPECT_EQ(c.dram.capacity_bytes, 1ull << 30);
  EXPECT_EQ(c.cxl.capacity_bytes, 0u);
  EXPECT_EQ(c.nvme.directory, "/var/lib/tokenmem/nvme");
  EXPECT_EQ(c.nvme.capacity_bytes, 4ull << 30);
  EXPECT_EQ(c.nvme.segment_bytes, 256ull << 20);
  EXPECT_EQ(c.nvme.queue_depth, 32u);
  EXPECT_TRUE(c.nvme.create_directory);
  EXPECT_EQ(c.movement.low_watermark, 0.10);
  EXPECT_EQ(c.movement.high_watermark, 0.20);
  EXPECT_EQ(c.movement.interval_ms, 10u);
  EXPECT_EQ(c.movement.ttl_sweep_ms, 1000u);
  ASSERT_EQ(c.pools.size(), 1u);
  EXPECT_EQ(c.pools[0].name, "default");
  EXPECT_EQ(c.pools[0].block_size, 256u << 10);
  EXPECT_EQ(c.pools[0].capacity.dram, 512ull << 20);
  EXPECT_EQ(c.pools[0].capacity.cxl, 0u);
  EXPECT_EQ(c.pools[0].capacity.nvme, 2ull << 30);
  EXPECT_EQ(c.pools[0].eviction, pool::EvictionPolicy::kLru);
  EXPECT_EQ(c.pools[0].ttl_seconds, 0u);
  EXPECT_EQ(c.pools[0].scope, pool::PoolScope::kLocal);
  EXPECT_EQ(c.remote.listen, "");
  EXPECT_EQ(c.remote.max_connections, 1024u);
  EXPECT_EQ(c.remote.workers, 2u);
  EXPECT_EQ(c.remote.max_batch_bytes, 64ull << 20);
  EXPECT_TRUE(c.cluster.peers.empty());
  EXPECT_EQ(c.cluster.dns_name, "");
  EXPECT_EQ(c.cluster.heartbeat_interval_ms, 1000u);
  EXPECT_EQ(c.cluster.heartbeat_timeout_ms, 3000u);
  EXPECT_EQ(c.cluster.dns_refresh_ms, 10000u);
  EXPECT_EQ(c.cluster.secret_file, "");
  EXPECT_EQ(c.cluster.forward_queue_blocks, 1024u);
  EXPECT_FALSE(ClusterEnabled(c));
}

TEST(DefaultConfigTest, EqualityComparesEveryPart) {
  AgentConfig a = DefaultConfig();
  EXPECT_TRUE(a == DefaultConfig());
  AgentConfig b = a;
  b.pools[0].ttl_seconds = 5;
  EXPECT_FALSE(a == b);
  b = a;
  b.pools.push_back(b.pools[0]);
  EXPECT_FALSE(a == b);
  b = a;
  b.cxl.numa_nodes = {2};
  EXPECT_FALSE(a == b);
  b = a;
  b.movement.high_watermark = 0.3;
  EXPECT_FALSE(a == b);
  b = a;
  b.http.listen = "";
  EXPECT_FALSE(a == b);
  b = a;
  b.pools[0].scope = pool::PoolScope::kCluster;
  EXPECT_FALSE(a == b);
  b = a;
  b.remote.workers = 3;
  EXPECT_FALSE(a == b);
  b = a;
  b.cluster.peers = {"a:1"};
  EXPECT_FALSE(a == b);
  b = a;
  b.cluster.secret_file = "/s";
  EXPECT_FALSE(a == b);
}

TEST(ClusterEnabledTest, PeersOrDnsName) {
  AgentConfig c = DefaultConfig();
  EXPECT_FALSE(ClusterEnabled(c));
  c.cluster.peers = {"a:1"};
  EXPECT_TRUE(ClusterEnabled(c));
  c.cluster.peers.clear();
  c.cluster.dns_name = "tokenmem-peers.ns.svc:7080";
  EXPECT_TRUE(ClusterEnabled(c));
}

TEST_F(ValidateTest, LimitValues) {
  EXPECT_TRUE(ValidateWith([](AgentConfig&) {}).ok());
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.limits.local_max_connections = 0; }),
                        "limits.local_max_connections: 0 is outside 1..65536"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.limits.local_max_connections = 10;
                          c.limits.local_max_connections_per_client = 11;
                        }),
                        "limits.local_max_connections_per_client: 11 is outside 1..10"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.limits.hello_timeout_ms = 99; }),
                        "limits.hello_timeout_ms"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.limits.remote_max_connections_per_peer = 0; }),
                "limits.remote_max_connections_per_peer: 0 is outside 1..65536"));
  EXPECT_TRUE(IsInvalid(
      ValidateWith([](AgentConfig& c) { c.limits.remote_max_bytes_per_connection = 1ull << 19; }),
      "limits.remote_max_bytes_per_connection: 512KiB is less than 1MiB"));
  EXPECT_TRUE(IsInvalid(
      ValidateWith([](AgentConfig& c) { c.limits.remote_max_bytes_per_lease = 1ull << 19; }),
      "limits.remote_max_bytes_per_lease"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.limits.remote_max_queued_requests = 0; }),
                "limits.remote_max_queued_requests"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.limits.max_pinned_blocks_per_lease = 0; }),
                "limits.max_pinned_blocks_per_lease"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.limits.http_max_connections = 1; }),
                        "limits.http_max_connections"));
  // One address never gets every HTTP connection: the probes keep room.
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.limits.http_max_connections = 8;
                          c.limits.http_max_connections_per_peer = 8;
                        }),
                        "limits.http_max_connections_per_peer: 8 is outside 1..7"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.limits.http_connection_timeout_ms = 600001; }),
                "limits.http_connection_timeout_ms"));
}

TEST_F(ValidateTest, RemoteSettingsBoundTheirLimits) {
  // remote.* alone never invalidates the default limits.
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) {
                c.remote.max_connections = 16;
                c.remote.max_batch_bytes = 1ull << 30;
              }).ok());
  AgentConfig c;
  c.remote.max_connections = 16;
  c.remote.max_batch_bytes = 1ull << 30;
  const LimitsConfig l = EffectiveLimits(c);
  EXPECT_EQ(l.remote_max_connections_per_peer, 16u);
  EXPECT_EQ(l.remote_max_bytes_per_connection, 1ull << 30);
  EXPECT_EQ(l.remote_max_bytes_per_lease, 1ull << 30);
  c.remote.max_batch_bytes = 1ull << 20;
  EXPECT_EQ(EffectiveLimits(c).remote_max_bytes_per_connection,
            c.limits.remote_max_bytes_per_connection);
}

TEST_F(ValidateTest, RemoteValues) {
  for (const char* good : {"", "0.0.0.0:7080", "0.0.0.0:0", "[::]:7080", "node:1"}) {
    Status s = ValidateWith([&](AgentConfig& c) { c.remote.listen = good; });
    EXPECT_TRUE(s.ok()) << good << ": " << s.ToString();
  }
  for (const char* bad : {"7080", "host:", "::1:7080", "host:65536"}) {
    Status s = ValidateWith([&](AgentConfig& c) { c.remote.listen = bad; });
    EXPECT_TRUE(IsInvalid(s, "remote.listen: ")) << bad;
  }
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.remote.max_connections = 0; }),
                        "remote.max_connections: 0 is outside 1..65536"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.remote.max_connections = 65537; }),
                        "remote.max_connections"));
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) { c.remote.max_connections = 65536; }).ok());
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.remote.workers = 0; }),
                        "remote.workers: 0 is outside 1..64"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.remote.workers = 65; }), "remote.workers"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.remote.max_batch_bytes = (1ull << 20) - 1; }),
                "remote.max_batch_size"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.remote.max_batch_bytes = (1ull << 30) + 1; }),
                "remote.max_batch_size"));
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) { c.remote.max_batch_bytes = 1ull << 30; }).ok());
}

TEST_F(ValidateTest, ClusterNeedsRemoteListenAndASecret) {
  auto secret = WriteFile(dir_, "secret", "cluster-secret\n");
  auto on = [&](AgentConfig& c) {
    c.remote.listen = "0.0.0.0:7080";
    c.cluster.peers = {"10.0.0.2:7080", "[fd00::3]:7080"};
    c.cluster.secret_file = secret;
  };
  Status s = ValidateWith(on);
  EXPECT_TRUE(s.ok()) << s.ToString();

  s = ValidateWith([&](AgentConfig& c) {
    on(c);
    c.remote.listen = "";
  });
  EXPECT_TRUE(IsInvalid(s, "remote.listen: must be set when the cluster is on"));

  s = ValidateWith([&](AgentConfig& c) {
    on(c);
    c.cluster.peers.clear();
    c.cluster.dns_name = "peers.tokenmem.svc:7080";
    c.cluster.secret_file.clear();
  });
  EXPECT_TRUE(IsInvalid(s, "cluster.secret_file: must be set"));

  s = ValidateWith([&](AgentConfig& c) {
    on(c);
    c.cluster.secret_file = dir_.path() / "absent";
  });
  EXPECT_TRUE(IsInvalid(s, "cluster.secret_file: "));
  EXPECT_TRUE(IsInvalid(s, "does not exist"));

  auto empty = WriteFile(dir_, "empty", "");
  s = ValidateWith([&](AgentConfig& c) {
    on(c);
    c.cluster.secret_file = empty;
  });
  EXPECT_TRUE(IsInvalid(s, "cluster.secret_file: "));
  EXPECT_TRUE(IsInvalid(s, "is empty"));

  s = ValidateWith([&](AgentConfig& c) {
    on(c);
    c.cluster.secret_file = dir_.path();
  });
  EXPECT_TRUE(IsInvalid(s, "is not a regular file"));

  // Off: no listener or secret needed.
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) { c.cluster.secret_file = "/absent"; }).ok());
}

TEST_F(ValidateTest, ClusterValues) {
  auto secret = WriteFile(dir_, "secret", "s");
  auto with = [&](const std::function<void(AgentConfig&)>& edit) {
    return ValidateWith([&](AgentConfig& c) {
      c.remote.listen = "0.0.0.0:7080";
      c.cluster.peers = {"a:1"};
      c.cluster.secret_file = secret;
      edit(c);
    });
  };
  EXPECT_TRUE(IsInvalid(with([](AgentConfig& c) {
                          c.cluster.peers = {"a:1", "b"};
                        }),
                        "cluster.peers[1]: 'b' is not host:port"));
  EXPECT_TRUE(
      IsInvalid(with([](AgentConfig& c) { c.cluster.peers = {"a:0"}; }), "cluster.peers[0]"));
  EXPECT_TRUE(IsInvalid(with([](AgentConfig& c) {
                          c.cluster.peers = {"a:1", "b:2", "a:1"};
                        }),
                        "cluster.peers[2]: 'a:1' is already cluster.peers[0]"));
  EXPECT_TRUE(IsInvalid(with([](AgentConfig& c) {
                          c.cluster.peers = {"[::1]:5", "[::1]:5"};
                        }),
                        "is already cluster.peers[0]"));
  EXPECT_TRUE(with([](AgentConfig& c) { c.cluster.peers = {"a:1", "a:2", "b:1"}; }).ok());
  EXPECT_TRUE(
      IsInvalid(with([](AgentConfig& c) { c.cluster.dns_name = "peers"; }), "cluster.dns_name: "));
  EXPECT_TRUE(IsInvalid(with([](AgentConfig& c) { c.cluster.heartbeat_interval_ms = 0; }),
                        "cluster.heartbeat_interval_ms"));
  EXPECT_TRUE(IsInvalid(with([](AgentConfig& c) { c.cluster.heartbeat_timeout_ms = 1000; }),
                        "cluster.heartbeat_timeout_ms: 1000 must be greater than "
                        "cluster.heartbeat_interval_ms (1000)"));
  EXPECT_TRUE(IsInvalid(with([](AgentConfig& c) { c.cluster.dns_refresh_ms = 0; }),
                        "cluster.dns_refresh_ms"));
  EXPECT_TRUE(IsInvalid(with([](AgentConfig& c) { c.cluster.forward_queue_blocks = 0; }),
                        "cluster.forward_queue_blocks: 0 is outside 1..1048576"));
  EXPECT_TRUE(
      IsInvalid(with([](AgentConfig& c) { c.cluster.forward_queue_blocks = (1u << 20) + 1; }),
                "cluster.forward_queue_blocks"));
  EXPECT_TRUE(with([](AgentConfig& c) { c.cluster.forward_queue_blocks = 1u << 20; }).ok());
}

TEST_F(ValidateTest, DefaultsValidate) {
  EXPECT_TRUE(Validate(Base()).ok()) << Validate(Base()).ToString();
}

TEST_F(ValidateTest, CreateDirectoryAcceptsAMissingDirectoryUnderAnExistingOne) {
  Status s = ValidateWith([&](AgentConfig& c) {
    c.nvme.directory = dir_.path() / "a" / "b";
    c.nvme.create_directory = true;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ValidateTest, MissingNvmeDirectoryWithoutCreateDirectory) {
  Status s = ValidateWith([&](AgentConfig& c) {
    c.nvme.directory = dir_.path() / "missing";
    c.nvme.create_directory = false;
  });
  EXPECT_TRUE(IsInvalid(s, "tiers.nvme.directory: "));
  EXPECT_TRUE(IsInvalid(s, "does not exist"));
}

TEST_F(ValidateTest, NvmeDirectoryUnderAFileCannotBeCreated) {
  auto file = WriteFile(dir_, "plain", "x");
  Status s = ValidateWith([&](AgentConfig& c) {
    c.nvme.directory = file / "sub";
    c.nvme.create_directory = true;
  });
  EXPECT_TRUE(IsInvalid(s, "tiers.nvme.directory: cannot create"));
  s = ValidateWith([&](AgentConfig& c) { c.nvme.directory = file; });
  EXPECT_TRUE(IsInvalid(s, "is not a directory"));
}

TEST_F(ValidateTest, NvmeDirectoryIsNotCheckedWhenTheTierIsOff) {
  Status s = ValidateWith([&](AgentConfig& c) {
    c.nvme.directory = dir_.path() / "missing";
    c.nvme.create_directory = false;
    c.nvme.capacity_bytes = 0;
    c.pools[0].capacity.nvme = 0;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ValidateTest, SysfsRootMustExist) {
  Status s = ValidateWith([&](AgentConfig& c) { c.sysfs_root = dir_.path() / "nosys"; });
  EXPECT_TRUE(IsInvalid(s, "sysfs_root: "));
}

TEST_F(ValidateTest, Watermarks) {
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.movement.low_watermark = 0.3;
                          c.movement.high_watermark = 0.2;
                        }),
                        "movement.low_watermark: 0.3 must be below movement.high_watermark"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.movement.low_watermark = 0.2;
                          c.movement.high_watermark = 0.2;
                        }),
                        "movement.low_watermark"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.movement.low_watermark = 0; }),
                        "movement.low_watermark"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.movement.high_watermark = 1.0; }),
                        "movement.high_watermark"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.movement.interval_ms = 0; }),
                        "movement.interval_ms"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.movement.ttl_sweep_ms = 0; }),
                        "movement.ttl_sweep_ms"));
}

TEST_F(ValidateTest, PoolSumMayNotExceedTheTier) {
  Status s = ValidateWith([&](AgentConfig& c) {
    c.pools.push_back(Pool("second", 768ull << 20, 0));  // 512MiB + 768MiB > 1GiB
  });
  EXPECT_TRUE(IsInvalid(s, "tiers.dram.capacity: "));
  EXPECT_TRUE(IsInvalid(s, "1280MiB of dram"));
  EXPECT_TRUE(IsInvalid(s, "capacity of 1GiB"));

  s = ValidateWith([&](AgentConfig& c) { c.pools[0].capacity.cxl = 1ull << 30; });
  EXPECT_TRUE(IsInvalid(s, "tiers.cxl.capacity: pools reserve 1GiB of cxl"));

  // Exactly full is fine.
  s = ValidateWith(
      [&](AgentConfig& c) { c.pools.push_back(Pool("second", 512ull << 20, 2ull << 30)); });
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST_F(ValidateTest, PoolCapacitiesThatWouldOverflowAreRejected) {
  Status s = ValidateWith([&](AgentConfig& c) {
    c.pools = {Pool("a", 1ull << 63, 0), Pool("b", 1ull << 63, 0)};
  });
  EXPECT_TRUE(IsInvalid(s, "tiers.dram.capacity"));
}

TEST_F(ValidateTest, DuplicatePoolNames) {
  Status s = ValidateWith([&](AgentConfig& c) { c.pools.push_back(Pool("default", 4 << 20, 0)); });
  EXPECT_TRUE(IsInvalid(s, "pools[1].name: 'default' is already the name of pools[0]"));
}

TEST_F(ValidateTest, BadPoolName) {
  Status s = ValidateWith([&](AgentConfig& c) { c.pools[0].name = "Bad_Name"; });
  EXPECT_TRUE(IsInvalid(s, "pools[0]: "));
  EXPECT_TRUE(IsInvalid(s, "Bad_Name"));
}

TEST_F(ValidateTest, PoolSpecErrorsAreReported) {
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.pools[0].block_size = 1000; }),
                        "pools[0]: pool 'default': block_size"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.pools[0].capacity = {}; }),
                        "pools[0]: pool 'default': no capacity"));
}

TEST_F(ValidateTest, NvmeBlocksMustFitASegment) {
  Status s = ValidateWith([](AgentConfig& c) {
    c.nvme.segment_bytes = 1ull << 20;
    c.pools[0].block_size = 2ull << 20;
  });
  EXPECT_TRUE(IsInvalid(s, "pools[0].block_size: 2MiB is larger than tiers.nvme.segment_size"));
}

TEST_F(ValidateTest, TcpListenNeedsAnAdminTokenFile) {
  Status s = ValidateWith([](AgentConfig& c) { c.control.tcp_listen = "0.0.0.0:7070"; });
  EXPECT_TRUE(IsInvalid(s, "control.admin_token_file: must be set"));

  s = ValidateWith([&](AgentConfig& c) {
    c.control.tcp_listen = "0.0.0.0:7070";
    c.control.admin_token_file = dir_.path() / "absent";
  });
  EXPECT_TRUE(IsInvalid(s, "control.admin_token_file: "));
  EXPECT_TRUE(IsInvalid(s, "does not exist"));

  auto empty = WriteFile(dir_, "empty-token", "");
  s = ValidateWith([&](AgentConfig& c) {
    c.control.tcp_listen = "0.0.0.0:7070";
    c.control.admin_token_file = empty;
  });
  EXPECT_TRUE(IsInvalid(s, "is empty"));

  auto token = WriteFile(dir_, "token", "s3cret\n");
  s = ValidateWith([&](AgentConfig& c) {
    c.control.tcp_listen = "[::1]:7070";
    c.control.admin_token_file = token;
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
}

TEST(EffectiveDataSocketTest, ItsOwnDirectoryOrBesideTheControlSocket) {
  ControlConfig c;
  EXPECT_EQ(EffectiveDataSocket(c), "/run/tokenmem/data/agent-data.sock");
  c.data_socket = "/var/run/x/d.sock";
  EXPECT_EQ(EffectiveDataSocket(c), "/var/run/x/d.sock");
  // Empty: the layout from before the split.
  c.data_socket.clear();
  EXPECT_EQ(EffectiveDataSocket(c), "/run/tokenmem/agent-data.sock");
  c.socket_path = "/tmp/t/ctl";
  EXPECT_EQ(EffectiveDataSocket(c), "/tmp/t/ctl-data.sock");
}

TEST_F(ValidateTest, DataSocketIsAUsableSocketOtherThanTheControlSocket) {
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) { c.control.data_socket = ""; }).ok());
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) { c.control.data_socket = "/tmp/d/x.sock"; }).ok());
  EXPECT_TRUE(IsInvalid(
      ValidateWith([](AgentConfig& c) { c.control.data_socket = "/run/tokenmem/./agent.sock"; }),
      "control.data_socket: '/run/tokenmem/./agent.sock' is the control socket"));
  EXPECT_TRUE(IsInvalid(
      ValidateWith([](AgentConfig& c) { c.control.data_socket = "/" + std::string(200, 'd'); }),
      "control.data_socket: "));
  // Empty derives from the control socket, whose length then counts twice.
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.control.socket_path = "/" + std::string(100, 's');
                          c.control.data_socket = "";
                        }),
                        "control.data_socket: "));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.control.data_socket_mode = 01777; }),
                        "control.data_socket_mode: "));
}

TEST_F(ValidateTest, AdminIdsAreRealIds) {
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) {
                c.control.admin_uids = {0, 1000, 4294967294u};
                c.control.admin_gids = {0, 2000};
              }).ok());
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.control.admin_uids = {4294967295u}; }),
                        "control.admin_uids: 4294967295 is not a valid id"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.control.admin_gids = {4294967295u}; }),
                        "control.admin_gids: "));
}

TEST_F(ValidateTest, TlsFilesComeTogetherAndOnlyWithTcp) {
  auto token = WriteFile(dir_, "token", "s3cret\n");
  auto cert = WriteFile(dir_, "tls.crt", "-----BEGIN CERTIFICATE-----\n");
  auto key = WriteFile(dir_, "tls.key", "-----BEGIN PRIVATE KEY-----\n");
  auto ca = WriteFile(dir_, "ca.crt", "-----BEGIN CERTIFICATE-----\n");
  auto with_tcp = [&](AgentConfig& c) {
    c.control.tcp_listen = "127.0.0.1:7070";
    c.control.admin_token_file = token;
  };
  EXPECT_TRUE(ValidateWith([&](AgentConfig& c) {
                with_tcp(c);
                c.control.tls_cert_file = cert;
                c.control.tls_key_file = key;
                c.control.tls_client_ca_file = ca;
              }).ok());
  EXPECT_TRUE(IsInvalid(ValidateWith([&](AgentConfig& c) {
                          c.control.tls_cert_file = cert;
                          c.control.tls_key_file = key;
                        }),
                        "control.tls_cert_file: is set but control.tcp_listen is not"));
  EXPECT_TRUE(IsInvalid(ValidateWith([&](AgentConfig& c) {
                          with_tcp(c);
                          c.control.tls_cert_file = cert;
                        }),
                        "control.tls_key_file: must be set together with control.tls_cert_file"));
  EXPECT_TRUE(IsInvalid(ValidateWith([&](AgentConfig& c) {
                          with_tcp(c);
                          c.control.tls_client_ca_file = ca;
                        }),
                        "control.tls_client_ca_file: needs control.tls_cert_file"));
  EXPECT_TRUE(IsInvalid(ValidateWith([&](AgentConfig& c) {
                          with_tcp(c);
                          c.control.tls_cert_file = cert;
                          c.control.tls_key_file = dir_ / "missing.key";
                        }),
                        "control.tls_key_file: "));
}

TEST_F(ValidateTest, TcpListenMustBeHostPort) {
  auto token = WriteFile(dir_, "token", "s3cret\n");
  for (const char* bad : {"7070", "host:", ":7070", "host:0", "host:65536", "host:7x", "::1:7070",
                          "[::1]", "a b:80"}) {
    Status s = ValidateWith([&](AgentConfig& c) {
      c.control.tcp_listen = bad;
      c.control.admin_token_file = token;
    });
    EXPECT_TRUE(IsInvalid(s, "control.tcp_listen: ")) << bad;
  }
}

TEST_F(ValidateTest, HttpListenIsHostPortOrEmpty) {
  for (const char* good : {"", "127.0.0.1:9464", "0.0.0.0:0", "[::]:9464", "[::1]:0", "node:1"}) {
    Status s = ValidateWith([&](AgentConfig& c) { c.http.listen = good; });
    EXPECT_TRUE(s.ok()) << good << ": " << s.ToString();
  }
  for (const char* bad : {"9464", "host:", ":9464", "host:65536", "host:9x", "::1:9464", "[::1]",
                          "a b:80", ":0", "host:00x"}) {
    Status s = ValidateWith([&](AgentConfig& c) { c.http.listen = bad; });
    EXPECT_TRUE(IsInvalid(s, "http.listen: ")) << bad;
  }
}

TEST_F(ValidateTest, HttpProbeListenIsAnotherPortOfAServerThatIsOn) {
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) { c.http.probe_listen = "0.0.0.0:9465"; }).ok());
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.http.probe_listen = "9465"; }),
                        "http.probe_listen: "));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.http.probe_listen = c.http.listen; }),
                        "http.probe_listen must be another port"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.http.listen = "";
                          c.http.probe_listen = "127.0.0.1:9465";
                        }),
                        "http.probe_listen needs http.listen"));
}

TEST(ParseHostPortTest, SplitsHostAndPort) {
  auto hp = ParseHostPort("example.org:65535");
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->host, "example.org");
  EXPECT_EQ(hp->port, 65535);
  hp = ParseHostPort("[fe80::1]:1");
  ASSERT_TRUE(hp.ok()) << hp.status().ToString();
  EXPECT_EQ(hp->host, "fe80::1");
  EXPECT_EQ(hp->port, 1);
  EXPECT_FALSE(ParseHostPort("example.org:-1").ok());
}

TEST_F(ValidateTest, ValueChecks) {
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.log_level = "verbose"; }),
                        "log_level: 'verbose'"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.node_name = "my node"; }), "node_name: "));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.nvme.queue_depth = 0; }),
                        "tiers.nvme.queue_depth: 0"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.nvme.queue_depth = 4097; }),
                        "tiers.nvme.queue_depth: 4097"));
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) { c.nvme.queue_depth = 4096; }).ok());
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.control.socket_mode = 01777; }),
                        "control.socket_mode: 1777"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.control.socket_path = ""; }),
                        "control.socket: is empty"));
  EXPECT_TRUE(IsInvalid(
      ValidateWith([](AgentConfig& c) { c.control.socket_path = "/" + std::string(200, 'x'); }),
      "control.socket: "));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.control.max_message_bytes = 100; }),
                        "control.max_message_size: "));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.nvme.segment_bytes = 512 << 10; }),
                        "tiers.nvme.segment_size: 512KiB"));
  EXPECT_TRUE(
      IsInvalid(ValidateWith([](AgentConfig& c) { c.nvme.segment_bytes = (1 << 20) + 512; }),
                "tiers.nvme.segment_size: "));
  EXPECT_TRUE(IsInvalid(
      ValidateWith([](AgentConfig& c) { c.nvme.capacity_bytes = (4ull << 30) + (1 << 20); }),
      "tiers.nvme.capacity: 4097MiB is not a whole number of segments of 256MiB"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.dram.capacity_bytes += 100; }),
                        "tiers.dram.capacity: "));
}

TEST_F(ValidateTest, NumaNodes) {
  EXPECT_TRUE(ValidateWith([](AgentConfig& c) {
                c.dram.numa_nodes = {0, 1};
                c.cxl.numa_nodes = {2};
              }).ok());
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.dram.numa_nodes = {0, 0};
                        }),
                        "tiers.dram.numa_nodes: node 0 is listed twice"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) {
                          c.dram.numa_nodes = {0, 1};
                          c.cxl.numa_nodes = {1};
                        }),
                        "tiers.cxl.numa_nodes: node 1 is listed in both"));
  EXPECT_TRUE(IsInvalid(ValidateWith([](AgentConfig& c) { c.cxl.numa_nodes = {-1}; }),
                        "tiers.cxl.numa_nodes: node -1"));
}

}  // namespace
}  // namespace tokenmem::config
