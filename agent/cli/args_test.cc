#include "cli/args.h"

#include <gtest/gtest.h>

namespace tokenmem::cli {
namespace {

Result<Invocation> Parse(std::vector<std::string> args) { return ParseArgs(args); }

TEST(ArgsTest, ParsesGlobalOptionsAnywhere) {
  auto inv = Parse({"--socket", "/tmp/a.sock", "pool", "list", "--json", "--timeout=2.5"});
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_EQ(inv->command->name, "pool list");
  EXPECT_EQ(inv->global.socket, "/tmp/a.sock");
  EXPECT_TRUE(inv->global.json);
  EXPECT_EQ(inv->global.timeout, std::chrono::milliseconds(2500));
}

TEST(ArgsTest, ParsesTokenAndTlsOptions) {
  auto inv = Parse({"--address", "node:7070", "--token-file", "/etc/t", "--tls-ca=/etc/ca.crt",
                    "--tls-cert", "/etc/c.crt", "--tls-key", "/etc/c.key", "--tls-server-name",
                    "agent.local", "status"});
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_EQ(inv->global.admin_token_file, "/etc/t");
  EXPECT_EQ(inv->global.tls_ca, "/etc/ca.crt");
  EXPECT_EQ(inv->global.tls_cert, "/etc/c.crt");
  EXPECT_EQ(inv->global.tls_key, "/etc/c.key");
  EXPECT_EQ(inv->global.tls_server_name, "agent.local");
  // The older spelling still works.
  inv = Parse({"--address", "node:7070", "--admin-token-file", "/etc/t", "status"});
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(inv->global.admin_token_file, "/etc/t");
}

TEST(ArgsTest, RejectsHalfTls) {
  auto message = [](std::vector<std::string> args) {
    auto inv = Parse(args);
    EXPECT_FALSE(inv.ok());
    return inv.ok() ? std::string() : inv.status().message();
  };
  EXPECT_NE(message({"--tls-ca", "/ca", "status"}).find("--address"), std::string::npos);
  EXPECT_NE(message({"--address", "n:1", "--tls-ca", "/ca", "--tls-cert", "/c", "status"})
                .find("--tls-key"),
            std::string::npos);
  EXPECT_NE(message({"--address", "n:1", "--tls-cert", "/c", "--tls-key", "/k", "status"})
                .find("--tls-ca"),
            std::string::npos);
}

TEST(ArgsTest, DefaultsTimeoutToTenSeconds) {
  auto inv = Parse({"status"});
  ASSERT_TRUE(inv.ok());
  EXPECT_EQ(inv->global.timeout, std::chrono::seconds(10));
  EXPECT_FALSE(inv->global.json);
}

TEST(ArgsTest, ParsesCommandFlagsAndPositionals) {
  auto inv =
      Parse({"pool", "create", "p1", "--block-size", "64KiB", "--dram=8MiB", "--eviction", "none"});
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_EQ(inv->command->name, "pool create");
  ASSERT_EQ(inv->positionals.size(), 1u);
  EXPECT_EQ(inv->positionals[0], "p1");
  EXPECT_EQ(inv->Get("block-size"), "64KiB");
  EXPECT_EQ(inv->Get("dram"), "8MiB");
  EXPECT_EQ(inv->Get("eviction"), "none");
  EXPECT_FALSE(inv->Has("nvme"));
  EXPECT_EQ(inv->Get("nvme"), std::nullopt);
}

TEST(ArgsTest, CollectsRepeatableFlagsAndBooleans) {
  auto inv =
      Parse({"lease", "create", "--quota", "1GiB", "--pool", "a", "--pool", "b", "--read-only"});
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_EQ(inv->GetAll("pool"), (std::vector<std::string>{"a", "b"}));
  EXPECT_TRUE(inv->Has("read-only"));
}

TEST(ArgsTest, AcceptsDashAsAValue) {
  auto inv = Parse({"get", "--pool", "p", "--key", std::string(32, 'a'), "--file", "-"});
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_EQ(inv->Get("file"), "-");
}

TEST(ArgsTest, HelpWins) {
  for (auto args : std::vector<std::vector<std::string>>{
           {"help"}, {"--help"}, {"-h"}, {"pool", "--help"}, {"--help", "bogus"}}) {
    auto inv = Parse(args);
    ASSERT_TRUE(inv.ok()) << args[0];
    EXPECT_EQ(inv->command->name, "help");
  }
}

TEST(ArgsTest, RejectsUsageErrors) {
  const std::vector<std::vector<std::string>> bad = {
      {},
      {"frobnicate"},
      {"pool"},
      {"pool", "explode"},
      {"pool", "create"},
      {"pool", "get", "a", "b"},
      {"pool", "list", "--dram", "1MiB"},
      {"put", "--pool", "p", "--key", "k"},
      {"stats", "--pool"},
      {"stats", "--pool", "--json"},
      {"status", "--json=yes"},
      {"status", "--timeout", "0"},
      {"status", "--timeout", "abc"},
      {"status", "-x"},
      {"status", "--socket", "/a", "--address", "h:1"},
      {"pool", "create", "p", "--dram", "1", "--dram", "2"},
  };
  for (const auto& args : bad) {
    auto inv = Parse(args);
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    ASSERT_FALSE(inv.ok()) << joined;
    EXPECT_EQ(inv.status().code(), StatusCode::kInvalidArgument) << joined;
    EXPECT_FALSE(inv.status().message().empty());
  }
}

TEST(ArgsTest, MessagesNameWhatIsWrong) {
  EXPECT_NE(Parse({"pool"}).status().message().find("create"), std::string::npos);
  EXPECT_NE(Parse({"pool", "create"}).status().message().find("NAME"), std::string::npos);
  EXPECT_NE(Parse({"put", "--pool", "p"}).status().message().find("--key"), std::string::npos);
  EXPECT_NE(Parse({"status", "--nope"}).status().message().find("--nope"), std::string::npos);
}

TEST(ArgsTest, DoubleDashEndsOptions) {
  auto inv = Parse({"pool", "get", "--", "--odd"});
  ASSERT_TRUE(inv.ok()) << inv.status().ToString();
  EXPECT_EQ(inv->positionals[0], "--odd");
}

TEST(ArgsTest, UsageListsEveryCommand) {
  std::string usage = UsageText();
  for (const auto& c : Commands()) {
    EXPECT_NE(usage.find(std::string(c.name)), std::string::npos) << c.name;
  }
}

}  // namespace
}  // namespace tokenmem::cli
