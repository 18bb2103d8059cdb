// tokenmemctl and tokenmem-demo, run as binaries against a real agent.
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <random>

#include "agent_fixture.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::testing {
namespace {

using google::protobuf::Struct;
using google::protobuf::Value;

constexpr char kKeyA[] = "00112233445566778899aabbccddeeff";
constexpr char kKeyMissing[] = "ffffffffffffffffffffffffffffffff";

Struct ParseJson(const std::string& text) {
  Struct out;
  auto status = google::protobuf::util::JsonStringToMessage(text, &out);
  EXPECT_TRUE(status.ok()) << status.ToString() << "\nin: " << text;
  return out;
}

const Value& Field(const Struct& s, const std::string& name) {
  static const Value kMissing;
  auto it = s.fields().find(name);
  EXPECT_NE(it, s.fields().end()) << "no field '" << name << "'";
  return it == s.fields().end() ? kMissing : it->second;
}

// The element of doc[list] whose `key` field is `value`, or nullptr.
const Struct* FindIn(const Struct& doc, const std::string& list, const std::string& key,
                     const std::string& value) {
  for (const Value& v : Field(doc, list).list_value().values()) {
    if (Field(v.struct_value(), key).string_value() == value) return &v.struct_value();
  }
  return nullptr;
}

class CtlTest : public ::testing::Test {
 protected:
  CtlTest()
      : agent_(
            {.dram = "32MiB",
             .nvme = "64MiB",
             .pools = {{.name = "p1", .block_size = "64KiB", .dram = "4MiB", .nvme = "16MiB"}}}) {}

  void SetUp() override {
    Status started = agent_.Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
  }

  // tokenmemctl --socket <agent> ARGS...
  CommandResult Ctl(std::vector<std::string> args, const std::vector<std::string>& env = {}) {
    std::vector<std::string> argv = {TOKENMEM_CTL_BINARY, "--socket", agent_.socket_path()};
    argv.insert(argv.end(), args.begin(), args.end());
    auto r = RunCommand(argv, "", env);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : CommandResult{};
  }

  std::string Path(const std::string& name) const { return (agent_.dir() / name).string(); }

  static std::string ReadFile(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  }

