#include "k8s/reconciler.h"

#include <gtest/gtest.h>

#include <fstream>
#include <optional>
#include <thread>

#include "k8s/api_server_stub.h"
#include "k8s/http_kube_client.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::k8s {
namespace {

using namespace std::chrono_literals;

// Polls `done` for up to 1.5 s.
template <typename F>
bool Eventually(F done) {
  auto deadline = std::chrono::steady_clock::now() + 1500ms;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return done();
}

nlohmann::json PoolSpecJson(const std::string& dram) {
  return {{"blockSize", "4Ki"}, {"capacity", {{"dram", dram}}}};
}

class ReconcilerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 * 4096};
    auto manager = pool::PoolManager::Open(options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    pools_ = std::move(manager).value();
    ASSERT_TRUE(stub_.Up());
  }
  void TearDown() override {
    if (reconciler_) reconciler_->Stop();
    stub_.Down();
  }

  Reconciler& Start() {
    KubeClientOptions client_options;
    client_options.server = stub_.url();
    client_options.watch_idle_timeout = 100ms;
    client_options.connect_timeout = 100ms;
    auto client = HttpKubeClient::Create(client_options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    client_ = std::move(client).value();
    ReconcilerOptions options;
    options.node_name = "node-a";
    options.agent_version = "test";
    options.backoff_initial = 10ms;
    options.backoff_max = 40ms;
    options.node_status_interval = 50ms;
    options.managed_state_file = dir_ / "managed";
    reconciler_ = std::make_unique<Reconciler>(client_.get(), pools_.get(), options);
    EXPECT_TRUE(reconciler_->Start().ok());
    return *reconciler_;
  }

  // The Ready condition the stub holds for `name` (null when none).
  nlohmann::json Ready(const std::string& name) {
    auto object = stub_.Pool(name);
    if (object.is_null() || !object.contains("status")) return nullptr;
    for (const auto& c : object["status"].value("conditions", nlohmann::json::array())) {
      if (c.value("type", "") == "Ready") return c;
    }
    return nullptr;
  }
  bool ReadyIs(const std::string& name, const std::string& status, const std::string& reason) {
    auto c = Ready(name);
    return !c.is_null() && c.value("status", "") == status && c.value("reason", "") == reason;
  }
  uint64_t DramOf(const std::string& name) {
    auto p = pools_->Find(name);
    return p.ok() ? p.value()->spec().capacity.dram : 0;
  }

  tokenmem::testing::TempDir dir_;
  testing::ApiServerStub stub_;
  std::unique_ptr<pool::PoolManager> pools_;
  std::unique_ptr<HttpKubeClient> client_;
  std::unique_ptr<Reconciler> reconciler_;
};

TEST_F(ReconcilerTest, CreateModifyDeleteFollowTheObjects) {
  stub_.ApplyPool("listed", PoolSpecJson("16Ki"));  // there before the list
  Start();
  ASSERT_TRUE(Eventually([&] { return DramOf("listed") == 16384; }));
  ASSERT_TRUE(Eventually([&] { return ReadyIs("listed", "True", "Created"); }));

  stub_.ApplyPool("chat", PoolSpecJson("32Ki"));  // arrives by watch
  ASSERT_TRUE(Eventually([&] { return DramOf("chat") == 32768; }));
  ASSERT_TRUE(Eventually([&] { return ReadyIs("chat", "True", "Created"); }));
  EXPECT_EQ(Ready("chat")["observedGeneration"], 1);

  stub_.ApplyPool("chat", PoolSpecJson("64Ki"));
  ASSERT_TRUE(Eventually([&] { return DramOf("chat") == 65536; }));
  ASSERT_TRUE(Eventually([&] { return ReadyIs("chat", "True", "Replaced"); })) << Ready("chat");
  EXPECT_NE(Ready("chat")["message"].get<std::string>().find("dropped"), std::string::npos);
  EXPECT_NE(Ready("chat")["message"].get<std::string>().find("node-a"), std::string::npos);
  EXPECT_EQ(Ready("chat")["observedGeneration"], 2);

  stub_.DeletePool("chat");
  ASSERT_TRUE(Eventually([&] { return pools_->Find("chat").status().IsNotFound(); }));
  EXPECT_EQ(reconciler_->ManagedPools(), std::set<std::string>{"listed"});
  EXPECT_EQ(DramOf("listed"), 16384u);
}

