// A tenant cannot exhaust the agent: attacks from another process with a
// real lease against a real agent, while a well-behaved client of another
// lease keeps getting correct answers. Each limit refuses with a clear
// error and counts in tokenmem_limit_rejections_total{limit} (docs/limits.md).
//
// - a connection flood from one process is capped per client process;
// - connections that never say HELLO are closed at the deadline;
// - pins past the lease's quota are refused, other leases still pin;
// - puts past the lease's quota are refused, other leases' blocks stay.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "agent_fixture.h"
#include "tokenmem/client.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem::testing {
namespace {

namespace L = layout;
constexpr uint64_t kBlock = 64 * 1024;
constexpr int kPerClient = 4;
constexpr int kTotal = 6;

std::pair<std::string, std::string> Split(const std::string& lease) {
  const auto colon = lease.find(':');
  return {lease.substr(0, colon), lease.substr(colon + 1)};
}

int ConnectData(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The status code of the first message on fd within `ms` (-1: nothing,
// -2: the connection ended without a message).
int32_t FirstCode(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, ms) <= 0) return -1;
  std::vector<std::byte> buf(sizeof(L::MessageHeader) + 512);
  const ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
  if (n < static_cast<ssize_t>(sizeof(L::MessageHeader) + 4)) return -2;
  int32_t code;
  std::memcpy(&code, buf.data() + sizeof(L::MessageHeader), 4);
  return code;
}

bool SendHello(int fd, const std::string& lease) {
  auto [id, secret] = Split(lease);
  L::HelloRequest req{};
  id.copy(req.lease_id, sizeof(req.lease_id));
  secret.copy(req.secret, sizeof(req.secret));
  L::MessageHeader h{L::kProtocolMagic, L::kProtocolVersion, L::kHello, 1, sizeof(req)};
  std::vector<std::byte> msg(sizeof(h) + sizeof(req));
  std::memcpy(msg.data(), &h, sizeof(h));
  std::memcpy(msg.data() + sizeof(h), &req, sizeof(req));
  return ::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(msg.size());
}

// GET /metrics over plain TCP: the value of limit's rejection counter.
double Rejections(int port, const std::string& limit) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return -1;
  }
  const std::string req = "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
  (void)::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string text;
  char chunk[65536];
  ssize_t n;
  while ((n = ::recv(fd, chunk, sizeof(chunk), 0)) > 0) text.append(chunk, n);
  ::close(fd);
  std::smatch m;
  const std::regex re("tokenmem_limit_rejections_total\\{limit=\"" + limit + "\"\\} ([0-9.e+]+)");
  return std::regex_search(text, m, re) ? std::stod(m[1]) : -1;
}

class LimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto port = FreeLoopbackPort();
    ASSERT_TRUE(port.ok());
    http_port_ = *port;
    AgentOptions o;
    o.http_listen = "127.0.0.1:" + std::to_string(http_port_);
    o.pools = {{.name = "p", .block_size = "64KiB", .dram = "8MiB"}};
    o.extra_yaml = "limits: {local_max_connections: " + std::to_string(kTotal) +
                   ", local_max_connections_per_client: " + std::to_string(kPerClient) +
                   ", hello_timeout_ms: 300, max_pinned_blocks_per_lease: 3}\n";
    agent_ = std::make_unique<AgentProcess>(o);
    ASSERT_TRUE(agent_->Start().ok()) << agent_->LogTail();
    auto attacker = agent_->CreateLease(4 * kBlock, {"p"});
    auto victim = agent_->CreateLease(64 * kBlock, {"p"});
    ASSERT_TRUE(attacker.ok() && victim.ok());
    attacker_ = *attacker;
    victim_ = *victim;
    victim_client_ = Open(victim_);
    ASSERT_NE(victim_client_, nullptr);
    auto pool = victim_client_->Attach("p");
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    victim_pool_ = *pool;
    ASSERT_TRUE(victim_pool_->Put(BlockKey{9, 9}, Data(0x5a)).ok());
  }

  std::unique_ptr<Client> Open(const std::string& lease) {
    auto [id, secret] = Split(lease);
    auto c = Client::Connect(agent_->data_socket_path(), id, secret);
    return c.ok() ? std::move(c).value() : nullptr;
  }

  static std::vector<std::byte> Data(uint8_t v) {
    return std::vector<std::byte>(kBlock, std::byte{v});
  }

  // The victim lease is served, and its block is what it put.
  void ExpectVictimServed() {
    std::vector<std::byte> out(kBlock);
    auto n = victim_pool_->Get(BlockKey{9, 9}, out);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(out, Data(0x5a));
    EXPECT_TRUE(victim_pool_->Put(BlockKey{9, 10}, Data(0x11)).ok());
  }

  int http_port_ = 0;
  std::unique_ptr<AgentProcess> agent_;
  std::string attacker_, victim_;
  std::unique_ptr<Client> victim_client_;
  std::shared_ptr<Pool> victim_pool_;
};

