// Three real agents on loopback form a cluster: a block put through agent A
// is read through agent C; agent B is killed and the survivors take over
// its keys; B comes back and ownership settles again.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent_fixture.h"
#include "cluster/rendezvous.h"
#include "tokenmem/client.h"

namespace tokenmem {
namespace {

constexpr size_t kBlock = 64 * 1024;

uint16_t FreePort() {
  auto port = testing::FreeLoopbackPort();
  EXPECT_TRUE(port.ok()) << port.status().ToString();
  return static_cast<uint16_t>(port.ok() ? *port : 0);
}

std::vector<std::byte> Block(const BlockKey& key) {
  std::vector<std::byte> v(kBlock);
  for (size_t i = 0; i < v.size(); ++i) {
    v[i] = std::byte(static_cast<uint8_t>(key.lo * 13 + key.hi * 7 + i * 31 + (i >> 8)));
  }
  return v;
}

class ClusterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    secret_ = std::filesystem::temp_directory_path() /
              ("tokenmem-cluster-secret-" + std::to_string(getpid()));
    std::ofstream(secret_) << "shared-cluster-secret\n";
    const std::vector<std::string> names = {"node-a", "node-b", "node-c"};
    for (int i = 0; i < 3; ++i) addresses_.push_back("127.0.0.1:" + std::to_string(FreePort()));
    for (int i = 0; i < 3; ++i) {
      std::string peers;
      for (int j = 0; j < 3; ++j) {
        if (j == i) continue;
        peers += (peers.empty() ? "\"" : ", \"") + addresses_[j] + "\"";
      }
      testing::AgentOptions o;
      http_ports_.push_back(FreePort());
      o.http_listen = "127.0.0.1:" + std::to_string(http_ports_.back());
      o.pools = {{.name = "shared", .block_size = "64KiB", .dram = "16MiB", .scope = "cluster"}};
      o.extra_yaml = "node_name: " + names[i] + "\nremote: {listen: \"" + addresses_[i] +
                     "\"}\ncluster: {peers: [" + peers + "], secret_file: \"" + secret_.string() +
                     "\", heartbeat_interval_ms: 100, heartbeat_timeout_ms: 600}\n";
      agents_.push_back(std::make_unique<testing::AgentProcess>(o));
    }
    for (auto& agent : agents_) {
      Status s = agent->Start();
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }

  void TearDown() override {
    agents_.clear();
    std::filesystem::remove(secret_);
  }

  std::shared_ptr<Pool> Attach(int agent) {
    auto lease = agents_[agent]->CreateLease(256ull << 20);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    auto colon = lease->find(':');
    ClientOptions options;
    options.agent_address = addresses_[agent];
    options.lease_id = lease->substr(0, colon);
    options.lease_secret = lease->substr(colon + 1);
    options.timeout = std::chrono::seconds(5);
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    auto pool = (*client)->Attach("shared");
    EXPECT_TRUE(pool.ok()) << pool.status().ToString();
    return *pool;
  }

  // The pool through agent `agent`'s local shared-memory path (its data
  // socket), as an engine on that node uses it.
  std::shared_ptr<Pool> AttachLocal(int agent) {
    auto lease = agents_[agent]->CreateLease(256ull << 20);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    auto colon = lease->find(':');
    ClientOptions options;
    options.socket_path = (agents_[agent]->dir() / "agent-data.sock").string();
    options.lease_id = lease->substr(0, colon);
    options.lease_secret = lease->substr(colon + 1);
    options.timeout = std::chrono::seconds(5);
    auto client = Client::Connect(options);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    if (!client.ok()) return nullptr;
    auto pool = (*client)->Attach("shared");
    EXPECT_TRUE(pool.ok()) << pool.status().ToString();
    if (!pool.ok()) return nullptr;
    EXPECT_FALSE((*pool)->remote());
    return *pool;
  }

  static std::string Owner(const BlockKey& key, std::vector<std::string> live) {
    return live[cluster::OwnerIndex(live, key)];
  }

