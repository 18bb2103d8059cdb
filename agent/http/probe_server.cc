#include "http/probe_server.h"

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <list>
#include <vector>

#include "tokenmem/common/log.h"

namespace tokenmem::http {
namespace {

constexpr char kLog[] = "http";
constexpr size_t kMaxHead = 4096;

struct Connection {
  int fd = -1;
  std::chrono::steady_clock::time_point deadline;
  std::string in;
  std::string out;  // the answer, once there is one
  size_t sent = 0;
};

const char* Reason(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 503:
      return "Service Unavailable";
    default:
      return status < 400 ? "OK" : "Error";
  }
}

std::string Render(const HttpResponse& r, bool head, bool allow_header) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + Reason(r.status) +
                    "\r\nContent-Type: " + r.content_type +
                    "\r\nContent-Length: " + std::to_string(r.body.size()) +
                    "\r\nConnection: close\r\n";
  if (allow_header) out += "Allow: GET, HEAD\r\n";
  out += "\r\n";
  if (!head) out += r.body;
  return out;
}

// The answer to a complete request head.
std::string Answer(const std::string& head, const std::map<std::string, HttpHandler>& routes) {
  const size_t line_end = head.find_first_of("\r\n");
  const std::string line = head.substr(0, line_end);
  const size_t sp1 = line.find(' ');
  const size_t sp2 = sp1 == std::string::npos ? std::string::npos : line.find(' ', sp1 + 1);
  if (sp2 == std::string::npos) {
    return Render({.status = 400, .body = "malformed request line\n"}, false, false);
  }
  const std::string method = line.substr(0, sp1);
  std::string path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (size_t q = path.find('?'); q != std::string::npos) path.resize(q);
  auto route = routes.find(path);
  if (route == routes.end()) {
    return Render({.status = 404, .body = "only /healthz and /readyz here\n"}, method == "HEAD",
                  false);
  }
  if (method != "GET" && method != "HEAD") {
    return Render({.status = 405, .body = "GET or HEAD\n"}, false, true);
  }
  HttpResponse response;
  try {
    response = route->second();
  } catch (const std::exception& e) {
    response = {.status = 500, .body = std::string(e.what()) + "\n"};
  }
  return Render(response, method == "HEAD", false);
}

void Close(Connection& c) {
  if (c.fd >= 0) ::close(c.fd);
  c.fd = -1;
}

}  // namespace

Result<std::unique_ptr<ProbeServer>> ProbeServer::Start(ProbeServerOptions options) {
  if (options.routes.empty()) return InvalidArgument("probe server: no routes");
  const std::string& text = options.listen;
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgument("probe listen address '" + text + "': expected host:port");
  }
  std::string host = text.substr(0, colon);
  const std::string port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return InvalidArgument("probe listen address '" + text + "': " + ::gai_strerror(rc));
  }
  std::unique_ptr<ProbeServer> self(new ProbeServer(std::move(options)));
  Status last = IoError("probe listen address '" + text + "': nothing to bind");
  for (addrinfo* a = found; a != nullptr && self->listen_fd_ < 0; a = a->ai_next) {
    int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = ErrnoError("probe server: socket for " + text, errno);
      continue;
    }
    int one = 1;
    if (::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        ::bind(fd, a->ai_addr, a->ai_addrlen) != 0 || ::listen(fd, 128) != 0) {
      last = ErrnoError("probe server: bind " + text, errno);
      ::close(fd);
      continue;
    }
    self->listen_fd_ = fd;
  }
  ::freeaddrinfo(found);
  if (self->listen_fd_ < 0) return last;

  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  if (::getsockname(self->listen_fd_, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    return ErrnoError("probe server: getsockname", errno);
  }
  self->port_ =
      ntohs(bound.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                                        : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  const bool v6 = host.find(':') != std::string::npos;
  self->address_ = (v6 ? "[" + host + "]" : host) + ":" + std::to_string(self->port_);
  self->wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (self->wake_fd_ < 0) return ErrnoError("probe server: eventfd", errno);
  self->thread_ = std::thread([raw = self.get()] { raw->Run(); });
  TM_LOG(INFO, kLog) << "probes (/healthz, /readyz) on " << self->address_;
  return self;
}

ProbeServer::~ProbeServer() { Stop(); }

void ProbeServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (thread_.joinable()) {
    const uint64_t one = 1;
    // A failed write leaves the thread to notice at its next deadline tick.
    if (::write(wake_fd_, &one, sizeof(one)) != sizeof(one)) {
      TM_LOG(WARN, kLog) << "probe server: wake: " << std::strerror(errno);
    }
    thread_.join();
  }
  if (listen_fd_ >= 0) ::close(listen_fd_);
  if (wake_fd_ >= 0) ::close(wake_fd_);
  listen_fd_ = wake_fd_ = -1;
}

