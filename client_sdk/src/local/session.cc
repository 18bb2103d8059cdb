#include "local/session.h"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>

#include <cerrno>
#include <cstring>
#include <optional>
#include <string>

#include "local/wire.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem {
namespace {

using client_internal::PayloadReader;
using client_internal::PayloadWriter;
using client_internal::UniqueFd;
namespace layout = tokenmem::layout;

constexpr size_t kMaxCredential = 63;  // the wire fields are 64 bytes, NUL-padded

Status SetTimeout(int fd, int option, std::chrono::milliseconds timeout) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
  if (::setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv)) != 0) {
    return ErrnoError("setsockopt on the agent socket", errno);
  }
  return Status::Ok();
}

StatusCode CodeFromWire(int32_t code) {
  if (code > 0 && code <= static_cast<int32_t>(StatusCode::kInternal)) {
    return static_cast<StatusCode>(code);
  }
  return StatusCode::kInternal;
}

void CopyPadded(std::string_view text, char (&out)[64]) {
  std::memset(out, 0, sizeof(out));
  std::memcpy(out, text.data(), text.size());
}

}  // namespace

Session::Session(std::string path, UniqueFd fd, std::chrono::milliseconds timeout)
    : path_(std::move(path)), timeout_(timeout), fd_(std::move(fd)) {
  recv_buffer_.resize(sizeof(layout::MessageHeader) + layout::kMaxMessageBytes);
}

Session::~Session() = default;

