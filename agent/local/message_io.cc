#include "local/message_io.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tokenmem::local {

using layout::MessageHeader;

Result<Message> ReceiveMessage(int fd) {
  std::vector<std::byte> buffer(sizeof(MessageHeader) + layout::kMaxMessageBytes);
  iovec iov{buffer.data(), buffer.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 16)];
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == ECONNRESET || errno == EPIPE || errno == EBADF || errno == EINVAL) {
      return Unavailable("connection closed");
    }
    return ErrnoError("recvmsg", errno);
  }
  if (n == 0) return Unavailable("connection closed");
  bool had_fds = false;
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int received;
        std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        ::close(received);
      }
      had_fds = true;
    }
  }
  if (had_fds || (msg.msg_flags & MSG_CTRUNC)) {
    return InvalidArgument("clients may not send file descriptors");
  }
  if (msg.msg_flags & MSG_TRUNC) {
    return InvalidArgument("message larger than " + std::to_string(layout::kMaxMessageBytes) +
                           " bytes");
  }
  if (static_cast<size_t>(n) < sizeof(MessageHeader)) {
    return InvalidArgument("message of " + std::to_string(n) + " bytes is shorter than a header");
  }
  Message out;
  std::memcpy(&out.header, buffer.data(), sizeof(MessageHeader));
  if (out.header.magic != layout::kProtocolMagic) return InvalidArgument("bad magic");
  if (out.header.version != layout::kProtocolVersion) {
    return InvalidArgument("protocol version " + std::to_string(out.header.version) +
                           " is not supported (this agent speaks version " +
                           std::to_string(layout::kProtocolVersion) + ")");
  }
  if (out.header.length != static_cast<size_t>(n) - sizeof(MessageHeader)) {
    return InvalidArgument("header says " + std::to_string(out.header.length) +
                           " payload bytes, the message has " +
                           std::to_string(static_cast<size_t>(n) - sizeof(MessageHeader)));
  }
  out.payload.assign(buffer.begin() + sizeof(MessageHeader), buffer.begin() + n);
  return out;
}

Status SendMessage(int fd, uint16_t type, uint32_t request_id, std::span<const std::byte> payload,
                   std::span<const int> fds) {
  if (payload.size() > layout::kMaxMessageBytes) return Internal("reply too large");
  if (fds.size() > layout::kMaxFdsPerMessage) return Internal("too many fds in one reply");
  MessageHeader header{layout::kProtocolMagic, layout::kProtocolVersion, type, request_id,
                       static_cast<uint32_t>(payload.size())};
  iovec iov[2] = {{&header, sizeof(header)},
                  {const_cast<std::byte*>(payload.data()), payload.size()}};
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = payload.empty() ? 1 : 2;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError("sendmsg", errno);
  return Status::Ok();
}

Status SendError(int fd, uint16_t type, uint32_t request_id, const Status& status) {
  layout::StatusReply reply{static_cast<int32_t>(status.code()),
                            static_cast<uint32_t>(std::min<size_t>(status.message().size(), 4000))};
  std::vector<std::byte> payload(sizeof(reply) + reply.message_length);
  std::memcpy(payload.data(), &reply, sizeof(reply));
  std::memcpy(payload.data() + sizeof(reply), status.message().data(), reply.message_length);
  return SendMessage(fd, type, request_id, payload);
}

}  // namespace tokenmem::local
