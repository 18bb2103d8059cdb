#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <climits>
#include <optional>
#include <string>
#include <vector>

#include "config/config_loader.h"
#include "config/config_test_util.h"

namespace tokenmem::config {
namespace {

using testing::IsInvalid;
using testing::WriteFile;
using tokenmem::testing::TempDir;

// Runs ParseCommandLine on {"tokenmem-agent", args...} with TOKENMEM_CONFIG
// unset (or set to `env`), restoring the variable afterwards.
class CommandLineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* v = std::getenv(kConfigEnvVar)) saved_ = v;
    ::unsetenv(kConfigEnvVar);
  }
  void TearDown() override {
    if (saved_) {
      ::setenv(kConfigEnvVar, saved_->c_str(), 1);
    } else {
      ::unsetenv(kConfigEnvVar);
    }
  }

  static Result<CommandLine> Parse(std::vector<std::string> args) {
    std::vector<const char*> argv = {"tokenmem-agent"};
    for (const auto& a : args) argv.push_back(a.c_str());
    return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
  }

  TempDir dir_;
  std::optional<std::string> saved_;
};

TEST_F(CommandLineTest, NoArgumentsGiveTheDefaults) {
  auto cl = Parse({});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_TRUE(cl->config == DefaultConfig());
  EXPECT_FALSE(cl->show_help);
  EXPECT_FALSE(cl->show_version);
  EXPECT_FALSE(cl->check_only);
}

TEST_F(CommandLineTest, FlagsOverrideTheFileWhereverConfigStands) {
  auto file = WriteFile(dir_, "agent.yaml",
                        "node_name: from-file\nlog_level: debug\n"
                        "tiers: {dram: {capacity: 2GiB}, nvme: {queue_depth: 8}}\n");
  auto cl = Parse({"--dram-capacity", "3GiB", "--config", file.string(), "--log-level", "warn"});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.dram.capacity_bytes, 3ull << 30);  // flag beats file
  EXPECT_EQ(cl->config.log_level, "warn");                // flag beats file
  EXPECT_EQ(cl->config.node_name, "from-file");           // file beats default
  EXPECT_EQ(cl->config.nvme.queue_depth, 8u);
  EXPECT_EQ(cl->config.nvme.capacity_bytes, 4ull << 30);  // default kept
}

