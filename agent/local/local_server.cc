#include "local/local_server.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "local/local_session.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/unix_socket.h"

namespace tokenmem::local {
namespace {

sockaddr_un Address(const std::filesystem::path& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  return addr;
}

}  // namespace

Result<std::unique_ptr<LocalServer>> LocalServer::Start(const std::filesystem::path& socket_path,
                                                        uint32_t socket_mode,
                                                        pool::PoolManager* pools,
                                                        pool::LeaseTable* leases,
                                                        RequestObserver observer) {
  TM_RETURN_IF_ERROR(PrepareSocketPath(socket_path, SOCK_SEQPACKET));
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  sockaddr_un addr = Address(socket_path);
  mode_t old_mask = ::umask(0177);
  int rc = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  int bind_errno = errno;
  ::umask(old_mask);
  if (rc != 0) {
    ::close(fd);
    return ErrnoError("bind " + socket_path.string(), bind_errno);
  }
  if (::chmod(socket_path.c_str(), socket_mode) != 0 || ::listen(fd, 64) != 0) {
    Status s = ErrnoError("listen on " + socket_path.string(), errno);
    ::close(fd);
    ::unlink(socket_path.c_str());
    return s;
  }
  std::unique_ptr<LocalServer> server(
      new LocalServer(socket_path, fd, pools, leases, std::move(observer)));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  TM_LOG(INFO, "local") << "serving the local data path on " << socket_path.string();
  return server;
}

LocalServer::LocalServer(std::filesystem::path path, int listen_fd, pool::PoolManager* pools,
                         pool::LeaseTable* leases, RequestObserver observer)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      pools_(pools),
      leases_(leases),
      observer_(std::move(observer)) {}

LocalServer::~LocalServer() { Shutdown(); }

void LocalServer::AcceptLoop() {
  while (!stopping_.load()) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (!stopping_.load()) {
        TM_LOG(ERROR, "local") << "accept: " << std::strerror(errno);
      }
      return;
    }
    // A client that stops answering must not hold a session thread forever.
    timeval timeout{60, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
    std::lock_guard lock(mu_);
    if (stopping_.load()) {
      ::close(fd);
      return;
    }
    ReapFinished();
    auto done = std::make_shared<std::atomic<bool>>(false);
    const uint64_t owner = next_owner_++;
    Connection& c = connections_.emplace_back(Connection{fd, {}, done});
    c.thread = std::thread([this, fd, owner, done] {
      {
        LocalSession session(fd, owner, pools_, leases_, observer_, &cluster_);
        session.Run();
      }
      ::shutdown(fd, SHUT_RDWR);  // the peer sees the end now; the fd closes when reaped
      done->store(true);
    });
  }
}

void LocalServer::ReapFinished() {
  for (auto it = connections_.begin(); it != connections_.end();) {
    if (it->done->load()) {
      it->thread.join();
      ::close(it->fd);
      it = connections_.erase(it);
    } else {
      ++it;
    }
  }
}

size_t LocalServer::connections() const {
  std::lock_guard lock(mu_);
  size_t n = 0;
  for (const auto& c : connections_) n += c.done->load() ? 0 : 1;
  return n;
}

void LocalServer::Shutdown() {
  if (stopping_.exchange(true)) return;
  ::shutdown(listen_fd_, SHUT_RDWR);  // wakes the blocked accept
  if (acceptor_.joinable()) acceptor_.join();
  ::close(listen_fd_);
  std::list<Connection> connections;
  {
    std::lock_guard lock(mu_);
    connections.swap(connections_);
  }
  for (auto& c : connections) ::shutdown(c.fd, SHUT_RDWR);
  for (auto& c : connections) {
    c.thread.join();
    ::close(c.fd);
  }
  ::unlink(path_.c_str());
}

}  // namespace tokenmem::local
