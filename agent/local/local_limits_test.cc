// The data socket's limits: connections in all and per client process,
// and the HELLO deadline. A refused or timed-out connection gets one error
// message and the end of the stream; everyone else keeps being served.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "local/local_server.h"
#include "local/message_io.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::local {
namespace {

namespace L = layout;
using namespace std::chrono_literals;

int Connect(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  timeval timeout{5, 0};
  EXPECT_EQ(::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout)), 0);
  return fd;
}

// The code of the next message's StatusReply; -1 at the end of the stream.
int32_t NextCode(int fd) {
  std::vector<std::byte> buffer(sizeof(L::MessageHeader) + L::kMaxMessageBytes);
  ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
  if (n < static_cast<ssize_t>(sizeof(L::MessageHeader) + sizeof(L::StatusReply))) return -1;
  L::StatusReply reply;
  std::memcpy(&reply, buffer.data() + sizeof(L::MessageHeader), sizeof(reply));
  return reply.code;
}

bool AtEnd(int fd) {
  char byte;
  return ::recv(fd, &byte, 1, 0) == 0;
}

class LocalLimitsTest : public ::testing::Test {
 protected:
  void Start(LocalLimits limits) {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 16 << 20};
    auto pools = pool::PoolManager::Open(options);
    ASSERT_TRUE(pools.ok());
    pools_ = std::move(pools).value();
    limits.observer = &counters_;
    auto server = LocalServer::Start(dir_ / "data.sock", 0660, pools_.get(), &leases_, {}, limits);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto lease = leases_.Create({.quota_bytes = 1 << 20});
    ASSERT_TRUE(lease.ok());
    id_ = lease->account->id();
    secret_ = lease->secret;
  }

  int32_t Hello(int fd) {
    L::HelloRequest req{};
    id_.copy(req.lease_id, sizeof(req.lease_id));
    secret_.copy(req.secret, sizeof(req.secret));
    EXPECT_TRUE(SendMessage(fd, L::kHello, 1, std::as_bytes(std::span(&req, 1))).ok());
    std::vector<std::byte> buffer(sizeof(L::MessageHeader) + L::kMaxMessageBytes);
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 8)];
    iovec iov{buffer.data(), buffer.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        ::close(received);
      }
    }
    if (n < static_cast<ssize_t>(sizeof(L::MessageHeader) + sizeof(L::StatusReply))) return -1;
    L::StatusReply reply;
    std::memcpy(&reply, buffer.data() + sizeof(L::MessageHeader), sizeof(reply));
    return reply.code;
  }

  testing::TempDir dir_;
  limits::LimitCounters counters_;
  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  std::unique_ptr<LocalServer> server_;
  std::string id_, secret_;
};

TEST_F(LocalLimitsTest, OneProcessGetsAtMostItsConnectionsAndOthersAreServed) {
  Start({.max_connections = 16, .max_connections_per_client = 3});
  std::vector<int> fds;
  for (int i = 0; i < 3; ++i) fds.push_back(Connect(dir_ / "data.sock"));
  for (int fd : fds) EXPECT_EQ(Hello(fd), 0);
  int over = Connect(dir_ / "data.sock");
  EXPECT_EQ(NextCode(over), static_cast<int32_t>(StatusCode::kResourceExhausted));
  EXPECT_TRUE(AtEnd(over));
  EXPECT_EQ(counters_.count(limits::Limit::kLocalPeerConnections), 1u);
  // The connections already open keep working, and a closed one frees room.
  ::close(fds.back());
  fds.pop_back();
  for (int i = 0; i < 100 && server_->connections() > 2; ++i) std::this_thread::sleep_for(10ms);
  int again = Connect(dir_ / "data.sock");
  EXPECT_EQ(Hello(again), 0);
  for (int fd : fds) ::close(fd);
  ::close(over);
  ::close(again);
}

TEST_F(LocalLimitsTest, ConnectionsInAllAreBounded) {
  Start({.max_connections = 2, .max_connections_per_client = 2});
  int a = Connect(dir_ / "data.sock");
  int b = Connect(dir_ / "data.sock");
  EXPECT_EQ(Hello(a), 0);
  EXPECT_EQ(Hello(b), 0);
  int c = Connect(dir_ / "data.sock");
  EXPECT_EQ(NextCode(c), static_cast<int32_t>(StatusCode::kResourceExhausted));
  EXPECT_TRUE(AtEnd(c));
  EXPECT_GE(counters_.count(limits::Limit::kLocalConnections) +
                counters_.count(limits::Limit::kLocalPeerConnections),
            1u);
  ::close(a);
  ::close(b);
  ::close(c);
}

TEST_F(LocalLimitsTest, SilentConnectionsAreClosedAtTheHelloDeadline) {
  Start({.hello_timeout = 200ms});
  int good = Connect(dir_ / "data.sock");
  ASSERT_EQ(Hello(good), 0);
  std::vector<int> silent;
  for (int i = 0; i < 8; ++i) silent.push_back(Connect(dir_ / "data.sock"));
  const auto started = std::chrono::steady_clock::now();
  for (int fd : silent) {
    EXPECT_EQ(NextCode(fd), static_cast<int32_t>(StatusCode::kFailedPrecondition));
    EXPECT_TRUE(AtEnd(fd));
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
  EXPECT_EQ(counters_.count(limits::Limit::kLocalHelloTimeout), 8u);
  // After HELLO there is no deadline: an idle client stays connected.
  std::this_thread::sleep_for(400ms);
  L::KeysRequest req{};
  req.pool_id = 7;  // not attached: an error reply, on a live connection
  ASSERT_TRUE(SendMessage(good, L::kLookup, 2, std::as_bytes(std::span(&req, 1))).ok());
  EXPECT_EQ(NextCode(good), static_cast<int32_t>(StatusCode::kInvalidArgument));
  for (int fd : silent) ::close(fd);
  ::close(good);
}

}  // namespace
}  // namespace tokenmem::local
