#include "http/agent_http.h"

#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>

#include "http/test_store.h"

namespace tokenmem::http {
namespace {

using testing::Find;
using testing::ParseSamples;
using testing::TestStore;

// A Unix socket that accepts connections (the backlog takes them), standing
// in for the control server.
class ListeningSocket {
 public:
  explicit ListeningSocket(const std::filesystem::path& path) : path_(path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_GE(fd_, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0) << errno;
    EXPECT_EQ(::listen(fd_, 64), 0) << errno;
  }
  ~ListeningSocket() { Close(); }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
    ::unlink(path_.c_str());
  }

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

class AgentHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool_ = store_.CreatePool("chat");
    ASSERT_TRUE(pool_);
    store_.Traffic(*pool_, 6);
    AgentHttpOptions o;
    o.listen = "127.0.0.1:0";
    o.facts.version = "1.2.3";
    o.facts.node_name = "node-a";
    o.facts.control_socket = socket_path_;
    o.facts.tiers = {{pool::TierKind::kDram, {0}, 64 * testing::kBlock, ""},
                     {pool::TierKind::kNvme, {}, 256 * testing::kBlock, nvme_dir_.string()}};
    o.pools = store_.pools.get();
    o.leases = &store_.leases;
    o.metrics = &metrics_;
    auto http = AgentHttp::Start(o);
    ASSERT_TRUE(http.ok()) << http.status().ToString();
    http_ = std::move(http).value();
    client_ = std::make_unique<httplib::Client>("127.0.0.1", http_->port());
  }

  httplib::Result Get(const std::string& path) { return client_->Get(path); }

  TestStore store_;
  std::shared_ptr<pool::Pool> pool_;
  AgentMetrics metrics_;
  std::filesystem::path socket_path_ = store_.dir_ / "agent.sock";
  std::filesystem::path nvme_dir_ = store_.dir_.path();
  ListeningSocket control_{socket_path_};
  std::unique_ptr<AgentHttp> http_;
  std::unique_ptr<httplib::Client> client_;
};

TEST_F(AgentHttpTest, HealthzAnswersOk) {
  auto res = Get("/healthz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ok\n");
}

TEST_F(AgentHttpTest, ReadyzFollowsTheControlSocketAndShutdown) {
  auto res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "ready\n");

  control_.Close();
  res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("control socket " + socket_path_.string() + " does not answer"),
            std::string::npos)
      << res->body;

  ListeningSocket again(socket_path_);
  res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  http_->SetStopping();
  res = Get("/readyz");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_NE(res->body.find("shutting down"), std::string::npos) << res->body;
  res = Get("/healthz");  // still alive
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(ReadinessTest, ChecksNvmeDirectoriesAndTiers) {
  tokenmem::testing::TempDir dir;
  AgentFacts facts;
  EXPECT_EQ(ReadinessProblems(facts, false), std::vector<std::string>{"no tier has capacity"});
  facts.tiers = {{pool::TierKind::kNvme, {}, 1 << 20, (dir / "absent").string()}};
  auto problems = ReadinessProblems(facts, false);
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("is missing"), std::string::npos) << problems[0];
  facts.tiers[0].path = dir.path().string();
  EXPECT_TRUE(ReadinessProblems(facts, false).empty());
  EXPECT_EQ(ReadinessProblems(facts, true).size(), 1u);
}

TEST_F(AgentHttpTest, MetricsServeTheTextFormat) {
  metrics_.ObserveOperation(DataPath::kControl, "get", std::chrono::microseconds(80), true);
  auto res = Get("/metrics");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; version=0.0.4; charset=utf-8");
  auto s = ParseSamples(res->body);
  EXPECT_EQ(Find(s, "tokenmem_agent_info", {{"version", "1.2.3"}, {"node_name", "node-a"}}), 1);
  EXPECT_EQ(Find(s, "tokenmem_puts_total", {{"pool", "chat"}}), 6);
  EXPECT_EQ(Find(s, "tokenmem_operation_duration_seconds_count",
                 {{"operation", "get"}, {"path", "control"}}),
            1);
  EXPECT_EQ(res->body.find(store_.secret), std::string::npos);
  EXPECT_EQ(res->body.find(store_.lease->id()), std::string::npos);
}

TEST_F(AgentHttpTest, StatusIsJsonWithoutSecrets) {
  auto res = Get("/v1/status");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");
  const std::string& body = res->body;
  for (const char* part :
       {"\"version\":\"1.2.3\"", "\"node_name\":\"node-a\"", "\"ready\":true", "\"problems\":[]",
        "\"tiers\":[{\"tier\":\"dram\",\"numa_nodes\":[0],",
        "{\"tier\":\"nvme\",\"numa_nodes\":[],",
        "\"pools\":[{\"name\":\"chat\",\"block_size\":4096,\"eviction\":\"lru\"",
        "\"puts\":6,\"gets\":7,\"hits\":6,\"misses\":1,", "\"prefix_keys_matched\":6",
        "\"leases\":{\"count\":1,", "\"owner\":\"test-owner\"", "\"peers\":[]"}) {
    EXPECT_NE(body.find(part), std::string::npos) << part << "\n" << body;
  }
  EXPECT_NE(body.find("\"id\":\"" + store_.lease->id() + "\""), std::string::npos);
  EXPECT_EQ(body.find(store_.secret), std::string::npos) << "the lease secret leaked";
  EXPECT_EQ(body.find("secret"), std::string::npos);
  EXPECT_EQ(body.back(), '\n');
}

TEST_F(AgentHttpTest, UnknownPathsAre404AndWritesAre405) {
  for (const char* path : {"/", "/metrics/x", "/v1", "/v1/status/", "/v2/status", "/debug"}) {
    auto res = Get(path);
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 404) << path;
  }
  for (const char* path : {"/metrics", "/healthz", "/readyz", "/v1/status"}) {
    auto res = client_->Post(path, "{}", "application/json");
    ASSERT_TRUE(res) << path;
    EXPECT_EQ(res->status, 405) << path;
  }
}

TEST_F(AgentHttpTest, StopEndsServing) {
  const int port = http_->port();
  http_->Stop();
  http_->Stop();
  httplib::Client after("127.0.0.1", port);
  after.set_connection_timeout(std::chrono::milliseconds(300));
  EXPECT_FALSE(after.Get("/healthz"));
}

TEST(AgentHttpStartTest, RefusesMissingPartsAndBadAddresses) {
  AgentMetrics metrics;
  AgentHttpOptions o;
  o.listen = "127.0.0.1:0";
  EXPECT_EQ(AgentHttp::Start(o).status().code(), StatusCode::kInvalidArgument);
  TestStore store;
  o.pools = store.pools.get();
  o.leases = &store.leases;
  o.metrics = &metrics;
  o.listen = "nonsense";
  EXPECT_EQ(AgentHttp::Start(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::http
