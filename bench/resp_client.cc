#include "resp_client.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

namespace tokenmem::bench {
namespace {

// Longest reply line accepted; also the reader's buffer size. Large bulk
// payloads bypass it and go straight to the caller's buffer.
constexpr size_t kBufferBytes = 64 * 1024;

Status Malformed(std::string what) { return IoError("malformed RESP reply: " + what); }

// A signed decimal with no sign other than a leading '-', no spaces and no
// overflow.
Result<int64_t> ParseInteger(std::string_view text) {
  bool negative = !text.empty() && text.front() == '-';
  std::string_view digits = negative ? text.substr(1) : text;
  if (digits.empty() || digits.size() > 19) {
    return Malformed("bad number '" + std::string(text) + "'");
  }
  uint64_t value = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return Malformed("bad number '" + std::string(text) + "'");
    value = value * 10 + static_cast<uint64_t>(c - '0');
  }
  const uint64_t limit = negative ? (1ull << 63) : (1ull << 63) - 1;
  if (value > limit) return Malformed("number out of range '" + std::string(text) + "'");
  if (negative) return value == (1ull << 63) ? INT64_MIN : -static_cast<int64_t>(value);
  return static_cast<int64_t>(value);
}

std::string Printable(std::string_view line) {
  std::string out;
  for (char c : line.substr(0, 40)) {
    if (c >= 0x20 && c < 0x7f) {
      out += c;
    } else {
      char hex[8];
      std::snprintf(hex, sizeof(hex), "\\x%02x", static_cast<unsigned char>(c));
      out += hex;
    }
  }
  return out;
}

}  // namespace

RespReader::RespReader(Source source) : source_(std::move(source)), buffer_(kBufferBytes) {}

