#include "control/peer_listener.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "tokenmem/common/log.h"
#include "tokenmem/common/unix_socket.h"

namespace tokenmem::control {
namespace {

bool Contains(const std::vector<uint32_t>& ids, uint32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

// Supplementary groups of the peer (Linux 4.13+). The kernel answers ERANGE
// with the size it needs when the buffer is short.
Result<std::vector<uint32_t>> ReadPeerGroups(int fd) {
#ifdef SO_PEERGROUPS
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    socklen_t len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) == 0) {
      groups.resize(len / sizeof(gid_t));
      return std::vector<uint32_t>(groups.begin(), groups.end());
    }
    // A kernel without SO_PEERGROUPS: the primary group still counts.
    if (errno == ENOPROTOOPT) return std::vector<uint32_t>{};
    if (errno != ERANGE) return ErrnoError("getsockopt(SO_PEERGROUPS)", errno);
    groups.resize(len / sizeof(gid_t) + 1);
  }
  return IoError("getsockopt(SO_PEERGROUPS): the group list keeps growing");
#else
  (void)fd;
  return std::vector<uint32_t>{};
#endif
}

}  // namespace

bool IsNodeAdmin(const PeerCredentials& peer, const std::vector<uint32_t>& uids,
                 const std::vector<uint32_t>& gids) {
  if (peer.uid == 0 || Contains(uids, peer.uid)) return true;
  if (Contains(gids, peer.gid)) return true;
  return std::any_of(peer.groups.begin(), peer.groups.end(),
                     [&](uint32_t g) { return Contains(gids, g); });
}

Result<PeerCredentials> ReadPeerCredentials(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return ErrnoError("getsockopt(SO_PEERCRED)", errno);
  }
  PeerCredentials peer{.pid = cred.pid, .uid = cred.uid, .gid = cred.gid, .groups = {}};
  TM_ASSIGN_OR_RETURN(peer.groups, ReadPeerGroups(fd));
  return peer;
}

Result<std::unique_ptr<PeerListener>> PeerListener::Start(const std::filesystem::path& path,
                                                          uint32_t mode, Handler handler) {
  TM_ASSIGN_OR_RETURN(int fd, ListenUnixSocket(path, SOCK_STREAM, mode, 128));
  std::unique_ptr<PeerListener> listener(new PeerListener(path, fd, std::move(handler)));
  listener->acceptor_ = std::thread([l = listener.get()] { l->AcceptLoop(); });
  return listener;
}

PeerListener::PeerListener(std::filesystem::path path, int fd, Handler handler)
    : path_(std::move(path)), listen_fd_(fd), handler_(std::move(handler)) {}

PeerListener::~PeerListener() { Shutdown(); }

void PeerListener::AcceptLoop() {
  while (!stopping_.load()) {
    // Non-blocking: gRPC's endpoint, which takes the connection, expects it.
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0) {
      const int err = errno;
      if (stopping_.load()) return;
      if (err == EINTR || err == ECONNABORTED) continue;
      TM_LOG(ERROR, "control") << "accept on " << path_.string() << ": " << std::strerror(err);
      // Out of descriptors or memory: the admin plane must come back when
      // they free up, so pause instead of giving up.
      if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        continue;
      }
      return;
    }
    auto peer = ReadPeerCredentials(fd);
    if (!peer.ok()) {
      // Without credentials nobody can be admitted: drop the connection.
      TM_LOG(WARN, "control") << "dropping a connection on " << path_.string() << ": "
                              << peer.status().ToString();
      ::close(fd);
      continue;
    }
    handler_(fd, *peer);
  }
}

void PeerListener::Shutdown() {
  if (stopping_.exchange(true)) return;
  ::shutdown(listen_fd_, SHUT_RDWR);  // wakes the blocked accept
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  ::unlink(path_.c_str());
}

}  // namespace tokenmem::control
