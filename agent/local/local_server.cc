#include "local/local_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <system_error>

#include "local/local_session.h"
#include "local/message_io.h"
#include "tokenmem/common/log.h"
#include "tokenmem/common/unix_socket.h"

namespace tokenmem::local {
namespace {

// The peer's process and user, one key for the per-client limit; 0 when
// the kernel cannot tell (every such connection then shares one budget).
uint64_t ClientOf(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return 0;
  return (uint64_t{static_cast<uint32_t>(cred.uid)} << 32) | static_cast<uint32_t>(cred.pid);
}

}  // namespace

Result<std::unique_ptr<LocalServer>> LocalServer::Start(
    const std::filesystem::path& socket_path, uint32_t socket_mode, pool::PoolManager* pools,
    pool::LeaseTable* leases, RequestObserver observer, LocalLimits limits) {
  TM_ASSIGN_OR_RETURN(int fd, ListenUnixSocket(socket_path, SOCK_SEQPACKET, socket_mode, 64));
  std::unique_ptr<LocalServer> server(
      new LocalServer(socket_path, fd, pools, leases, std::move(observer), limits));
  server->acceptor_ = std::thread([s = server.get()] { s->AcceptLoop(); });
  TM_LOG(INFO, "local") << "serving the local data path on " << socket_path.string();
  return server;
}

LocalServer::LocalServer(std::filesystem::path path, int listen_fd, pool::PoolManager* pools,
                         pool::LeaseTable* leases, RequestObserver observer, LocalLimits limits)
    : path_(std::move(path)),
      listen_fd_(listen_fd),
      pools_(pools),
      leases_(leases),
      observer_(std::move(observer)),
      limits_(limits) {}

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
    if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0) {
      TM_LOG(WARN, "local") << "SO_SNDTIMEO: " << std::strerror(errno);
    }
    const uint64_t client = ClientOf(fd);
    std::lock_guard lock(mu_);
    if (stopping_.load()) {
      ::close(fd);
      return;
    }
    ReapFinished();
    size_t of_client = 0;
    for (const auto& c : connections_) of_client += c.client == client ? 1 : 0;
    if (connections_.size() >= limits_.max_connections) {
      Refuse(fd, limits::Limit::kLocalConnections,
             std::to_string(connections_.size()) +
                 " connections are open on the data socket (limits.local_max_connections)");
      continue;
    }
    if (of_client >= limits_.max_connections_per_client) {
      Refuse(fd, limits::Limit::kLocalPeerConnections,
             "this process has " + std::to_string(of_client) +
                 " connections open (limits.local_max_connections_per_client)");
      continue;
    }
    auto done = std::make_shared<std::atomic<bool>>(false);
    const uint64_t owner = next_owner_++;
    Connection& c = connections_.emplace_back(Connection{fd, client, {}, done});
    try {
      c.thread = std::thread([this, fd, owner, done] {
        Serve(fd, owner);
        done->store(true);
      });
    } catch (const std::system_error& e) {
      // Out of threads (or memory for one): this connection is refused,
      // the agent and every other connection go on.
      connections_.pop_back();
      Refuse(fd, limits::Limit::kLocalThreads,
             std::string("the agent cannot start a thread for this connection: ") + e.what());
    }
  }
}

void LocalServer::Serve(int fd, uint64_t owner) {
  // HELLO must be the first message: one that does not come in time ends
  // the connection, so idle sockets cannot pile up. (SOCK_SEQPACKET
  // delivers whole messages, so readable means a whole request is there.)
  pollfd p{fd, POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&p, 1, static_cast<int>(limits_.hello_timeout.count()));
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) {
    limits::Note(limits_.observer, limits::Limit::kLocalHelloTimeout);
    SendError(fd, layout::kReply, 0,
              Status(StatusCode::kFailedPrecondition,
                     "no HELLO within " + std::to_string(limits_.hello_timeout.count()) +
                         " ms (limits.hello_timeout_ms)"))
        .ok();
  } else if (ready > 0) {
    LocalSession session(fd, owner, pools_, leases_, observer_, &cluster_);
    session.Run();
  }
  ::shutdown(fd, SHUT_RDWR);  // the peer sees the end now; the fd closes when reaped
}

void LocalServer::Refuse(int fd, limits::Limit limit, const std::string& why) {
  limits::Note(limits_.observer, limit);
  TM_LOG(WARN, "local") << "refused a connection: " << why;
  // Never blocks the accept loop: a full socket buffer drops the message.
  timeval timeout{0, 100000};
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout)) != 0) {
    TM_LOG(DEBUG, "local") << "SO_SNDTIMEO: " << std::strerror(errno);
  }
  SendError(fd, layout::kReply, 0, ResourceExhausted(why)).ok();
  // A client that already sent its HELLO would otherwise see the close as a
  // reset (unread data) and lose the message above: drop what it sent.
  std::byte sink[512];
  while (::recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
  }
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
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