void ProbeServer::Run() {
  using Clock = std::chrono::steady_clock;
  std::list<Connection> connections;  // oldest first
  std::vector<pollfd> fds;
  std::vector<std::list<Connection>::iterator> polled;
  for (;;) {
    const auto now = Clock::now();
    // Deadlines first: a connection past its own is cut, answer or not.
    for (auto it = connections.begin(); it != connections.end();) {
      if (it->deadline <= now) {
        cut_.fetch_add(1, std::memory_order_relaxed);  // before the peer can see the close
        Close(*it);
        it = connections.erase(it);
      } else {
        ++it;
      }
    }
    fds.clear();
    polled.clear();
    fds.push_back({wake_fd_, POLLIN, 0});
    fds.push_back({listen_fd_, POLLIN, 0});
    int timeout_ms = -1;
    for (auto it = connections.begin(); it != connections.end(); ++it) {
      fds.push_back({it->fd, static_cast<short>(it->out.empty() ? POLLIN : POLLOUT), 0});
      polled.push_back(it);
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(it->deadline - now).count() + 1;
      if (timeout_ms < 0 || left < timeout_ms) timeout_ms = static_cast<int>(left);
    }
    if (::poll(fds.data(), fds.size(), timeout_ms) < 0) {
      if (errno == EINTR) continue;
      TM_LOG(ERROR, kLog) << "probe server: poll: " << std::strerror(errno);
      break;
    }
    if (fds[0].revents != 0) break;  // Stop

    for (size_t i = 0; i < polled.size(); ++i) {
      Connection& c = *polled[i];
      const short ev = fds[i + 2].revents;
      if (ev == 0) continue;
      if (c.out.empty()) {
        char buf[1024];
        ssize_t n = ::recv(c.fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
        if (n <= 0) {
          Close(c);  // the peer left, or the socket failed: nothing to answer
          continue;
        }
        c.in.append(buf, static_cast<size_t>(n));
        const size_t end = c.in.find("\r\n\r\n");
        const size_t bare = c.in.find("\n\n");
        if (end != std::string::npos || bare != std::string::npos) {
          c.out = Answer(c.in, options_.routes);
        } else if (c.in.size() > kMaxHead) {
          c.out = Render({.status = 431, .body = "request head over 4 KiB\n"}, false, false);
        } else {
          continue;
        }
      }
      ssize_t n =
          ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) continue;
      if (n < 0) {
        Close(c);
        continue;
      }
      c.sent += static_cast<size_t>(n);
      if (c.sent == c.out.size()) Close(c);  // one request per connection
    }
    connections.remove_if([](const Connection& c) { return c.fd < 0; });

    if (fds[1].revents != 0) {
      for (;;) {
        int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
          // EAGAIN: drained. Anything else (EMFILE, ECONNABORTED): try again
          // on the next round rather than spin here.
          break;
        }
        if (connections.size() >= options_.max_connections) {
          // Make room by cutting the oldest: the one nearest its deadline,
          // most likely a client that is not a probe.
          cut_.fetch_add(1, std::memory_order_relaxed);
          Close(connections.front());
          connections.pop_front();
        }
        connections.push_back({.fd = fd,
                               .deadline = Clock::now() + options_.read_timeout,
                               .in = {},
                               .out = {},
                               .sent = 0});
      }
    }
  }
  for (Connection& c : connections) Close(c);
}

}  // namespace tokenmem::http