TEST_F(ReconcilerTest, ScopeReachesThePoolAndAChangeReplacesIt) {
  auto spec = PoolSpecJson("16Ki");
  spec["scope"] = "cluster";
  stub_.ApplyPool("shared", spec);
  Start();
  auto scope_of = [&] {
    auto p = pools_->Find("shared");
    return p.ok() ? std::optional(p.value()->spec().scope) : std::nullopt;
  };
  ASSERT_TRUE(Eventually([&] { return scope_of() == pool::PoolScope::kCluster; }));
  ASSERT_TRUE(Eventually([&] { return ReadyIs("shared", "True", "Created"); }));

  spec["scope"] = "node";
  stub_.ApplyPool("shared", spec);
  ASSERT_TRUE(Eventually([&] { return scope_of() == pool::PoolScope::kLocal; }));
  ASSERT_TRUE(Eventually([&] { return ReadyIs("shared", "True", "Replaced"); })) << Ready("shared");
}

TEST_F(ReconcilerTest, StatusIsWrittenOnlyWhenItChanges) {
  stub_.ApplyPool("chat", PoolSpecJson("16Ki"));
  Start();
  ASSERT_TRUE(Eventually([&] { return ReadyIs("chat", "True", "Created"); }));
  int writes = stub_.status_writes();
  std::this_thread::sleep_for(200ms);  // our own status event came back meanwhile
  EXPECT_EQ(stub_.status_writes(), writes);
}

TEST_F(ReconcilerTest, InvalidObjectGetsAConditionThatSaysWhy) {
  Start();
  stub_.ApplyPool("bad", {{"blockSize", "4K"}, {"capacity", {{"dram", "16Ki"}}}});
  ASSERT_TRUE(Eventually([&] { return ReadyIs("bad", "False", "InvalidSpec"); }));
  EXPECT_NE(Ready("bad")["message"].get<std::string>().find("spec.blockSize"), std::string::npos);
  EXPECT_TRUE(pools_->Find("bad").status().IsNotFound());

  stub_.ApplyPool("huge", PoolSpecJson("1Gi"));  // more than the tier holds
  ASSERT_TRUE(Eventually([&] { return ReadyIs("huge", "False", "InsufficientCapacity"); }));

  // A valid pool turned invalid keeps its old definition.
  stub_.ApplyPool("chat", PoolSpecJson("16Ki"));
  ASSERT_TRUE(Eventually([&] { return DramOf("chat") == 16384; }));
  stub_.ApplyPool("chat", PoolSpecJson("16G"));
  ASSERT_TRUE(Eventually([&] { return ReadyIs("chat", "False", "InvalidSpec"); }));
  EXPECT_NE(Ready("chat")["message"].get<std::string>().find("previous definition"),
            std::string::npos);
  EXPECT_EQ(DramOf("chat"), 16384u);
}

TEST_F(ReconcilerTest, PoolsFromTheConfigFileAreNeverTouched) {
  pool::PoolSpec local;
  local.name = "local";
  local.block_size = 4096;
  local.capacity.dram = 8192;
  ASSERT_TRUE(pools_->Create(local).ok());
  Start();
  stub_.ApplyPool("local", PoolSpecJson("16Ki"));
  ASSERT_TRUE(Eventually([&] { return ReadyIs("local", "False", "ConflictsWithLocalPool"); }));
  EXPECT_EQ(DramOf("local"), 8192u);
  stub_.DeletePool("local");
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(DramOf("local"), 8192u);
  EXPECT_TRUE(reconciler_->ManagedPools().empty());
}

TEST_F(ReconcilerTest, GoneRelistsAndConverges) {
  Start();
  stub_.ApplyPool("a", PoolSpecJson("16Ki"));
  ASSERT_TRUE(Eventually([&] { return DramOf("a") == 16384; }));
  // Forget history: the next watch from the reconciler's version gets 410.
  stub_.Compact();
  stub_.ApplyPool("b", PoolSpecJson("16Ki"));
  stub_.DeletePool("a");
  ASSERT_TRUE(Eventually([&] { return reconciler_->gone_relists() >= 1; }));
  ASSERT_TRUE(Eventually([&] { return DramOf("b") == 16384 && !pools_->Find("a").ok(); }));
  EXPECT_GE(reconciler_->lists(), 2u);
}

TEST_F(ReconcilerTest, ServerDownRetriesWithBackoffAndKeepsPools) {
  stub_.ApplyPool("a", PoolSpecJson("16Ki"));
  stub_.Down();
  Start();
  ASSERT_TRUE(Eventually([&] { return reconciler_->failures() >= 3; }));
  std::this_thread::sleep_for(100ms);
  // Backoff: 10, 20, 40, 40... ms, so about a handful of tries, not hundreds.
  EXPECT_LT(reconciler_->failures(), 20u);
  EXPECT_TRUE(pools_->List().empty());

  ASSERT_TRUE(stub_.Up());
  ASSERT_TRUE(Eventually([&] { return DramOf("a") == 16384; }));

  // Down again: the pool stays, and it converges on what changed meanwhile.
  uint64_t failures = reconciler_->failures();
  stub_.Down();
  ASSERT_TRUE(Eventually([&] { return reconciler_->failures() > failures; }));
  EXPECT_EQ(DramOf("a"), 16384u);
  stub_.DeletePool("a");
  stub_.ApplyPool("c", PoolSpecJson("8Ki"));
  ASSERT_TRUE(stub_.Up());
  ASSERT_TRUE(Eventually([&] { return DramOf("c") == 8192 && !pools_->Find("a").ok(); }));
}