TEST_F(CommandLineTest, EveryFlagInBothForms) {
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"socket", "/tmp/s.sock"},
      {"socket-mode", "0640"},
      {"data-socket", "/tmp/d/data.sock"},
      {"data-socket-mode", "0660"},
      {"admin-uids", "1000,1001"},
      {"admin-gids", "2000"},
      {"tcp-listen", "0.0.0.0:7070"},
      {"admin-token-file", "/tmp/token"},
      {"tls-cert-file", "/tmp/tls.crt"},
      {"tls-key-file", "/tmp/tls.key"},
      {"tls-client-ca-file", "/tmp/ca.crt"},
      {"sysfs-root", "/tmp/sys"},
      {"dram-capacity", "2GiB"},
      {"cxl-capacity", "512MiB"},
      {"nvme-dir", "/tmp/nvme"},
      {"nvme-capacity", "8GiB"},
      {"node-name", "n9"},
      {"log-level", "error"},
      {"http-listen", "0.0.0.0:9100"},
      {"remote-listen", "0.0.0.0:7080"},
      {"cluster-peers", "a:1,,[::1]:2"},
      {"cluster-dns", "peers.svc:7080"},
      {"cluster-secret-file", "/tmp/secret"}};
  for (bool joined : {false, true}) {
    std::vector<std::string> args;
    for (const auto& [name, value] : flags) {
      if (joined) {
        args.push_back("--" + name + "=" + value);
      } else {
        args.push_back("--" + name);
        args.push_back(value);
      }
    }
    auto cl = Parse(args);
    ASSERT_TRUE(cl.ok()) << cl.status().ToString();
    const AgentConfig& c = cl->config;
    EXPECT_EQ(c.control.socket_path, "/tmp/s.sock");
    EXPECT_EQ(c.control.socket_mode, 0640u);
    EXPECT_EQ(c.control.data_socket, "/tmp/d/data.sock");
    EXPECT_EQ(c.control.data_socket_mode, 0660u);
    EXPECT_EQ(c.control.admin_uids, (std::vector<uint32_t>{1000, 1001}));
    EXPECT_EQ(c.control.admin_gids, (std::vector<uint32_t>{2000}));
    EXPECT_EQ(c.control.tcp_listen, "0.0.0.0:7070");
    EXPECT_EQ(c.control.admin_token_file, "/tmp/token");
    EXPECT_EQ(c.control.tls_cert_file, "/tmp/tls.crt");
    EXPECT_EQ(c.control.tls_key_file, "/tmp/tls.key");
    EXPECT_EQ(c.control.tls_client_ca_file, "/tmp/ca.crt");
    EXPECT_EQ(c.sysfs_root, "/tmp/sys");
    EXPECT_EQ(c.dram.capacity_bytes, 2ull << 30);
    EXPECT_EQ(c.cxl.capacity_bytes, 512ull << 20);
    EXPECT_EQ(c.nvme.directory, "/tmp/nvme");
    EXPECT_EQ(c.nvme.capacity_bytes, 8ull << 30);
    EXPECT_EQ(c.node_name, "n9");
    EXPECT_EQ(c.log_level, "error");
    EXPECT_EQ(c.http.listen, "0.0.0.0:9100");
    EXPECT_EQ(c.remote.listen, "0.0.0.0:7080");
    EXPECT_EQ(c.cluster.peers, (std::vector<std::string>{"a:1", "[::1]:2"}));
    EXPECT_EQ(c.cluster.dns_name, "peers.svc:7080");
    EXPECT_EQ(c.cluster.secret_file, "/tmp/secret");
  }
}

TEST_F(CommandLineTest, ClusterPeersFlagReplacesTheFilesList) {
  auto file = WriteFile(dir_, "agent.yaml", "cluster: {peers: [\"x:1\", \"y:2\"]}\n");
  auto cl = Parse({"--config", file.string(), "--cluster-peers", "z:3"});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.cluster.peers, (std::vector<std::string>{"z:3"}));
  cl = Parse({"--config", file.string(), "--cluster-peers="});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_TRUE(cl->config.cluster.peers.empty());
}

TEST_F(CommandLineTest, EqualsFormAllowsAnEmptyValue) {
  auto file = WriteFile(dir_, "agent.yaml", "control: {tcp_listen: \"0.0.0.0:7070\"}\n");
  auto cl = Parse({"--config=" + file.string(), "--tcp-listen="});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.control.tcp_listen, "");

  cl = Parse({"--http-listen="});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.http.listen, "");  // off
}

TEST_F(CommandLineTest, LastOfARepeatedFlagWins) {
  auto cl = Parse({"--node-name", "a", "--node-name=b"});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.node_name, "b");
}