Status RespReader::Fill() {
  if (begin_ == end_) begin_ = end_ = 0;
  if (end_ == buffer_.size()) {
    if (begin_ == 0) return Malformed("a reply line is longer than 64 KiB");
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  TM_ASSIGN_OR_RETURN(size_t n, source_(std::span(buffer_).subspan(end_)));
  if (n == 0) return Unavailable("the server closed the connection");
  end_ += n;
  return Status::Ok();
}

Result<std::string_view> RespReader::ReadLine() {
  size_t scanned = 0;  // bytes after begin_ known to hold no LF; survives Fill's move
  for (;;) {
    const auto* first = reinterpret_cast<const char*>(buffer_.data());
    const void* lf = std::memchr(first + begin_ + scanned, '\n', end_ - begin_ - scanned);
    if (lf != nullptr) {
      size_t at = static_cast<size_t>(static_cast<const char*>(lf) - first);
      if (at == begin_ || first[at - 1] != '\r') {
        return Malformed("a line ends in LF without CR: '" +
                         Printable(std::string_view(first + begin_, at - begin_)) + "'");
      }
      std::string_view line(first + begin_, at - 1 - begin_);
      begin_ = at + 1;
      return line;
    }
    scanned = end_ - begin_;
    TM_RETURN_IF_ERROR(Fill());
  }
}

Status RespReader::ReadExact(std::span<std::byte> out) {
  while (!out.empty()) {
    if (begin_ < end_) {
      size_t n = std::min(out.size(), end_ - begin_);
      std::memcpy(out.data(), buffer_.data() + begin_, n);
      begin_ += n;
      out = out.subspan(n);
    } else if (out.size() >= buffer_.size()) {
      // Large payloads go straight to the caller: one copy, by the kernel.
      TM_ASSIGN_OR_RETURN(size_t n, source_(out));
      if (n == 0) return Unavailable("the server closed the connection mid-reply");
      out = out.subspan(n);
    } else {
      TM_RETURN_IF_ERROR(Fill());
    }
  }
  return Status::Ok();
}

Status RespReader::Skip(uint64_t bytes) {
  while (bytes > 0) {
    if (begin_ == end_) TM_RETURN_IF_ERROR(Fill());
    size_t n = static_cast<size_t>(std::min<uint64_t>(bytes, end_ - begin_));
    begin_ += n;
    bytes -= n;
  }
  return Status::Ok();
}

Result<RespReply> RespReader::Read(std::span<std::byte> bulk_out) {
  TM_ASSIGN_OR_RETURN(std::string_view line, ReadLine());
  if (line.empty()) return Malformed("an empty line where a reply was expected");
  RespReply reply;
  const std::string_view rest = line.substr(1);
  switch (line.front()) {
    case '+':
      reply.type = RespType::kSimpleString;
      reply.text = rest;
      return reply;
    case '-':
      reply.type = RespType::kError;
      reply.text = rest;
      return reply;
    case ':': {
      reply.type = RespType::kInteger;
      TM_ASSIGN_OR_RETURN(reply.integer, ParseInteger(rest));
      return reply;
    }
    case '$': {
      TM_ASSIGN_OR_RETURN(int64_t length, ParseInteger(rest));
      if (length == -1) {
        reply.type = RespType::kNil;
        return reply;
      }
      if (length < 0) {
        return Malformed("bulk length " + std::to_string(length) + " (only -1 may be negative)");
      }
      const auto bytes = static_cast<uint64_t>(length);
      if (bytes > kMaxBulkBytes) {
        return Malformed("bulk length " + std::to_string(bytes) + " exceeds the 512 MiB limit");
      }
      std::byte crlf[2];
      if (bytes > bulk_out.size()) {
        // Consume the payload so the next reply starts where it should.
        TM_RETURN_IF_ERROR(Skip(bytes));
        TM_RETURN_IF_ERROR(ReadExact(crlf));
        if (crlf[0] != std::byte{'\r'} || crlf[1] != std::byte{'\n'}) {
          return Malformed("a bulk string is not followed by CRLF");
        }
        return ResourceExhausted("a value of " + std::to_string(bytes) +
                                 " bytes does not fit the " + std::to_string(bulk_out.size()) +
                                 "-byte buffer");
      }
      TM_RETURN_IF_ERROR(ReadExact(bulk_out.first(bytes)));
      TM_RETURN_IF_ERROR(ReadExact(crlf));
      if (crlf[0] != std::byte{'\r'} || crlf[1] != std::byte{'\n'}) {
        return Malformed("a bulk string is not followed by CRLF");
      }
      reply.type = RespType::kBulkString;
      reply.length = bytes;
      return reply;
    }
    case '*':
      return Malformed("array replies are not supported");
    default:
      return Malformed("unexpected reply type in '" + Printable(line) + "'");
  }
}

Result<std::unique_ptr<RespClient>> RespClient::Connect(uint16_t port, const std::string& host) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) {
    return InvalidArgument("not an IPv4 address: '" + host + "'");
  }
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  auto client = std::unique_ptr<RespClient>(new RespClient(fd));
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    return ErrnoError("connect to " + host + ":" + std::to_string(port), errno);
  }
  int one = 1;
  if (::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0) {
    return ErrnoError("setsockopt TCP_NODELAY", errno);
  }
  return client;
}

std::unique_ptr<RespClient> RespClient::FromFd(int fd) {
  return std::unique_ptr<RespClient>(new RespClient(fd));
}

RespClient::RespClient(int fd)
    : fd_(fd), reader_([fd](std::span<std::byte> out) -> Result<size_t> {
        for (;;) {
          ssize_t n = ::recv(fd, out.data(), out.size(), 0);
          if (n >= 0) return static_cast<size_t>(n);
          if (errno != EINTR) return ErrnoError("recv", errno);
        }
      }) {}

RespClient::~RespClient() { ::close(fd_); }

