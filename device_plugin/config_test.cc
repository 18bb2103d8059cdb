#include "config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace tokenmem::device_plugin {
namespace {

Result<CommandLine> Parse(std::vector<std::string> args) {
  std::vector<const char*> argv = {"tokenmem-device-plugin"};
  for (const auto& a : args) argv.push_back(a.c_str());
  return ParseCommandLine(static_cast<int>(argv.size()), argv.data());
}

TEST(DevicePluginConfigTest, DefaultsAreValidAndDerivePaths) {
  Config c;
  ASSERT_TRUE(Validate(c).ok()) << Validate(c).ToString();
  EXPECT_EQ(KubeletSocketPath(c), "/var/lib/kubelet/device-plugins/kubelet.sock");
  EXPECT_EQ(PluginSocketPath(c), "/var/lib/kubelet/device-plugins/tokenmem.sock");
  EXPECT_EQ(AgentDataSocketPath(c), "/run/tokenmem/data/agent-data.sock");
  EXPECT_EQ(HostSocketDir(c), "/run/tokenmem/data");  // the control socket is not in it
  EXPECT_EQ(ContainerDataSocketPath(c), "/run/tokenmem/agent-data.sock");
  EXPECT_EQ(c.unit_bytes, uint64_t{1} << 30);
  EXPECT_EQ(c.resource_name, "tokenmem.io/memory");
}

TEST(DevicePluginConfigTest, FlagsInBothSpellings) {
  auto cl = Parse({"--device-plugin-dir=/tmp/dp", "--unit", "512MiB", "--reclaim-grace=90s",
                   "--lease-pools=a, b", "--rdma=off", "--reclaim=false", "--http-listen="});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.device_plugin_dir, "/tmp/dp");
  EXPECT_EQ(cl->config.unit_bytes, uint64_t{512} << 20);
  EXPECT_EQ(cl->config.reclaim_grace, std::chrono::seconds(90));
  EXPECT_EQ(cl->config.lease_pools, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(cl->config.rdma, RdmaMode::kOff);
  EXPECT_FALSE(cl->config.reclaim);
  EXPECT_TRUE(cl->config.http_listen.empty());
}

TEST(DevicePluginConfigTest, BareBoolFlagMeansTrue) {
  auto cl = Parse({"--reclaim"});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_TRUE(cl->config.reclaim);
}

TEST(DevicePluginConfigTest, HostAndContainerSocketDirs) {
  auto cl =
      Parse({"--agent-socket=/var/run/tm/ctl.sock", "--agent-data-socket=/var/run/tm/data/d.sock",
             "--host-socket-dir=/srv/tm/data", "--container-socket-dir=/tm"});
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(AgentDataSocketPath(cl->config), "/var/run/tm/data/d.sock");
  EXPECT_EQ(HostSocketDir(cl->config), "/srv/tm/data");
  EXPECT_EQ(ContainerDataSocketPath(cl->config), "/tm/d.sock");
}

TEST(DevicePluginConfigTest, RefusesADataSocketBesideTheControlSocket) {
  // Containers get the data socket's directory: it must not hold the
  // control socket, however the paths are spelled.
  for (std::vector<std::string> args :
       {std::vector<std::string>{"--agent-data-socket="},
        std::vector<std::string>{"--agent-data-socket=/run/tokenmem/agent-data.sock"},
        std::vector<std::string>{"--agent-socket=/run/tm/./ctl.sock",
                                 "--agent-data-socket=/run/tm/d.sock"}}) {
    auto cl = Parse(args);
    ASSERT_FALSE(cl.ok()) << args[0];
    EXPECT_EQ(cl.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(cl.status().message().find("shares its directory with the control socket"),
              std::string::npos)
        << cl.status().message();
  }
}

TEST(DevicePluginConfigTest, RefusesBadValuesNamingTheFlag) {
  struct Case {
    std::vector<std::string> args;
    std::string needle;
  };
  const std::vector<Case> cases = {
      {{"--no-such-flag=1"}, "--no-such-flag"},
      {{"--unit=0"}, "--unit"},
      {{"--unit=lots"}, "--unit"},
      {{"--reclaim-grace=10"}, "--reclaim-grace"},
      {{"--reclaim-interval=0s"}, "--reclaim-interval"},
      {{"--device-plugin-dir=relative"}, "--device-plugin-dir"},
      {{"--plugin-socket=a/b.sock"}, "--plugin-socket"},
      {{"--plugin-socket=kubelet.sock"}, "--plugin-socket"},
      {{"--resource-name=memory"}, "--resource-name"},
      {{"--agent-socket=/" + std::string(120, 'x')}, "--agent-socket"},
      {{"--agent-data-socket=/run/tokenmem/d.sock"}, "--agent-data-socket"},
      {{"--cdi-devices=nonsense"}, "--cdi-devices"},
      {{"--rdma=maybe"}, "--rdma"},
      {{"--capacity-source=disks"}, "--capacity-source"},
      {{"--http-listen=nohost"}, "--http-listen"},
      {{"--log-level=loud"}, "--log-level"},
      {{"--register-backoff-initial=10s", "--register-backoff-max=1s"}, "--register-backoff-max"},
      {{"positional"}, "positional"},
      {{"--unit"}, "--unit"},
  };
  for (const auto& c : cases) {
    auto cl = Parse(c.args);
    ASSERT_FALSE(cl.ok()) << c.args[0];
    EXPECT_EQ(cl.status().code(), StatusCode::kInvalidArgument) << c.args[0];
    EXPECT_NE(cl.status().message().find(c.needle), std::string::npos)
        << c.args[0] << ": " << cl.status().message();
  }
}

TEST(DevicePluginConfigTest, FileThenFlags) {
  const auto path = std::filesystem::temp_directory_path() /
                    ("dp-config-" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(path);
    out << "unit: 2GiB\n"
           "default-pool: kv\n"
           "lease-pools: [kv, shared]\n"
           "reclaim-grace: 2m\n"
           "cdi-devices: tokenmem.io/memory=all\n";
  }
  auto cl = Parse({"--config", path.string(), "--unit=1GiB"});
  std::filesystem::remove(path);
  ASSERT_TRUE(cl.ok()) << cl.status().ToString();
  EXPECT_EQ(cl->config.unit_bytes, uint64_t{1} << 30);  // the flag wins
  EXPECT_EQ(cl->config.default_pool, "kv");
  EXPECT_EQ(cl->config.lease_pools, (std::vector<std::string>{"kv", "shared"}));
  EXPECT_EQ(cl->config.reclaim_grace, std::chrono::minutes(2));
  EXPECT_EQ(cl->config.cdi_devices, (std::vector<std::string>{"tokenmem.io/memory=all"}));
}

TEST(DevicePluginConfigTest, FileErrors) {
  Config c;
  EXPECT_EQ(ApplyConfigYaml("nope: 1\n", &c).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyConfigYaml("- a\n- b\n", &c).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyConfigYaml("unit: [\n", &c).code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ApplyConfigYaml("unit: {a: 1}\n", &c).code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(ApplyConfigYaml("", &c).ok());
  auto missing = Parse({"--config=/nonexistent/dp.yaml"});
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.status().code(), StatusCode::kIoError);
}

TEST(DevicePluginConfigTest, HelpListsEveryFlag) {
  auto cl = Parse({"--help"});
  ASSERT_TRUE(cl.ok());
  EXPECT_TRUE(cl->help);
  const std::string usage = Usage();
  for (const char* flag : {"--device-plugin-dir", "--pod-resources-socket", "--agent-socket",
                           "--unit", "--reclaim-grace", "--http-listen", "--dev-root",
                           "--sysfs-root", "--cdi-devices", "--remote-endpoints"}) {
    EXPECT_NE(usage.find(flag), std::string::npos) << flag;
  }
}

TEST(DevicePluginConfigTest, Durations) {
  EXPECT_EQ(*ParseDuration("250ms"), std::chrono::milliseconds(250));
  EXPECT_EQ(*ParseDuration("5s"), std::chrono::seconds(5));
  EXPECT_EQ(*ParseDuration("2m"), std::chrono::minutes(2));
  EXPECT_EQ(*ParseDuration("1h"), std::chrono::hours(1));
  EXPECT_FALSE(ParseDuration("5").ok());
  EXPECT_FALSE(ParseDuration("s").ok());
  EXPECT_FALSE(ParseDuration("-1s").ok());
  EXPECT_FALSE(ParseDuration("1.5s").ok());
  EXPECT_EQ(FormatDuration(std::chrono::milliseconds(1500)), "1500ms");
  EXPECT_EQ(FormatDuration(std::chrono::seconds(60)), "1m");
}

}  // namespace
}  // namespace tokenmem::device_plugin