// Runs `attack` in a child process (the caps are per process), which
// writes its findings to the pipe; the parent checks on the victim while
// the child holds its connections, then lets it go.
template <typename Attack>
std::vector<int32_t> InChild(Attack attack, const std::function<void()>& meanwhile) {
  int out[2], go[2];
  EXPECT_EQ(::pipe(out), 0);
  EXPECT_EQ(::pipe(go), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(out[0]);
    ::close(go[1]);
    std::vector<int32_t> found = attack();
    (void)::write(out[1], found.data(), found.size() * sizeof(int32_t));
    ::close(out[1]);
    char c;
    (void)::read(go[0], &c, 1);  // hold the connections until told
    ::_exit(0);
  }
  ::close(out[1]);
  ::close(go[0]);
  std::vector<int32_t> found;
  int32_t v;
  while (::read(out[0], &v, sizeof(v)) == sizeof(v)) found.push_back(v);
  ::close(out[0]);
  meanwhile();
  (void)::write(go[1], "x", 1);
  ::close(go[1]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return found;
}

TEST_F(LimitsTest, AConnectionFloodFromOneProcessIsCappedAndOthersAreServed) {
  const std::string path = agent_->data_socket_path();
  const std::string lease = attacker_;
  const double before = Rejections(http_port_, "local_peer_connections");
  auto codes = InChild(
      [&] {
        std::vector<int32_t> found;
        for (int i = 0; i < 3 * kPerClient; ++i) {
          const int fd = ConnectData(path);  // kept open on purpose until _exit
          // The agent may refuse before the HELLO is sent (then the send
          // fails); its reason is queued for the client either way.
          if (fd >= 0) (void)SendHello(fd, lease);
          found.push_back(fd < 0 ? -3 : FirstCode(fd, 2000));
        }
        return found;
      },
      [&] { ExpectVictimServed(); });
  ASSERT_EQ(codes.size(), 3u * kPerClient);
  int ok = 0, refused = 0;
  for (int32_t c : codes) {
    if (c == 0) ++ok;
    if (c == static_cast<int32_t>(StatusCode::kResourceExhausted)) ++refused;
  }
  EXPECT_EQ(ok, kPerClient);
  EXPECT_EQ(refused, 2 * kPerClient) << ::testing::PrintToString(codes);
  EXPECT_GE(Rejections(http_port_, "local_peer_connections") - before, 2.0 * kPerClient);
  ExpectVictimServed();  // and after the flood
}

TEST_F(LimitsTest, AClientPastTheAgentsConnectionCapIsToldWhy) {
  const std::string path = agent_->data_socket_path();
  const std::string lease = attacker_;
  InChild(
      [&] {
        std::vector<int32_t> found;
        for (int i = 0; i < kPerClient; ++i) {
          const int fd = ConnectData(path);
          if (fd >= 0) (void)SendHello(fd, lease);
          found.push_back(fd < 0 ? -3 : FirstCode(fd, 2000));
        }
        return found;
      },
      [&] {
        // The victim's client and the attacker's four: one more fits.
        auto one_more = Open(victim_);
        EXPECT_NE(one_more, nullptr);
        auto [id, secret] = Split(victim_);
        auto refused = Client::Connect(agent_->data_socket_path(), id, secret);
        ASSERT_FALSE(refused.ok());
        EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted)
            << refused.status().ToString();
        EXPECT_NE(refused.status().message().find("connections"), std::string::npos)
            << refused.status().ToString();
        ExpectVictimServed();
      });
}

TEST_F(LimitsTest, ConnectionsThatNeverSayHelloAreClosedAtTheDeadline) {
  const std::string path = agent_->data_socket_path();
  const double before = Rejections(http_port_, "local_hello_timeout");
  auto codes = InChild(
      [&] {
        std::vector<int> fds;
        for (int i = 0; i < kPerClient; ++i) fds.push_back(ConnectData(path));
        std::vector<int32_t> found;
        for (int fd : fds) found.push_back(FirstCode(fd, 3000));  // nothing sent
        return found;
      },
      [&] { ExpectVictimServed(); });
  ASSERT_EQ(codes.size(), static_cast<size_t>(kPerClient));
  for (int32_t c : codes) EXPECT_EQ(c, static_cast<int32_t>(StatusCode::kFailedPrecondition));
  EXPECT_GE(Rejections(http_port_, "local_hello_timeout") - before, kPerClient);
}

TEST_F(LimitsTest, PinsPastTheLeasesQuotaAreRefusedAndOtherLeasesStillPin) {
  auto attacker = Open(attacker_);
  ASSERT_NE(attacker, nullptr);
  auto pool = attacker->Attach("p");
  ASSERT_TRUE(pool.ok());
  for (uint64_t i = 0; i < 4; ++i) ASSERT_TRUE(victim_pool_->Put(BlockKey{20, i}, Data(1)).ok());
  for (uint64_t i = 0; i < 3; ++i) EXPECT_TRUE((*pool)->Pin(BlockKey{20, i}).ok()) << i;
  const double before = Rejections(http_port_, "pins");
  Status s = (*pool)->Pin(BlockKey{20, 3});
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_EQ(Rejections(http_port_, "pins") - before, 1.0);
  EXPECT_TRUE(victim_pool_->Pin(BlockKey{20, 3}).ok());  // another lease's budget
  ExpectVictimServed();
}

TEST_F(LimitsTest, PutsPastTheLeasesQuotaAreRefusedAndOtherLeasesKeepTheirBlocks) {
  auto attacker = Open(attacker_);
  ASSERT_NE(attacker, nullptr);
  auto pool = attacker->Attach("p");
  ASSERT_TRUE(pool.ok());
  int stored = 0, refused = 0;
  for (uint64_t i = 0; i < 16; ++i) {
    Status s = (*pool)->Put(BlockKey{30, i}, Data(0xee));
    if (s.ok()) ++stored;
    if (s.code() == StatusCode::kResourceExhausted) ++refused;
  }
  EXPECT_EQ(stored, 4);  // the quota is four blocks
  EXPECT_EQ(refused, 12);
  // The attacker cannot overwrite the victim's block past its quota either,
  // and the victim is served as before.
  EXPECT_EQ((*pool)->Put(BlockKey{9, 9}, Data(0xee)).code(), StatusCode::kResourceExhausted);
  ExpectVictimServed();
}

}  // namespace
}  // namespace tokenmem::testing