Result<std::shared_ptr<Session>> Session::Open(const ClientOptions& options) {
  if (options.socket_path.empty()) {
    return InvalidArgument("no agent data socket given (set " + std::string(kEnvAgentSocket) +
                           " or ClientOptions::socket_path)");
  }
  sockaddr_un addr{};
  if (options.socket_path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("agent socket path '" + options.socket_path + "' is longer than " +
                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  if (options.lease_id.empty() || options.lease_id.size() > kMaxCredential) {
    return InvalidArgument("lease id must be 1 to 63 bytes");
  }
  if (options.lease_secret.empty() || options.lease_secret.size() > kMaxCredential) {
    return InvalidArgument("lease secret must be 1 to 63 bytes");
  }
  if (options.timeout.count() <= 0) return InvalidArgument("timeout must be positive");

  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return ErrnoError("socket(AF_UNIX, SOCK_SEQPACKET)", errno);
  TM_RETURN_IF_ERROR(SetTimeout(fd.get(), SO_RCVTIMEO, options.timeout));
  TM_RETURN_IF_ERROR(SetTimeout(fd.get(), SO_SNDTIMEO, options.timeout));

  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, options.socket_path.data(), options.socket_path.size());
  int rc;
  do {
    rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    const int err = errno;
    const std::string where = "connect to the agent's data socket " + options.socket_path;
    switch (err) {
      case ENOENT:
      case ECONNREFUSED:
      case EAGAIN:
      case ETIMEDOUT:
        return Unavailable(where + ": " + std::strerror(err) + " (is the agent running?)");
      case EPROTOTYPE:
        return InvalidArgument(where +
                               ": not a SOCK_SEQPACKET socket; this is not the agent's data "
                               "socket (the control socket is a different one)");
      case EACCES:
      case EPERM:
        return PermissionDenied(where + ": " + std::strerror(err));
      default:
        return ErrnoError(where, err);
    }
  }
  std::shared_ptr<Session> session(
      new Session(options.socket_path, std::move(fd), options.timeout));
  TM_RETURN_IF_ERROR(session->Hello(options));
  return session;
}

Status Session::Hello(const ClientOptions& options) {
  layout::HelloRequest hello{};
  CopyPadded(options.lease_id, hello.lease_id);
  CopyPadded(options.lease_secret, hello.secret);
  PayloadWriter w;
  w.Put(hello);
  auto reply = Call(layout::kHello, w.bytes());
  if (!reply.ok()) return reply.status().WithContext("HELLO");
  lease_id_ = options.lease_id;
  if (!reply->fds.empty()) {
    void* page = ::mmap(nullptr, layout::kLeaseStatePageBytes, PROT_READ, MAP_SHARED,
                        reply->fds[0].get(), 0);
    if (page == MAP_FAILED) return ErrnoError("mmap of the lease state page", errno);
    lease_state_ = client_internal::Mapping(page, layout::kLeaseStatePageBytes);
  }
  return Status::Ok();
}

// A message the agent sends before it closes a connection it refuses (a
// limit, a HELLO deadline): a reply of no request (type kReply, id 0)
// carrying a StatusReply. Its status, or nothing when `message` is another
// kind of message.
std::optional<Status> Session::RefusalIn(std::span<const std::byte> message) {
  PayloadReader r(message);
  layout::MessageHeader h{};
  if (!r.Get(&h) || h.magic != layout::kProtocolMagic || h.type != layout::kReply ||
      h.request_id != 0) {
    return std::nullopt;
  }
  int32_t code = 0;
  uint32_t length = 0;
  if (!r.Get(&code) || code == 0) return std::nullopt;
  std::string text = "the agent closed the connection";
  if (r.Get(&length) && length <= r.remaining()) {
    const auto* begin =
        reinterpret_cast<const char*>(message.data()) + sizeof(h) + sizeof(layout::StatusReply);
    text.assign(begin, length);
  }
  return Status(CodeFromWire(code), "agent: " + text);
}

std::optional<Status> Session::PendingRefusal() {
  ssize_t got;
  do {
    got = ::recv(fd_.get(), recv_buffer_.data(), recv_buffer_.size(), MSG_DONTWAIT);
  } while (got < 0 && errno == EINTR);
  if (got <= 0) return std::nullopt;
  return RefusalIn(std::span<const std::byte>(recv_buffer_.data(), static_cast<size_t>(got)));
}

Status Session::Break(Status why) {
  if (!broken_.load(std::memory_order_relaxed)) {
    broken_reason_ = why.ToString();
    broken_.store(true, std::memory_order_release);
    // Wakes nobody (calls are serialized) but tells the agent at once.
    ::shutdown(fd_.get(), SHUT_RDWR);
  }
  return why;
}

Result<Session::Reply> Session::Call(uint16_t type, std::span<const std::byte> payload) {
  // A released lease is the reason, whatever the connection says.
  TM_RETURN_IF_ERROR(LeaseStatus());
  std::lock_guard lock(mu_);
  if (broken_.load(std::memory_order_relaxed)) {
    return Unavailable("the session with the agent at " + path_ + " is over (" + broken_reason_ +
                       "); connect again");
  }
  if (payload.size() > layout::kMaxMessageBytes) {
    return Internal("request of " + std::to_string(payload.size()) +
                    " bytes exceeds the protocol's limit");
  }
  const uint32_t id = next_request_id_++;
  layout::MessageHeader header{layout::kProtocolMagic, layout::kProtocolVersion, type, id,
                               static_cast<uint32_t>(payload.size())};
  iovec out_iov[2] = {{&header, sizeof(header)},
                      {const_cast<std::byte*>(payload.data()), payload.size()}};
  msghdr out{};
  out.msg_iov = out_iov;
  out.msg_iovlen = payload.empty() ? 1 : 2;
  ssize_t sent;
  do {
    sent = ::sendmsg(fd_.get(), &out, MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      return Break(Unavailable("the agent did not take a request within " +
                               std::to_string(timeout_.count()) + " ms"));
    }
    if (err == EPIPE || err == ECONNRESET || err == ENOTCONN) {
      // The agent may have refused the connection (a limit) and said why
      // before it closed: that reason beats the bare error.
      if (std::optional<Status> why = PendingRefusal(); why.has_value()) return Break(*why);
      return Break(
          Unavailable(std::string("the agent closed the data connection: ") + std::strerror(err)));
    }
    return Break(Unavailable(ErrnoError("sending to the agent", err).ToString()));
  }
  if (static_cast<size_t>(sent) != sizeof(header) + payload.size()) {
    return Break(Internal("short send on a SOCK_SEQPACKET socket"));
  }

  // Control space for the most descriptors one message may carry.
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * layout::kMaxFdsPerMessage)];
  iovec in_iov{recv_buffer_.data(), recv_buffer_.size()};
  msghdr in{};
  in.msg_iov = &in_iov;
  in.msg_iovlen = 1;
  in.msg_control = control;
  in.msg_controllen = sizeof(control);
  ssize_t got;
  do {
    got = ::recvmsg(fd_.get(), &in, MSG_CMSG_CLOEXEC);
  } while (got < 0 && errno == EINTR);
  if (got < 0) {
    const int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
      return Break(Unavailable("no reply from the agent within " +
                               std::to_string(timeout_.count()) + " ms"));
    }
    return Break(Unavailable(ErrnoError("receiving from the agent", err).ToString()));
  }
  if (got == 0) return Break(Unavailable("the agent closed the data connection"));

  Reply reply;
  for (cmsghdr* c = CMSG_FIRSTHDR(&in); c != nullptr; c = CMSG_NXTHDR(&in, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      reply.fds.emplace_back(fd);
    }
  }
  if (in.msg_flags & MSG_TRUNC) {
    return Break(Internal("a reply from the agent exceeds the protocol's size limit"));
  }
  if (in.msg_flags & MSG_CTRUNC) {
    // The message itself is whole: the session goes on, this call fails.
    return IoError("file descriptors from the agent were lost (too many open files?)");
  }
  const std::span<const std::byte> message(recv_buffer_.data(), static_cast<size_t>(got));
  if (std::optional<Status> why = RefusalIn(message); why.has_value()) return Break(*why);
  PayloadReader r(message);
  layout::MessageHeader rh{};
  if (!r.Get(&rh) || rh.magic != layout::kProtocolMagic || rh.version != layout::kProtocolVersion ||
      rh.type != (type | layout::kReply) || rh.request_id != id || rh.length != r.remaining()) {
    return Break(Internal("malformed reply from the agent (header)"));
  }
  int32_t code = 0;
  if (!r.Get(&code)) return Break(Internal("malformed reply from the agent (no code)"));
  if (code != 0) {
    uint32_t message_length = 0;
    std::string message;
    if (r.Get(&message_length) && message_length <= r.remaining()) {
      const auto* text = reinterpret_cast<const char*>(recv_buffer_.data()) + sizeof(rh) +
                         sizeof(layout::StatusReply);
      message.assign(text, message_length);
    }
    if (message.empty()) message = "the agent refused the request";
    return Status(CodeFromWire(code), "agent: " + message);
  }
  const auto* begin = recv_buffer_.data() + sizeof(rh);
  reply.payload.assign(begin, begin + rh.length);
  return reply;
}

}  // namespace tokenmem