  static void PutAll(Pool& pool, const std::vector<BlockKey>& keys) {
    for (const auto& key : keys) {
      auto data = Block(key);
      Status s = pool.Put(key, data);
      ASSERT_TRUE(s.ok()) << s.ToString();
    }
  }

  // Reads every key through `pool` until all are there and exact (puts are
  // forwarded asynchronously and membership settles by heartbeats).
  static bool ReadAll(Pool& pool, const std::vector<BlockKey>& keys, std::string* why) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::vector<std::byte> out(kBlock);
    while (true) {
      size_t good = 0;
      for (const auto& key : keys) {
        auto got = pool.Get(key, out);
        if (got.ok() && *got == kBlock && out == Block(key)) ++good;
      }
      if (good == keys.size()) return true;
      if (std::chrono::steady_clock::now() > deadline) {
        *why = std::to_string(good) + " of " + std::to_string(keys.size()) + " readable";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  // One sample of agent `agent`'s /metrics ("" when absent).
  double Metric(int agent, const std::string& name) {
    httplib::Client http("127.0.0.1", http_ports_[agent]);
    auto res = http.Get("/metrics");
    if (!res || res->status != 200) return -1;
    std::istringstream lines(res->body);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind(name + " ", 0) == 0) return std::stod(line.substr(name.size() + 1));
    }
    return -1;
  }

  // How many GET requests agent `agent`'s remote listener has answered.
  double RemoteGets(int agent) {
    httplib::Client http("127.0.0.1", http_ports_[agent]);
    auto res = http.Get("/metrics");
    if (!res || res->status != 200) return -1;
    std::istringstream lines(res->body);
    std::string line;
    const std::string family = "tokenmem_operation_duration_seconds_count{";
    while (std::getline(lines, line)) {
      if (line.rfind(family, 0) == 0 && line.find("operation=\"get\"") != std::string::npos &&
          line.find("path=\"remote\"") != std::string::npos) {
        return std::stod(line.substr(line.rfind(' ') + 1));
      }
    }
    return 0;  // none answered yet
  }