  AgentProcess agent_;
};

TEST_F(CtlTest, PoolLifecycleHumanAndJson) {
  CommandResult r = Ctl({"pool", "create", "chat", "--block-size", "16KiB", "--dram", "2MiB",
                         "--nvme", "16MiB", "--ttl", "3600"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("created pool chat"), std::string::npos) << r.out;

  r = Ctl({"pool", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("NAME"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("chat"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("16.0 KiB"), std::string::npos) << r.out;

  r = Ctl({"pool", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct list = ParseJson(r.out);
  ASSERT_NE(FindIn(list, "pools", "name", "p1"), nullptr) << r.out;
  const Struct* chat = FindIn(list, "pools", "name", "chat");
  ASSERT_NE(chat, nullptr) << r.out;
  EXPECT_EQ(Field(*chat, "block_size").number_value(), 16 * 1024);

  r = Ctl({"--json", "pool", "get", "chat"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct pool = ParseJson(r.out);
  EXPECT_EQ(Field(pool, "name").string_value(), "chat");
  EXPECT_EQ(Field(pool, "eviction").string_value(), "lru");
  EXPECT_EQ(Field(pool, "ttl_seconds").number_value(), 3600);
  const Struct& capacity = Field(pool, "capacity").struct_value();
  EXPECT_EQ(Field(capacity, "dram").number_value(), 2 << 20);
  EXPECT_EQ(Field(capacity, "nvme").number_value(), 16 << 20);

  r = Ctl({"pool", "get", "chat"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("2.0 MiB"), std::string::npos) << r.out;

  r = Ctl({"pool", "delete", "chat"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"pool", "list", "--json"});
  EXPECT_EQ(FindIn(ParseJson(r.out), "pools", "name", "chat"), nullptr) << r.out;

  r = Ctl({"pool", "get", "chat"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: NOT_FOUND: ", 0), 0u) << r.err;
}

TEST_F(CtlTest, BadPoolNameIsRefusedAndCreatesNothing) {
  CommandResult r = Ctl({"pool", "create", "Bad_Name", "--dram", "1MiB"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: INVALID_ARGUMENT: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;

  r = Ctl({"pool", "list", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct list = ParseJson(r.out);
  EXPECT_EQ(Field(list, "pools").list_value().values_size(), 1) << r.out;
}

TEST_F(CtlTest, UsageErrorsExitTwo) {
  EXPECT_EQ(Ctl({"pool", "create"}).exit_code, 2);
  EXPECT_EQ(Ctl({"pool", "create", "x", "--dram", "lots"}).exit_code, 2);
  CommandResult r = Ctl({"frobnicate"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("tokenmemctl help"), std::string::npos) << r.err;
  r = Ctl({"help"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.out.find("lease create"), std::string::npos);
}

TEST_F(CtlTest, PutAndGetAreByteExact) {
  CommandResult r = Ctl({"lease", "create", "--quota", "8MiB", "--pool", "p1"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const std::string kExport = "export TOKENMEM_LEASE=";
  size_t at = r.out.find(kExport);
  ASSERT_NE(at, std::string::npos) << r.out;
  std::string lease = r.out.substr(at + kExport.size());
  lease = lease.substr(0, lease.find('\n'));
  ASSERT_NE(lease.find(':'), std::string::npos) << lease;
  EXPECT_NE(r.out.find("secret"), std::string::npos) << r.out;

  std::string payload(40000, '\0');
  std::mt19937 rng(7);
  for (char& c : payload) c = static_cast<char>(rng());
  std::string in = Path("in.bin");
  std::ofstream(in, std::ios::binary) << payload;

  r = Ctl({"put", "--pool", "p1", "--key", kKeyA, "--file", in, "--lease", lease});
  ASSERT_EQ(r.exit_code, 0) << r.err;

  std::string out = Path("out.bin");
  r = Ctl({"get", "--pool", "p1", "--key", kKeyA, "--file", out, "--lease", lease});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(ReadFile(out), payload);

  // The lease from the environment, the block to stdout.
  r = Ctl({"get", "--pool", "p1", "--key", kKeyA, "--file", "-"}, {"TOKENMEM_LEASE=" + lease});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, payload);

  r = Ctl({"exists", "--pool", "p1", "--key", kKeyA, "--lease", lease});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Ctl(
      {"exists", "--pool", "p1", "--key", kKeyA, "--key", kKeyMissing, "--lease", lease, "--json"});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_EQ(Field(ParseJson(r.out), "absent").number_value(), 1);

  std::string never = Path("never.bin");
  r = Ctl({"get", "--pool", "p1", "--key", kKeyMissing, "--file", never, "--lease", lease});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("NOT_FOUND"), std::string::npos) << r.err;
  EXPECT_FALSE(std::filesystem::exists(never));

  r = Ctl({"stats", "--pool", "p1", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct all_stats = ParseJson(r.out);
  const Struct* stats = FindIn(all_stats, "pools", "pool", "p1");
  ASSERT_NE(stats, nullptr) << r.out;
  EXPECT_GE(Field(*stats, "puts").number_value(), 1) << r.out;
  EXPECT_GE(Field(*stats, "hits").number_value(), 2) << r.out;
  r = Ctl({"stats"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("p1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("HIT RATIO"), std::string::npos) << r.out;
}

TEST_F(CtlTest, WrongSecretIsDenied) {
  CommandResult r = Ctl({"lease", "create", "--quota", "1MiB", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct lease = ParseJson(r.out);
  std::string id = Field(lease, "id").string_value();
  EXPECT_EQ(Field(lease, "credentials").string_value(),
            id + ":" + Field(lease, "secret").string_value());

  std::string in = Path("in.bin");
  std::ofstream(in) << "hello";
  r = Ctl({"put", "--pool", "p1", "--key", kKeyA, "--file", in, "--lease", id + ":not-the-secret"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: PERMISSION_DENIED: ", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find("not-the-secret"), std::string::npos) << "secrets stay out of messages";
}

TEST_F(CtlTest, LeasesAreListedWithoutSecretsAndReleased) {
  CommandResult r = Ctl({"lease", "create", "--quota", "2MiB", "--owner", "pod-a", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct lease = ParseJson(r.out);
  std::string id = Field(lease, "id").string_value();
  std::string secret = Field(lease, "secret").string_value();
  ASSERT_FALSE(secret.empty());

  r = Ctl({"lease", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find(id), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("pod-a"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find(secret), std::string::npos);
  r = Ctl({"lease", "list", "--json"});
  EXPECT_EQ(r.out.find(secret), std::string::npos);
  EXPECT_NE(FindIn(ParseJson(r.out), "leases", "id", id), nullptr) << r.out;

  r = Ctl({"lease", "release", id});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"lease", "list", "--json"});
  EXPECT_EQ(r.out.find(id), std::string::npos) << r.out;
}

TEST_F(CtlTest, NamespacedPoolAdmitsOnlyItsNamespace) {
  CommandResult r = Ctl({"pool", "create", "team", "--block-size", "4KiB", "--dram", "64KiB",
                         "--allowed-namespace", "team-b", "--allowed-namespace", "team-a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"pool", "get", "team", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("\"allowed_namespaces\":[\"team-a\",\"team-b\"]"), std::string::npos)
      << r.out;

  r = Ctl({"lease", "create", "--quota", "1MiB", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct lease = ParseJson(r.out);
  const std::string id = Field(lease, "id").string_value();
  const std::string credentials = Field(lease, "credentials").string_value();
  std::string in = Path("ns.bin");
  std::ofstream(in) << "hello";
  r = Ctl({"put", "--pool", "team", "--key", kKeyA, "--file", in, "--lease", credentials});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: PERMISSION_DENIED: ", 0), 0u) << r.err;

  r = Ctl({"lease", "bind", id, "team-a"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("team-a"), std::string::npos) << r.out;
  r = Ctl({"put", "--pool", "team", "--key", kKeyA, "--file", in, "--lease", credentials});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = Ctl({"lease", "bind", id, "team-b"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("FAILED_PRECONDITION"), std::string::npos) << r.err;
  r = Ctl({"lease", "list"});
  EXPECT_NE(r.out.find("NAMESPACE"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("team-a"), std::string::npos) << r.out;
}

TEST_F(CtlTest, StatusDescribesTheAgent) {
  CommandResult r = Ctl({"status"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("version"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("nvme"), std::string::npos) << r.out;

  r = Ctl({"status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  Struct status = ParseJson(r.out);
  EXPECT_FALSE(Field(status, "version").string_value().empty());
  EXPECT_EQ(Field(status, "pools").number_value(), 1);
  bool nvme = false;
  for (const Value& t : Field(status, "tiers").list_value().values()) {
    if (Field(t.struct_value(), "kind").string_value() == "nvme") {
      nvme = true;
      EXPECT_EQ(Field(t.struct_value(), "capacity_bytes").number_value(), 64 << 20);
    }
  }
  EXPECT_TRUE(nvme) << r.out;
}

TEST_F(CtlTest, UnreachableAgentIsAnError) {
  CommandResult r = Ctl({"--socket", Path("nobody.sock"), "--timeout", "1", "status"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: UNAVAILABLE: ", 0), 0u) << r.err;
}

TEST(CtlTcpTest, AdminTokenOpensTheTcpListener) {
  AgentProcess agent({.dram = "16MiB", .nvme = "16MiB", .tcp = true});
  Status started = agent.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  ASSERT_FALSE(agent.tcp_address().empty());

  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {TOKENMEM_CTL_BINARY, "--address", agent.tcp_address()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : CommandResult{};
  };
  CommandResult r = run({"--admin-token-file", agent.admin_token_path(), "status", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_FALSE(Field(ParseJson(r.out), "version").string_value().empty());

  std::string wrong = (agent.dir() / "wrong-token").string();
  std::ofstream(wrong) << "not-the-token\n";
  r = run({"--admin-token-file", wrong, "pool", "list"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: ", 0), 0u) << r.err;
  EXPECT_EQ(r.err.find("not-the-token"), std::string::npos) << r.err;

  r = run({"pool", "list"});  // no token at all
  EXPECT_EQ(r.exit_code, 1) << r.out;

  r = run({"--admin-token-file", (agent.dir() / "absent").string(), "status"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("IO_ERROR"), std::string::npos) << r.err;
}

// mTLS on the TCP listener: tokenmemctl needs the CA, its own certificate
// and the token; each missing piece is refused with a clear message.
TEST(CtlTcpTest, MtlsNeedsCertificateAndToken) {
  tokenmem::testing::TempDir certs;
  const std::string d = certs.path().string();
  const std::string script =
      "set -e; cd '" + d +
      "'\n"
      "key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out $1 "
      "2>/dev/null; }\n"
      "key ca.key; openssl req -x509 -new -key ca.key -out ca.crt -days 2 -subj /CN=ca "
      "2>/dev/null\n"
      "leaf() { key $1.key; openssl req -new -key $1.key -out $1.csr -subj /CN=$1 2>/dev/null;\n"
      "  printf 'subjectAltName=%s\\n' \"$2\" > $1.ext;\n"
      "  openssl x509 -req -in $1.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out $1.crt "
      "-days 2 -extfile $1.ext 2>/dev/null; }\n"
      "leaf server DNS:localhost,IP:127.0.0.1\n"
      "leaf admin DNS:admin\n";
  std::ofstream(d + "/make.sh") << script;
  if (std::system(("bash '" + d + "/make.sh'").c_str()) != 0) {
    GTEST_SKIP() << "the openssl command-line tool could not make test certificates";
  }
  AgentProcess agent({.dram = "16MiB",
                      .nvme = "16MiB",
                      .tcp = true,
                      .control_yaml = "tls_cert_file: '" + d + "/server.crt', tls_key_file: '" + d +
                                      "/server.key', tls_client_ca_file: '" + d + "/ca.crt'"});
  Status started = agent.Start();
  ASSERT_TRUE(started.ok()) << started.ToString();
  auto run = [&](std::vector<std::string> extra) {
    std::vector<std::string> argv = {TOKENMEM_CTL_BINARY, "--address", agent.tcp_address(),
                                     "--timeout", "5"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto r = RunCommand(argv);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? *r : CommandResult{};
  };
  const std::vector<std::string> ca = {"--tls-ca", d + "/ca.crt"};
  const std::vector<std::string> cert = {"--tls-cert", d + "/admin.crt", "--tls-key",
                                         d + "/admin.key"};
  const std::vector<std::string> token = {"--token-file", agent.admin_token_path()};
  auto with = [](std::vector<std::vector<std::string>> parts, std::vector<std::string> tail) {
    std::vector<std::string> out;
    for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
    out.insert(out.end(), tail.begin(), tail.end());
    return out;
  };
  CommandResult r = run(with({ca, cert, token}, {"lease", "list"}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  r = run(with({ca, token}, {"lease", "list"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: UNAUTHENTICATED: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find("client certificate"), std::string::npos) << r.err;
  r = run(with({ca, cert}, {"lease", "list"}));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.err.rfind("tokenmemctl: UNAUTHENTICATED: ", 0), 0u) << r.err;
  r = run(with({token}, {"lease", "list"}));  // plain TCP to a TLS listener
  EXPECT_EQ(r.exit_code, 1) << r.out;
  r = run(with({cert, token}, {"status"}));  // a certificate without the CA
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("--tls-ca"), std::string::npos) << r.err;
}

std::vector<std::string> DemoArgs(const AgentProcess& agent) {
  return {TOKENMEM_DEMO_BINARY,
          "--socket",
          agent.socket_path(),
          "--sessions",
          "3",
          "--turns",
          "3",
          "--system-prompt-tokens",
          "256",
          "--user-tokens",
          "32",
          "--reply-tokens",
          "48",
          "--block-size",
          "16KiB",
          "--dram",
          "512KiB",
          "--nvme",
          "16MiB"};
}

// Runs the demo with DemoArgs plus `extra` and --json; the parsed report.
Struct RunDemoJson(const AgentProcess& agent, const std::vector<std::string>& extra,
                   std::string* progress = nullptr) {
  std::vector<std::string> argv = DemoArgs(agent);
  argv.insert(argv.end(), extra.begin(), extra.end());
  argv.push_back("--json");
  auto r = RunCommand(argv);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  if (!r.ok()) return Struct();
  EXPECT_EQ(r->exit_code, 0) << r->err << r->out;
  if (progress != nullptr) *progress = r->err;
  return ParseJson(r->out);
}

double TierHits(const Struct& report, const std::string& tier) {
  return Field(Field(Field(report, "hits_by_tier").struct_value(), tier).struct_value(), "hits")
      .number_value();
}

TEST_F(CtlTest, DemoReusesPrefixesAndVerifiesEveryBlockOverTheLocalPath) {
  std::string progress;
  Struct report = RunDemoJson(agent_, {}, &progress);
  EXPECT_TRUE(Field(report, "ok").bool_value());
  EXPECT_EQ(Field(report, "path").string_value(), "local");
  EXPECT_NE(Field(report, "path_description")
                .string_value()
                .find((agent_.dir() / "agent-data.sock").string()),
            std::string::npos);
  EXPECT_EQ(Field(report, "sessions").number_value(), 3);
  EXPECT_EQ(Field(report, "turns").number_value(), 3);
  EXPECT_GT(Field(report, "reused_tokens").number_value(), 0);
  EXPECT_GT(Field(report, "blocks_read").number_value(), 0);
  EXPECT_GT(Field(report, "blocks_stored").number_value(), 0);
  EXPECT_EQ(Field(report, "verification_failures").number_value(), 0);
  EXPECT_EQ(Field(report, "put_failures").number_value(), 0);
  EXPECT_TRUE(Field(report, "pool_created").bool_value());
  // The tiers come from the pool's counters: at least one hit per block read.
  EXPECT_EQ(Field(report, "hits_source").string_value(), "pool_counters");
  EXPECT_GE(TierHits(report, "dram") + TierHits(report, "cxl") + TierHits(report, "nvme"),
            Field(report, "blocks_read").number_value());
  // Progress went to stderr, one line per turn round.
  EXPECT_EQ(std::count(progress.begin(), progress.end(), '\n'), 3) << progress;

  // The pool stays for tokenmemctl to inspect; the blocks went through the
  // shared memory, and the agent saw them committed.
  CommandResult stats = Ctl({"stats", "--pool", "demo", "--json"});
  ASSERT_EQ(stats.exit_code, 0) << stats.err;
  Struct all_stats = ParseJson(stats.out);
  const Struct* demo = FindIn(all_stats, "pools", "pool", "demo");
  ASSERT_NE(demo, nullptr) << stats.out;
  EXPECT_EQ(Field(*demo, "puts").number_value(), Field(report, "blocks_stored").number_value());
  EXPECT_GE(Field(*demo, "hits").number_value(), Field(report, "blocks_read").number_value());
}

TEST_F(CtlTest, DemoOverTheControlPathReusesWhatTheLocalPathStored) {
  Struct local = RunDemoJson(agent_, {"--path", "local"});
  ASSERT_TRUE(Field(local, "ok").bool_value());

  Struct control = RunDemoJson(agent_, {"--path", "control"});
  EXPECT_TRUE(Field(control, "ok").bool_value());
  EXPECT_EQ(Field(control, "path").string_value(), "control");
  EXPECT_FALSE(Field(control, "pool_created").bool_value());
  // The same token keys and block bytes whatever the path: every prompt is
  // whole blocks here, and all of them were stored by the first run.
  EXPECT_EQ(Field(control, "blocks_stored").number_value(), 0);
  EXPECT_EQ(Field(control, "reused_tokens").number_value(),
            Field(control, "prompt_tokens").number_value());
  EXPECT_EQ(Field(control, "verification_failures").number_value(), 0);
  // Each read named its tier.
  EXPECT_EQ(Field(control, "hits_source").string_value(), "reads");
  EXPECT_EQ(TierHits(control, "dram") + TierHits(control, "cxl") + TierHits(control, "nvme"),
            Field(control, "blocks_read").number_value());
}

TEST_F(CtlTest, DemoHumanReport) {
  auto r = RunCommand(DemoArgs(agent_));
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_EQ(r->exit_code, 0) << r->err << r->out;
  EXPECT_NE(r->out.find("turn 3/3"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("local path (SDK, shared memory via " +
                        (agent_.dir() / "agent-data.sock").string() + ")"),
            std::string::npos)
      << r->out;
  EXPECT_NE(r->out.find("prefix tokens reused"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("every byte verified"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("Hits in pool demo during the run"), std::string::npos) << r->out;
  EXPECT_NE(r->out.find("tokenmemctl --socket " + agent_.socket_path() + " status"),
            std::string::npos)
      << r->out;
}

TEST_F(CtlTest, DemoSaysWhenTheDataSocketIsNotThere) {
  std::vector<std::string> argv = DemoArgs(agent_);
  std::string absent = (agent_.dir() / "absent-data.sock").string();
  argv.insert(argv.end(), {"--data-socket", absent});
  auto r = RunCommand(argv);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->exit_code, 1) << r->out;
  EXPECT_EQ(r->err.rfind("tokenmem-demo: Connect: UNAVAILABLE: ", 0), 0u) << r->err;
  EXPECT_NE(r->err.find(absent), std::string::npos) << r->err;
  // The lease the demo created is gone again.
  CommandResult leases = Ctl({"lease", "list", "--json"});
  ASSERT_EQ(leases.exit_code, 0) << leases.err;
  EXPECT_EQ(leases.out.find("tokenmem-demo"), std::string::npos) << leases.out;
}

}  // namespace
}  // namespace tokenmem::testing
