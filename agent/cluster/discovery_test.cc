#include "cluster/discovery.h"

#include <gtest/gtest.h>

#include <map>

namespace tokenmem::cluster {
namespace {

// A resolver whose answers the test sets; counts its calls.
struct FakeDns {
  std::map<std::string, Result<std::vector<std::string>>> answers;
  std::vector<std::string> asked;
  Resolver resolver() {
    return [this](const std::string& host) -> Result<std::vector<std::string>> {
      asked.push_back(host);
      auto it = answers.find(host);
      if (it == answers.end()) return Unavailable("no such name " + host);
      return it->second;
    };
  }
};

config::ClusterConfig Config(std::vector<std::string> peers, std::string dns) {
  config::ClusterConfig c;
  c.peers = std::move(peers);
  c.dns_name = std::move(dns);
  return c;
}

TEST(DiscoveryTest, StaticPeersAsGiven) {
  FakeDns dns;
  Discovery d(Config({"10.0.0.2:7080", "[fd00::3]:7080", "10.0.0.2:7080"}, ""), dns.resolver());
  EXPECT_EQ(d.Addresses(), (std::vector<std::string>{"10.0.0.2:7080", "[fd00::3]:7080"}));
  EXPECT_TRUE(d.Refresh().ok());
  EXPECT_TRUE(dns.asked.empty());  // nothing to resolve
  EXPECT_EQ(d.Addresses().size(), 2u);
}

TEST(DiscoveryTest, DnsRecordsEachWithThePort) {
  FakeDns dns;
  dns.answers.insert_or_assign(
      "peers.tokenmem.svc",
      std::vector<std::string>{"10.0.0.5", "fd00::7", "10.0.0.5", "10.0.0.6"});
  Discovery d(Config({"10.0.0.2:7080"}, "peers.tokenmem.svc:7081"), dns.resolver());
  EXPECT_EQ(d.Addresses(), (std::vector<std::string>{"10.0.0.2:7080"}));  // before any refresh
  Status s = d.Refresh();
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(dns.asked, (std::vector<std::string>{"peers.tokenmem.svc"}));
  EXPECT_EQ(d.Addresses(), (std::vector<std::string>{"10.0.0.2:7080", "10.0.0.5:7081",
                                                     "[fd00::7]:7081", "10.0.0.6:7081"}));
}

TEST(DiscoveryTest, DnsFailureKeepsTheLastGoodList) {
  FakeDns dns;
  dns.answers.insert_or_assign("peers", std::vector<std::string>{"10.0.0.5"});
  Discovery d(Config({}, "peers:7080"), dns.resolver());
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_EQ(d.Addresses(), (std::vector<std::string>{"10.0.0.5:7080"}));

  dns.answers.insert_or_assign("peers", Unavailable("server failure"));
  Status s = d.Refresh();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("peers:7080"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("server failure"), std::string::npos) << s.message();
  EXPECT_NE(s.message().find("keeping the last good list"), std::string::npos) << s.message();
  EXPECT_EQ(d.Addresses(), (std::vector<std::string>{"10.0.0.5:7080"}));

  dns.answers.insert_or_assign("peers", std::vector<std::string>{});  // no records: also kept
  s = d.Refresh();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_NE(s.message().find("no addresses"), std::string::npos) << s.message();
  EXPECT_EQ(d.Addresses(), (std::vector<std::string>{"10.0.0.5:7080"}));

  dns.answers.insert_or_assign("peers",
                               std::vector<std::string>{"10.0.0.9", "10.0.0.5"});  // recovered
  ASSERT_TRUE(d.Refresh().ok());
  EXPECT_EQ(d.Addresses(), (std::vector<std::string>{"10.0.0.9:7080", "10.0.0.5:7080"}));
}

TEST(DiscoveryTest, BadDnsNameIsReported) {
  FakeDns dns;
  Discovery d(Config({}, "no-port"), dns.resolver());
  Status s = d.Refresh();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("cluster.dns_name"), std::string::npos) << s.message();
  EXPECT_TRUE(d.Addresses().empty());
}

TEST(DiscoveryTest, JoinHostPortBracketsIpv6) {
  EXPECT_EQ(JoinHostPort("10.0.0.1", 7080), "10.0.0.1:7080");
  EXPECT_EQ(JoinHostPort("fd00::1", 7080), "[fd00::1]:7080");
  EXPECT_EQ(JoinHostPort("node-a.example", 1), "node-a.example:1");
}

TEST(DiscoveryTest, GetaddrinfoResolvesLiteralsAndReportsFailures) {
  auto v4 = ResolveWithGetaddrinfo("127.0.0.1");
  ASSERT_TRUE(v4.ok()) << v4.status().ToString();
  EXPECT_EQ(*v4, (std::vector<std::string>{"127.0.0.1"}));
  auto v6 = ResolveWithGetaddrinfo("::1");
  ASSERT_TRUE(v6.ok()) << v6.status().ToString();
  EXPECT_EQ(*v6, (std::vector<std::string>{"::1"}));
  // An empty name fails at once, without asking a DNS server (which a test may not reach).
  auto bad = ResolveWithGetaddrinfo("");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(bad.status().message().find("cannot resolve ''"), std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace tokenmem::cluster