  std::filesystem::path secret_;
  std::vector<uint16_t> http_ports_;
  std::vector<std::string> addresses_;
  std::vector<std::unique_ptr<testing::AgentProcess>> agents_;
};

TEST_F(ClusterTest, PrefixWrittenOnOneNodeIsReusedOnAnotherAndSurvivesAMemberLeaving) {
  const std::vector<std::string> all = {"node-a", "node-b", "node-c"};
  const std::vector<std::string> survivors = {"node-a", "node-c"};
  auto a = Attach(0);
  auto c = Attach(2);
  ASSERT_TRUE(a && c);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // first heartbeats

  // A block put through A is read through C, whoever owns it.
  std::vector<BlockKey> first;
  for (uint64_t i = 0; i < 48; ++i) first.push_back({0xA, i});
  PutAll(*a, first);
  std::vector<BlockKey> read_now, read_later;
  for (const auto& key : first) (read_now.size() < 12 ? read_now : read_later).push_back(key);
  std::string why;
  ASSERT_TRUE(ReadAll(*c, read_now, &why)) << why;
  int owned_by_b = 0;
  for (const auto& key : read_now) owned_by_b += Owner(key, all) == "node-b";
  EXPECT_GT(owned_by_b, 0) << "the sample should include keys that only B held";
  EXPECT_EQ(Metric(2, "tokenmem_cluster_peers_up"), 2);
  {
    httplib::Client http("127.0.0.1", http_ports_[2]);
    auto status = http.Get("/v1/status");
    ASSERT_TRUE(status && status->status == 200);
    EXPECT_NE(status->body.find("\"node\":\"node-a\""), std::string::npos) << status->body;
    EXPECT_NE(status->body.find("\"node\":\"node-b\""), std::string::npos) << status->body;
    EXPECT_NE(status->body.find(addresses_[0]), std::string::npos) << status->body;
  }
  EXPECT_GT(Metric(2, "tokenmem_cluster_owner_hits_total"), 0);
  EXPECT_GT(Metric(0, "tokenmem_cluster_forwarded_puts_total"), 0);

  // B goes away. Keys it did not own stay readable through C (C has not read
  // them yet: they come from A or are already on C).
  ASSERT_TRUE(agents_[1]->Kill(SIGKILL).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // past the heartbeat timeout
  std::vector<BlockKey> not_b;
  for (const auto& key : read_later) {
    if (Owner(key, all) != "node-b") not_b.push_back(key);
  }
  ASSERT_FALSE(not_b.empty());
  ASSERT_TRUE(ReadAll(*c, not_b, &why)) << why;
  EXPECT_EQ(Metric(2, "tokenmem_cluster_peers_up"), 1);

  // New puts go to the survivors: everything put through A now is readable
  // through C, including keys that B would have owned.
  std::vector<BlockKey> second;
  for (uint64_t i = 0; i < 48; ++i) second.push_back({0xB, i});
  PutAll(*a, second);
  int would_be_b = 0;
  for (const auto& key : second) would_be_b += Owner(key, all) == "node-b";
  EXPECT_GT(would_be_b, 0);
  ASSERT_TRUE(ReadAll(*c, second, &why)) << why;

  // B comes back; ownership settles over three members again: blocks put
  // through A that B owns are forwarded to B, and B serves them itself.
  Status restarted = agents_[1]->Start();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  auto b = Attach(1);
  ASSERT_TRUE(b);
  std::this_thread::sleep_for(std::chrono::milliseconds(800));
  std::vector<BlockKey> third, owned_by_b_now;
  for (uint64_t i = 0; i < 48; ++i) third.push_back({0xC, i});
  PutAll(*a, third);
  for (const auto& key : third) {
    if (Owner(key, all) == "node-b") owned_by_b_now.push_back(key);
  }
  ASSERT_FALSE(owned_by_b_now.empty());
  ASSERT_TRUE(ReadAll(*b, owned_by_b_now, &why)) << why;
  ASSERT_TRUE(ReadAll(*c, third, &why)) << why;
}

// Blocks put while B was away, owned by A then and by B once it is back,
// are handed to B, so C's misses on them are served by B.
TEST_F(ClusterTest, BlocksMoveToTheirNewOwnerWhenItJoins) {
  const std::vector<std::string> all = {"node-a", "node-b", "node-c"};
  const std::vector<std::string> without_b = {"node-a", "node-c"};
  ASSERT_TRUE(agents_[1]->Kill(SIGKILL).ok());
  auto a = Attach(0);
  auto c = Attach(2);
  ASSERT_TRUE(a && c);
  std::this_thread::sleep_for(std::chrono::milliseconds(1200));  // B is gone for A and C
  ASSERT_EQ(Metric(0, "tokenmem_cluster_peers_up"), 1);

  std::vector<BlockKey> keys, moving;
  for (uint64_t i = 0; i < 64; ++i) {
    keys.push_back({0x10, i});
    if (Owner(keys.back(), without_b) == "node-a" && Owner(keys.back(), all) == "node-b") {
      moving.push_back(keys.back());
    }
  }
  ASSERT_GE(moving.size(), 3u);
  PutAll(*a, keys);

  Status restarted = agents_[1]->Start();
  ASSERT_TRUE(restarted.ok()) << restarted.ToString();
  // B is live for everyone and A has queued the moved blocks for it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (
      (Metric(0, "tokenmem_cluster_peers_up") != 2 || Metric(2, "tokenmem_cluster_peers_up") != 2 ||
       Metric(0, "tokenmem_cluster_handoff_blocks_total") < static_cast<double>(moving.size())) &&
      std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_GE(Metric(0, "tokenmem_cluster_handoff_blocks_total"), static_cast<double>(moving.size()));
  // C never held these (A owned them); B, their owner now, serves them.
  std::string why;
  EXPECT_TRUE(ReadAll(*c, moving, &why)) << why;
  EXPECT_GT(Metric(2, "tokenmem_cluster_owner_hits_total"), 0);
}

// A batch of local misses asks each owner once, for all of its keys.
TEST_F(ClusterTest, MissesAskEachOwnerOnceForAllItsKeys) {
  const std::vector<std::string> all = {"node-a", "node-b", "node-c"};
  auto a = Attach(0);
  auto c = Attach(2);
  ASSERT_TRUE(a && c);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // first heartbeats

  std::vector<BlockKey> keys;
  int forwarded = 0, on_a = 0, on_b = 0;
  for (uint64_t i = 0; i < 24; ++i) {
    keys.push_back({0xF, i});
    const std::string owner = Owner(keys.back(), all);
    on_a += owner == "node-a";
    on_b += owner == "node-b";
    forwarded += owner != "node-a";
  }
  ASSERT_GE(on_a, 2);
  ASSERT_GE(on_b, 2);
  PutAll(*a, keys);
  // Wait until A has handed the other owners their blocks.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (Metric(0, "tokenmem_cluster_forwarded_puts_total") < forwarded &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ASSERT_GE(Metric(0, "tokenmem_cluster_forwarded_puts_total"), forwarded);

  const double gets_a = RemoteGets(0), gets_b = RemoteGets(1);
  const double asked = std::max(0.0, Metric(2, "tokenmem_cluster_owner_gets_total"));
  // One batched read through C: C holds its own keys; A's and B's it asks for.
  std::vector<std::vector<std::byte>> outs(keys.size(), std::vector<std::byte>(kBlock));
  std::vector<IoVec> pieces;
  std::vector<BlockIo> items;
  for (auto& out : outs) pieces.push_back({out.data(), out.size()});
  for (size_t i = 0; i < keys.size(); ++i) items.push_back({keys[i], {&pieces[i], 1}});
  std::vector<IoResult> results(keys.size());
  Status s = c->GetMany(items, results);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (size_t i = 0; i < keys.size(); ++i) {
    EXPECT_EQ(results[i].code, StatusCode::kOk) << "key " << i;
    EXPECT_EQ(outs[i], Block(keys[i])) << "key " << i;
  }
  EXPECT_EQ(Metric(2, "tokenmem_cluster_owner_gets_total") - asked, on_a + on_b);
  EXPECT_EQ(RemoteGets(0) - gets_a, 1) << "A was asked once for its " << on_a << " keys";
  EXPECT_EQ(RemoteGets(1) - gets_b, 1) << "B was asked once for its " << on_b << " keys";
}

// The same reuse through the local shared-memory path that engines use:
// commits on A are forwarded to their owners, and C's local misses (gets
// and prefix lookups) are fetched from the owners into C's memory.
TEST_F(ClusterTest, LocalPathPutOnOneNodeIsReadAndPrefixMatchedOnAnother) {
  const std::vector<std::string> all = {"node-a", "node-b", "node-c"};
  auto a = AttachLocal(0);
  auto c = AttachLocal(2);
  ASSERT_TRUE(a && c);
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // first heartbeats

  std::vector<BlockKey> blocks;
  for (uint64_t i = 0; i < 48; ++i) blocks.push_back({0xD, i});
  PutAll(*a, blocks);
  std::string why;
  ASSERT_TRUE(ReadAll(*c, blocks, &why)) << why;
  int owned_by_b = 0;
  for (const auto& key : blocks) owned_by_b += Owner(key, all) == "node-b";
  EXPECT_GT(owned_by_b, 0) << "the sample should include keys that only B held";
  EXPECT_GT(Metric(0, "tokenmem_cluster_forwarded_puts_total"), 0);  // A's local commits
  EXPECT_GT(Metric(2, "tokenmem_cluster_owner_hits_total"), 0);      // C's local misses

  // A chain put through A: C matches all of it, then reads it exactly.
  std::vector<BlockKey> chain;
  for (uint64_t i = 0; i < 64; ++i) chain.push_back({0xE, i});
  PutAll(*a, chain);
  std::vector<BlockKey> longer = chain;
  longer.push_back({0xE, 1000});  // put nowhere
  uint32_t matched = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((matched = c->LookupPrefix(longer)) < chain.size() &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // forwards still in flight
  }
  EXPECT_EQ(matched, chain.size());
  ASSERT_TRUE(ReadAll(*c, chain, &why)) << why;
}

}  // namespace
}  // namespace tokenmem