Status RespClient::Send(std::initializer_list<std::string_view> args,
                        std::optional<std::span<const std::byte>> tail) {
  if (broken_) return FailedPrecondition("the connection is unusable after an earlier error");
  header_.clear();
  header_ += '*';
  header_ += std::to_string(args.size() + (tail ? 1 : 0));
  header_ += "\r\n";
  for (std::string_view a : args) {
    header_ += '$';
    header_ += std::to_string(a.size());
    header_ += "\r\n";
    header_ += a;
    header_ += "\r\n";
  }
  static constexpr char kCrlf[] = "\r\n";
  iovec iov[3];
  int count = 0;
  if (tail) {
    header_ += '$';
    header_ += std::to_string(tail->size());
    header_ += "\r\n";
  }
  iov[count++] = {header_.data(), header_.size()};
  if (tail) {
    iov[count++] = {const_cast<std::byte*>(tail->data()), tail->size()};
    iov[count++] = {const_cast<char*>(kCrlf), 2};
  }
  iovec* next = iov;
  while (count > 0) {
    msghdr msg{};
    msg.msg_iov = next;
    msg.msg_iovlen = static_cast<size_t>(count);
    ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      broken_ = true;
      return ErrnoError("send", errno);
    }
    auto sent = static_cast<size_t>(n);
    while (count > 0 && sent >= next->iov_len) {
      sent -= next->iov_len;
      ++next;
      --count;
    }
    if (count > 0) {
      next->iov_base = static_cast<char*>(next->iov_base) + sent;
      next->iov_len -= sent;
    }
  }
  return Status::Ok();
}

Result<RespReply> RespClient::Receive(std::span<std::byte> bulk_out) {
  if (broken_) return FailedPrecondition("the connection is unusable after an earlier error");
  auto reply = reader_.Read(bulk_out);
  if (!reply.ok()) {
    if (reply.status().code() != StatusCode::kResourceExhausted) broken_ = true;
    return reply.status();
  }
  if (reply->type == RespType::kError) {
    return FailedPrecondition("redis: " + reply->text);
  }
  return reply;
}

Status RespClient::ExpectStatus(std::string_view expected, std::string_view command) {
  TM_ASSIGN_OR_RETURN(RespReply reply, Receive({}));
  if (reply.type != RespType::kSimpleString || reply.text != expected) {
    return Internal("unexpected reply to " + std::string(command) + " (wanted +" +
                    std::string(expected) + ")");
  }
  return Status::Ok();
}

Status RespClient::Ping() {
  TM_RETURN_IF_ERROR(Send({"PING"}));
  return ExpectStatus("PONG", "PING");
}

Status RespClient::Set(std::string_view key, std::span<const std::byte> value) {
  TM_RETURN_IF_ERROR(Send({"SET", key}, value));
  return ExpectStatus("OK", "SET");
}

Result<size_t> RespClient::Get(std::string_view key, std::span<std::byte> out) {
  TM_RETURN_IF_ERROR(Send({"GET", key}));
  TM_ASSIGN_OR_RETURN(RespReply reply, Receive(out));
  if (reply.type == RespType::kNil) return NotFound("no key '" + std::string(key) + "'");
  if (reply.type != RespType::kBulkString) return Internal("unexpected reply to GET");
  return static_cast<size_t>(reply.length);
}

Status RespClient::ConfigSet(std::string_view parameter, std::string_view value) {
  TM_RETURN_IF_ERROR(Send({"CONFIG", "SET", parameter, value}));
  return ExpectStatus("OK", "CONFIG SET");
}

Status RespClient::FlushAll() {
  TM_RETURN_IF_ERROR(Send({"FLUSHALL", "SYNC"}));
  return ExpectStatus("OK", "FLUSHALL");
}

Result<RespReply> RespClient::Command(std::initializer_list<std::string_view> args) {
  if (args.size() == 0) return InvalidArgument("an empty command");
  TM_RETURN_IF_ERROR(Send(args));
  std::vector<std::byte> bulk(kBufferBytes);
  TM_ASSIGN_OR_RETURN(RespReply reply, Receive(bulk));
  if (reply.type == RespType::kBulkString) {
    reply.text.assign(reinterpret_cast<const char*>(bulk.data()), reply.length);
  }
  return reply;
}

}  // namespace tokenmem::bench