TEST_F(ReconcilerTest, ManagedSetSurvivesARestart) {
  stub_.ApplyPool("a", PoolSpecJson("16Ki"));
  Start();
  ASSERT_TRUE(Eventually([&] { return DramOf("a") == 16384; }));
  reconciler_->Stop();
  reconciler_.reset();
  stub_.DeletePool("a");
  Start();  // a new reconciler reads the set back and removes the orphan
  ASSERT_TRUE(Eventually([&] { return pools_->Find("a").status().IsNotFound(); }));
}

TEST_F(ReconcilerTest, NodeStatusReportsTiersAndPools) {
  stub_.ApplyPool("a", PoolSpecJson("16Ki"));
  Start();
  ASSERT_TRUE(Eventually([&] {
    auto node = stub_.Node("node-a");
    return !node.is_null() && node.contains("status") && node["status"].value("poolCount", 0) == 1;
  }));
  auto status = stub_.Node("node-a")["status"];
  EXPECT_EQ(status["health"], "Ready");
  EXPECT_EQ(status["agentVersion"], "test");
  EXPECT_EQ(status["capacityBytes"], 64 * 4096);
  ASSERT_EQ(status["tiers"].size(), 1u);
  EXPECT_EQ(status["tiers"][0]["tier"], "dram");
  EXPECT_EQ(status["tiers"][0]["reservedBytes"], 16384);
  EXPECT_EQ(status["pools"][0]["name"], "a");
  EXPECT_EQ(status["pools"][0]["capacityBytes"], 16384);
  EXPECT_EQ(stub_.Node("node-a")["spec"]["nodeName"], "node-a");
}

TEST(HttpKubeClientTest, SendsTheTokenFromItsFileAndListsWithAVersion) {
  tokenmem::testing::TempDir dir;
  { std::ofstream(dir / "token") << "s3cret\n"; }
  testing::ApiServerStub stub;
  ASSERT_TRUE(stub.Up());
  stub.ApplyPool("a", PoolSpecJson("16Ki"));
  auto client = HttpKubeClient::Create({.server = stub.url() + "/", .token_file = dir / "token"});
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto list = client.value()->List(kPoolPlural);
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->items.size(), 1u);
  EXPECT_EQ(list->resource_version, "101");
  EXPECT_EQ(stub.last_authorization(), "Bearer s3cret");
  EXPECT_TRUE(client.value()->Get(kNodePlural, "nobody").status().IsNotFound());
  // Too old a version: the watch says gone.
  stub.Compact();
  Status watched = client.value()->Watch(
      kPoolPlural, "101", [](const WatchEvent&) {}, [] { return false; });
  EXPECT_TRUE(IsGone(watched)) << watched.ToString();
  stub.Down();
  EXPECT_EQ(client.value()->List(kPoolPlural).status().code(), StatusCode::kUnavailable);
}

TEST(KubeconfigTest, ReadsTheCurrentContext) {
  tokenmem::testing::TempDir dir;
  std::ofstream(dir / "config") << R"(apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: other
  cluster: {server: "http://wrong:1"}
- name: kind
  cluster: {server: "http://127.0.0.1:8001", certificate-authority: /etc/ca.crt}
users:
- name: me
  user: {tokenFile: /var/run/token}
contexts:
- name: dev
  context: {cluster: kind, user: me}
)";
  auto options = LoadKubeconfig(dir / "config");
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->server, "http://127.0.0.1:8001");
  EXPECT_EQ(options->ca_file, "/etc/ca.crt");
  EXPECT_EQ(options->token_file, "/var/run/token");

  std::ofstream(dir / "broken") << "current-context: nope\ncontexts: []\n";
  auto broken = LoadKubeconfig(dir / "broken");
  EXPECT_EQ(broken.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(broken.status().message().find("nope"), std::string::npos)
      << broken.status().ToString();
  EXPECT_FALSE(LoadKubeconfig(dir / "absent").ok());
}

TEST(HttpKubeClientTest, RefusesWhatItCannotSpeak) {
  EXPECT_EQ(HttpKubeClient::Create(
                {.server = "https://kubernetes.default.svc", .ca_file = "/nonexistent/ca.crt"})
                .status()
                .code(),
            StatusCode::kNotFound);
  EXPECT_EQ(HttpKubeClient::Create({.server = "kubernetes:443"}).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::k8s
