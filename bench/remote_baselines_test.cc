#include "remote_baselines.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cerrno>
#include <chrono>
#include <vector>

#include "resp_client.h"

namespace tokenmem::bench {
namespace {

bool ProcessGone(pid_t pid) { return ::kill(pid, 0) == -1 && errno == ESRCH; }

#define SKIP_WITHOUT(program) \
  if (!ProgramOnPath(program)) GTEST_SKIP() << program " is not installed"

TEST(ProgramOnPathTest, FindsShellNotNonsense) {
  EXPECT_TRUE(ProgramOnPath("sh"));
  EXPECT_FALSE(ProgramOnPath("tokenmem-no-such-program"));
  EXPECT_FALSE(ProgramOnPath(""));
}

TEST(RedisServerTest, RoundTripsOneMebibyteByteExactly) {
  SKIP_WITHOUT("redis-server");
  auto server = RedisServer::Start();
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto client = RespClient::Connect((*server)->port());
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  RespClient& c = **client;
  ASSERT_TRUE(c.Ping().ok());

  std::vector<std::byte> value(1 << 20);
  for (size_t i = 0; i < value.size(); ++i) value[i] = static_cast<std::byte>(i * 131 + (i >> 9));
  // CRLF inside the value must not confuse either side.
  value[100] = std::byte{'\r'};
  value[101] = std::byte{'\n'};
  Status set = c.Set("one-mib", value);
  ASSERT_TRUE(set.ok()) << set.ToString();
  std::vector<std::byte> got(value.size() + 10, std::byte{0});
  auto n = c.Get("one-mib", got);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  ASSERT_EQ(*n, value.size());
  EXPECT_TRUE(std::equal(value.begin(), value.end(), got.begin()));

  EXPECT_TRUE(c.Get("absent", got).status().IsNotFound());
  std::vector<std::byte> small(1000);
  EXPECT_EQ(c.Get("one-mib", small).status().code(), StatusCode::kResourceExhausted);
  EXPECT_TRUE(c.Ping().ok());  // in step after the refused value

  EXPECT_TRUE(c.ConfigSet("maxmemory", "0").ok());
  Status bad = c.ConfigSet("no-such-parameter", "1");
  EXPECT_EQ(bad.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(bad.message().find("ERR"), std::string::npos) << bad.ToString();
  auto size = c.Command({"DBSIZE"});
  ASSERT_TRUE(size.ok()) << size.status().ToString();
  EXPECT_EQ(size->integer, 1);
  EXPECT_TRUE(c.FlushAll().ok());
}

TEST(RedisServerTest, ServerAndDirectoryGoAwayOnDestruction) {
  SKIP_WITHOUT("redis-server");
  auto a = RedisServer::Start();
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  auto b = RedisServer::Start();
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_NE((*a)->port(), (*b)->port());
  const pid_t pid_a = (*a)->pid(), pid_b = (*b)->pid();
  const auto dir_a = (*a)->directory();
  EXPECT_TRUE(std::filesystem::is_directory(dir_a));
  EXPECT_FALSE(ProcessGone(pid_a));
  a = NotFound("destroyed");
  b = NotFound("destroyed");
  EXPECT_TRUE(ProcessGone(pid_a));
  EXPECT_TRUE(ProcessGone(pid_b));
  EXPECT_FALSE(std::filesystem::exists(dir_a));
}

TEST(MeasureRedisTest, ShortCaseGivesSaneNumbers) {
  SKIP_WITHOUT("redis-server");
  auto server = RedisServer::Start();
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const auto start = std::chrono::steady_clock::now();
  auto r = MeasureRedis((*server)->port(), 64 << 10, 2, 0.2, 8);
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  const ThroughputLatency& get = r->get;
  EXPECT_EQ(get.value_bytes, 64u << 10);
  EXPECT_EQ(get.concurrency, 2u);
  EXPECT_GT(get.operations, 0u);
  EXPECT_GE(get.seconds, 0.2);
  EXPECT_LT(get.seconds, 1.0);
  EXPECT_GT(get.bytes_per_second, 0);
  EXPECT_NEAR(get.bytes_per_second, get.operations * 65536.0 / get.seconds, 1.0);
  EXPECT_GT(get.p50_us, 0);
  EXPECT_GE(get.p99_us, get.p50_us);
  EXPECT_EQ(r->set.operations, 16u);  // 2 threads x 8 keys
  EXPECT_GT(r->set.bytes_per_second, 0);
  EXPECT_GE(r->set.p99_us, r->set.p50_us);
  EXPECT_LT(elapsed, 2.0);
  // The database is left empty.
  auto client = RespClient::Connect((*server)->port());
  ASSERT_TRUE(client.ok());
  auto size = (*client)->Command({"DBSIZE"});
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(size->integer, 0);
}

TEST(MeasureRedisTest, RefusesBadArguments) {
  EXPECT_EQ(MeasureRedis(1, 0, 1, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureRedis(1, 1024, 0, 1).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MeasureRedis(1, 1024, 1, 0).status().code(), StatusCode::kInvalidArgument);
}

TEST(Iperf3Test, LoopbackRateIsPositive) {
  SKIP_WITHOUT("iperf3");
  auto rate = MeasureIperf3(0.5);
  ASSERT_TRUE(rate.ok()) << rate.status().ToString();
  EXPECT_GT(*rate, 1e6);  // even a slow loopback moves a MB/s
}

TEST(Iperf3Test, ServerIsGoneAfterDestruction) {
  SKIP_WITHOUT("iperf3");
  auto server = Iperf3Server::Start();
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const pid_t pid = (*server)->pid();
  EXPECT_FALSE(ProcessGone(pid));
  server = NotFound("destroyed");
  EXPECT_TRUE(ProcessGone(pid));
}

TEST(Iperf3Test, ClientReportsIperfErrors) {
  SKIP_WITHOUT("iperf3");
  // Start a server only to learn a port that is free again once it is gone.
  uint16_t port;
  {
    auto server = Iperf3Server::Start();
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    port = (*server)->port();
  }
  auto rate = RunIperf3Client(port, 1);
  ASSERT_FALSE(rate.ok());
  EXPECT_EQ(rate.status().code(), StatusCode::kUnavailable) << rate.status().ToString();
  EXPECT_NE(rate.status().message().find("iperf3:"), std::string::npos);
}

}  // namespace
}  // namespace tokenmem::bench
