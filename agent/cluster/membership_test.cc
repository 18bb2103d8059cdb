#include "cluster/membership.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <random>

#include "cluster/rendezvous.h"

namespace tokenmem::cluster {
namespace {

using namespace std::chrono_literals;
using TimePoint = std::chrono::steady_clock::time_point;

// A clock the test moves by hand (read from the ping threads too).
struct FakeClock {
  std::atomic<int64_t> ms{1'000'000};
  Clock clock() {
    return [this] { return TimePoint(std::chrono::milliseconds(ms.load())); };
  }
  void Advance(std::chrono::milliseconds d) { ms += d.count(); }
};

// Peers answer with the node name set for their address, or fail.
struct FakePeers {
  std::mutex mu;
  std::map<std::string, Result<std::string>> answers;
  std::map<std::string, int> calls;
  void Set(const std::string& address, Result<std::string> answer) {
    std::lock_guard lock(mu);
    answers.insert_or_assign(address, std::move(answer));
  }
  int Calls(const std::string& address) {
    std::lock_guard lock(mu);
    return calls[address];
  }
  Pinger pinger() {
    return [this](const std::string& address) -> Result<std::string> {
      std::lock_guard lock(mu);
      ++calls[address];
      auto it = answers.find(address);
      if (it == answers.end()) return Unavailable("connection refused");
      return it->second;
    };
  }
};

struct FakeDns {
  std::mutex mu;
  Result<std::vector<std::string>> answer = std::vector<std::string>{};
  int calls = 0;
  void Set(Result<std::vector<std::string>> a) {
    std::lock_guard lock(mu);
    answer = std::move(a);
  }
  Resolver resolver() {
    return [this](const std::string&) {
      std::lock_guard lock(mu);
      ++calls;
      return answer;
    };
  }
};

class MembershipTest : public ::testing::Test {
 protected:
  std::unique_ptr<Membership> Make(std::vector<std::string> peers, std::string dns_name = "",
                                   ChangeCallback on_change = nullptr) {
    config::ClusterConfig c;
    c.peers = std::move(peers);
    c.dns_name = std::move(dns_name);
    c.heartbeat_interval_ms = 1000;
    c.heartbeat_timeout_ms = 3000;
    c.dns_refresh_ms = 10000;
    MembershipOptions o = MembershipOptionsFrom(c, "node-a", "10.0.0.1:7080");
    o.clock = clock_.clock();
    o.on_change = std::move(on_change);
    return std::make_unique<Membership>(
        std::move(o), std::make_unique<Discovery>(c, dns_.resolver()), peers_.pinger());
  }
  static std::vector<std::string> Nodes(const std::vector<Member>& members) {
    std::vector<std::string> out;
    for (const Member& m : members) out.push_back(m.node);
    return out;
  }