TEST_F(CommandLineTest, BooleanFlags) {
  auto cl = Parse({"--check-config"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->check_only);
  cl = Parse({"--version"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->show_version);
  cl = Parse({"-h"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->show_help);
  // --help does not load the file, so a broken one does not hide the usage text.
  cl = Parse({"--config", (dir_.path() / "absent.yaml").string(), "--help"});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_TRUE(cl->show_help);
}

TEST_F(CommandLineTest, Errors) {
  EXPECT_TRUE(IsInvalid(Parse({"--bogus"}).status(), "unknown flag --bogus"));
  EXPECT_TRUE(IsInvalid(Parse({"--bogus=1"}).status(), "unknown flag --bogus"));
  EXPECT_TRUE(IsInvalid(Parse({"--socket"}).status(), "--socket needs a value"));
  EXPECT_TRUE(
      IsInvalid(Parse({"--socket", "--log-level", "info"}).status(), "--socket needs a value"));
  EXPECT_TRUE(
      IsInvalid(Parse({"--admin-uids", "1000,root"}).status(), "'root' is not a numeric id"));
  EXPECT_TRUE(IsInvalid(Parse({"--help=yes"}).status(), "--help takes no value"));
  EXPECT_TRUE(IsInvalid(Parse({"stray"}).status(), "unexpected argument 'stray'"));
  EXPECT_TRUE(IsInvalid(Parse({"-x"}).status(), "unexpected argument '-x'"));
  EXPECT_TRUE(IsInvalid(Parse({"--dram-capacity", "12XB"}).status(),
                        "--dram-capacity: '12XB' is not a byte size"));
  EXPECT_TRUE(IsInvalid(Parse({"--socket-mode=rw"}).status(), "--socket-mode: 'rw'"));
  EXPECT_TRUE(
      IsInvalid(Parse({"--config=a.yaml", "--config=b.yaml"}).status(), "--config given twice"));
  auto bad = WriteFile(dir_, "bad.yaml", "tiers: {dram: {capcity: 1}}\n");
  EXPECT_TRUE(IsInvalid(Parse({"--config", bad.string()}).status(), "tiers.dram.capcity"));
  auto missing = Parse({"--config", (dir_.path() / "absent.yaml").string()});
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
}

TEST_F(CommandLineTest, EnvironmentNamesTheFileWhenConfigIsAbsent) {
  auto from_env = WriteFile(dir_, "env.yaml", "node_name: from-env\n");
  auto from_flag = WriteFile(dir_, "flag.yaml", "node_name: from-flag\n");
  ASSERT_EQ(::setenv(kConfigEnvVar, from_env.c_str(), 1), 0);
  auto cl = Parse({});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.node_name, "from-env");
  cl = Parse({"--config", from_flag.string()});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.node_name, "from-flag");
  cl = Parse({"--node-name", "from-cli"});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.node_name, "from-cli");
}

TEST_F(CommandLineTest, UsageTextListsEveryFlag) {
  std::string usage = UsageText();
  for (const char* flag : {"--config FILE",
                           "--socket PATH",
                           "--socket-mode OCTAL",
                           "--tcp-listen HOST:PORT",
                           "--admin-token-file PATH",
                           "--data-socket PATH",
                           "--data-socket-mode OCTAL",
                           "--admin-uids UID,...",
                           "--admin-gids GID,...",
                           "--tls-cert-file PATH",
                           "--tls-key-file PATH",
                           "--tls-client-ca-file PATH",
                           "--sysfs-root PATH",
                           "--dram-capacity SIZE",
                           "--cxl-capacity SIZE",
                           "--nvme-dir PATH",
                           "--nvme-capacity SIZE",
                           "--node-name NAME",
                           "--log-level LEVEL",
                           "--http-listen HOST:PORT",
                           "--remote-listen HOST:PORT",
                           "--cluster-peers HOST:PORT,...",
                           "--cluster-dns NAME:PORT",
                           "--cluster-secret-file PATH",
                           "--check-config",
                           "--help",
                           "--version",
                           "TOKENMEM_CONFIG"}) {
    EXPECT_NE(usage.find(flag), std::string::npos) << flag;
  }
}

TEST(ApplyEnvironmentDefaultsTest, FillsTheHostNameOnlyWhenEmpty) {
  char host[HOST_NAME_MAX + 1] = {};
  ASSERT_EQ(::gethostname(host, sizeof(host) - 1), 0);
  AgentConfig c;
  ApplyEnvironmentDefaults(&c);
  EXPECT_EQ(c.node_name, host);
  c.node_name = "explicit";
  ApplyEnvironmentDefaults(&c);
  EXPECT_EQ(c.node_name, "explicit");
}

}  // namespace
}  // namespace tokenmem::config
