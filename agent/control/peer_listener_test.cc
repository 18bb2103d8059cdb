#include "control/peer_listener.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>

#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::control {
namespace {

TEST(IsNodeAdminTest, RootAndListedIdsOnly) {
  const std::vector<uint32_t> uids = {1000};
  const std::vector<uint32_t> gids = {2000};
  EXPECT_TRUE(IsNodeAdmin({.uid = 0, .gid = 5}, {}, {}));
  EXPECT_TRUE(IsNodeAdmin({.uid = 1000, .gid = 5}, uids, gids));
  EXPECT_TRUE(IsNodeAdmin({.uid = 1001, .gid = 2000}, uids, gids));
  EXPECT_TRUE(IsNodeAdmin({.uid = 1001, .gid = 5, .groups = {7, 2000}}, uids, gids));
  EXPECT_FALSE(IsNodeAdmin({.uid = 1001, .gid = 5, .groups = {7}}, uids, gids));
  EXPECT_FALSE(IsNodeAdmin({.uid = 1000, .gid = 0}, {}, {}))
      << "gid 0 alone is not root: only listed groups count";
}

TEST(PeerCredentialsTest, ReadsTheConnectingProcess) {
  int fds[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  auto peer = ReadPeerCredentials(fds[0]);
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  EXPECT_EQ(peer->pid, ::getpid());
  EXPECT_EQ(peer->uid, ::geteuid());
  EXPECT_EQ(peer->gid, ::getegid());
  ::close(fds[0]);
  ::close(fds[1]);
}

TEST(PeerListenerTest, HandsOnEachConnectionWithItsCredentials) {
  tokenmem::testing::TempDir dir;
  const auto path = dir / "s.sock";
  std::mutex mu;
  std::condition_variable cv;
  std::optional<PeerCredentials> seen;
  auto listener = PeerListener::Start(path, 0600, [&](int fd, const PeerCredentials& peer) {
    ::close(fd);
    std::lock_guard lock(mu);
    seen = peer;
    cv.notify_all();
  });
  ASSERT_TRUE(listener.ok()) << listener.status().ToString();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);

  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  {
    std::unique_lock lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(5), [&] { return seen.has_value(); }));
    EXPECT_EQ(seen->pid, ::getpid());
    EXPECT_EQ(seen->uid, ::geteuid());
  }
  ::close(fd);
  (*listener)->Shutdown();
  EXPECT_FALSE(std::filesystem::exists(path));
}

}  // namespace
}  // namespace tokenmem::control