  FakeClock clock_;
  FakePeers peers_;
  FakeDns dns_;
};

TEST_F(MembershipTest, AloneThisAgentIsLiveAndOwnsEverything) {
  auto m = Make({});
  EXPECT_EQ(m->Live(), (std::vector<Member>{{"node-a", "10.0.0.1:7080", true}}));
  EXPECT_EQ(m->generation(), 1u);
  m->Tick();
  EXPECT_EQ(m->generation(), 1u);  // nothing changed
  auto owner = m->OwnerOf(BlockKey{1, 2});
  ASSERT_TRUE(owner.has_value());
  EXPECT_TRUE(owner->self);
  EXPECT_TRUE(m->OwnsLocally(BlockKey{3, 4}));
}

TEST_F(MembershipTest, PeersAreLiveWhileTheirLastAnswerIsYoungerThanTheTimeout) {
  peers_.Set("10.0.0.2:7080", std::string("node-b"));
  peers_.Set("10.0.0.3:7080", std::string("node-c"));
  auto m = Make({"10.0.0.3:7080", "10.0.0.2:7080"});
  m->Tick();
  EXPECT_EQ(m->Live(), (std::vector<Member>{{"node-a", "10.0.0.1:7080", true},
                                            {"node-b", "10.0.0.2:7080", false},
                                            {"node-c", "10.0.0.3:7080", false}}));
  EXPECT_EQ(m->generation(), 2u);
  auto c = m->counters();
  EXPECT_EQ(c.peers_known, 2u);
  EXPECT_EQ(c.peers_live, 2u);
  EXPECT_EQ(c.heartbeats_sent, 2u);
  EXPECT_EQ(c.heartbeats_failed, 0u);
  EXPECT_EQ(c.generation, 2u);

  // node-b stops answering at t=0 (its last answer).
  peers_.Set("10.0.0.2:7080", Unavailable("timed out"));
  clock_.Advance(1000ms);
  m->Tick();
  clock_.Advance(1000ms);
  m->Tick();
  clock_.Advance(999ms);
  m->Tick();  // 2999 ms since its last answer: still live
  EXPECT_EQ(Nodes(m->Live()), (std::vector<std::string>{"node-a", "node-b", "node-c"}));
  EXPECT_EQ(m->generation(), 2u);
  clock_.Advance(1ms);
  m->Tick();  // 3000 ms: gone
  EXPECT_EQ(Nodes(m->Live()), (std::vector<std::string>{"node-a", "node-c"}));
  EXPECT_EQ(m->generation(), 3u);
  c = m->counters();
  EXPECT_EQ(c.heartbeats_failed, 4u);
  EXPECT_EQ(c.heartbeats_sent, 10u);
  EXPECT_EQ(c.peers_known, 2u);
  EXPECT_EQ(c.peers_live, 1u);

  peers_.Set("10.0.0.2:7080", std::string("node-b"));  // back
  clock_.Advance(1000ms);
  m->Tick();
  EXPECT_EQ(Nodes(m->Live()), (std::vector<std::string>{"node-a", "node-b", "node-c"}));
  EXPECT_EQ(m->generation(), 4u);
}

TEST_F(MembershipTest, OwnAddressesAreSkipped) {
  // Listed under its configured address: never pinged. Under another one
  // (as DNS lists the pod): pinged once, recognised by its name, then skipped.
  peers_.Set("10.0.0.9:7080", std::string("node-a"));
  peers_.Set("10.0.0.2:7080", std::string("node-b"));
  auto m = Make({"10.0.0.1:7080", "10.0.0.9:7080", "10.0.0.2:7080"});
  m->Tick();
  m->Tick();
  EXPECT_EQ(peers_.Calls("10.0.0.1:7080"), 0);
  EXPECT_EQ(peers_.Calls("10.0.0.9:7080"), 1);
  EXPECT_EQ(peers_.Calls("10.0.0.2:7080"), 2);
  EXPECT_EQ(m->Live(), (std::vector<Member>{{"node-a", "10.0.0.1:7080", true},
                                            {"node-b", "10.0.0.2:7080", false}}));
  EXPECT_EQ(m->counters().peers_known, 1u);
}

TEST_F(MembershipTest, OneNodeAtTwoAddressesIsOneMember) {
  peers_.Set("10.0.0.2:7080", std::string("node-b"));
  peers_.Set("10.0.0.3:7080", std::string("node-b"));
  auto m = Make({"10.0.0.3:7080", "10.0.0.2:7080"});
  m->Tick();
  EXPECT_EQ(m->Live(), (std::vector<Member>{{"node-a", "10.0.0.1:7080", true},
                                            {"node-b", "10.0.0.2:7080", false}}));
  // The address heard from last wins.
  peers_.Set("10.0.0.2:7080", Unavailable("down"));
  clock_.Advance(1000ms);
  m->Tick();
  EXPECT_EQ(m->Live()[1].address, "10.0.0.3:7080");
}

TEST_F(MembershipTest, FailuresAndEmptyNamesAreNotLive) {
  peers_.Set("10.0.0.3:7080", std::string(""));
  auto m = Make({"10.0.0.2:7080", "10.0.0.3:7080"});  // .2 refuses
  m->Tick();
  EXPECT_EQ(Nodes(m->Live()), (std::vector<std::string>{"node-a"}));
  EXPECT_EQ(m->counters().heartbeats_failed, 2u);
  EXPECT_EQ(m->counters().peers_known, 2u);
  EXPECT_EQ(m->generation(), 1u);
}

TEST_F(MembershipTest, OwnerIsRendezvousOverLiveNodeNames) {
  peers_.Set("10.0.0.2:7080", std::string("node-b"));
  peers_.Set("10.0.0.3:7080", std::string("node-c"));
  auto m = Make({"10.0.0.2:7080", "10.0.0.3:7080"});
  m->Tick();
  const std::vector<std::string> ids = {"node-a", "node-b", "node-c"};
  const std::map<std::string, std::string> address = {
      {"node-a", "10.0.0.1:7080"}, {"node-b", "10.0.0.2:7080"}, {"node-c", "10.0.0.3:7080"}};
  std::mt19937_64 rng(9);
  std::map<std::string, int> seen;
  for (int i = 0; i < 3000; ++i) {
    BlockKey key{rng(), rng()};
    auto owner = m->OwnerOf(key);
    ASSERT_TRUE(owner.has_value());
    const std::string& want = ids[static_cast<size_t>(OwnerIndex(ids, key))];
    EXPECT_EQ(owner->node, want);
    EXPECT_EQ(owner->address, address.at(want));
    EXPECT_EQ(owner->self, want == "node-a");
    EXPECT_EQ(m->OwnsLocally(key), want == "node-a");
    ++seen[owner->node];
  }
  EXPECT_EQ(seen.size(), 3u);
}

TEST_F(MembershipTest, ChangesReachTheCallbackOnce) {
  std::vector<std::pair<std::vector<std::string>, uint64_t>> changes;
  peers_.Set("10.0.0.2:7080", std::string("node-b"));
  auto m = Make({"10.0.0.2:7080"}, "", [&](const std::vector<Member>& live, uint64_t gen) {
    changes.emplace_back(Nodes(live), gen);
  });
  m->Tick();
  m->Tick();
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_EQ(changes[0].first, (std::vector<std::string>{"node-a", "node-b"}));
  EXPECT_EQ(changes[0].second, 2u);
}

TEST_F(MembershipTest, DnsIsRefreshedEveryDnsRefreshAndFailuresKeepTheList) {
  dns_.Set(std::vector<std::string>{"10.0.0.2", "10.0.0.1"});  // the Service lists us too
  peers_.Set("10.0.0.2:7080", std::string("node-b"));
  auto m = Make({}, "peers.svc:7080");
  m->Tick();
  EXPECT_EQ(dns_.calls, 1);
  EXPECT_EQ(Nodes(m->Live()), (std::vector<std::string>{"node-a", "node-b"}));
  EXPECT_EQ(peers_.Calls("10.0.0.1:7080"), 0);  // our own address

  dns_.Set(Unavailable("SERVFAIL"));
  for (int i = 0; i < 9; ++i) {
    clock_.Advance(1000ms);
    m->Tick();
  }
  EXPECT_EQ(dns_.calls, 1);  // 9 s: not yet
  clock_.Advance(1000ms);
  m->Tick();
  EXPECT_EQ(dns_.calls, 2);
  EXPECT_EQ(m->counters().dns_failures, 1u);
  EXPECT_EQ(Nodes(m->Live()), (std::vector<std::string>{"node-a", "node-b"}));  // list kept

  // node-b's pod went away: DNS no longer lists it, so it leaves at once.
  dns_.Set(std::vector<std::string>{"10.0.0.1"});
  clock_.Advance(10000ms);
  m->Tick();
  EXPECT_EQ(Nodes(m->Live()), (std::vector<std::string>{"node-a"}));
  EXPECT_EQ(m->counters().peers_known, 0u);
}

TEST_F(MembershipTest, PingsOfOneRoundRunInParallel) {
  std::vector<std::string> addresses;
  for (int i = 2; i < 10; ++i) addresses.push_back("10.0.0." + std::to_string(i) + ":7080");
  config::ClusterConfig c;
  c.peers = addresses;
  MembershipOptions o = MembershipOptionsFrom(c, "node-a", "10.0.0.1:7080");
  std::atomic<int> calls{0};
  Membership m(std::move(o), std::make_unique<Discovery>(c), [&](const std::string& a) {
    ++calls;
    std::this_thread::sleep_for(100ms);
    return Result<std::string>("node-" + a);
  });
  auto start = std::chrono::steady_clock::now();
  m.Tick();
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(calls.load(), 8);
  EXPECT_LT(took, 500ms);  // 8 x 100 ms one after another would be 800 ms
  EXPECT_EQ(m.Live().size(), 9u);
}

TEST_F(MembershipTest, StartRunsRoundsAndStopIsPrompt) {
  peers_.Set("10.0.0.2:7080", std::string("node-b"));
  config::ClusterConfig c;
  c.peers = {"10.0.0.2:7080"};
  c.heartbeat_interval_ms = 60000;  // Stop must not wait for it
  c.heartbeat_timeout_ms = 120000;
  Membership m(MembershipOptionsFrom(c, "node-a", "10.0.0.1:7080"), std::make_unique<Discovery>(c),
               peers_.pinger());
  ASSERT_TRUE(m.Start().ok());
  EXPECT_EQ(m.Start().code(), StatusCode::kFailedPrecondition);
  auto deadline = std::chrono::steady_clock::now() + 1s;
  while (m.Live().size() < 2 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(1ms);
  }
  EXPECT_EQ(m.Live().size(), 2u);  // the first round runs at once
  auto start = std::chrono::steady_clock::now();
  m.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 200ms);
  m.Stop();  // idempotent

  Membership nameless(MembershipOptionsFrom(c, "", ""), std::make_unique<Discovery>(c),
                      peers_.pinger());
  EXPECT_EQ(nameless.Start().code(), StatusCode::kFailedPrecondition);
}

}  // namespace
}  // namespace tokenmem::cluster
