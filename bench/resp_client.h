// A small RESP2 client, enough to drive Redis as a benchmark baseline:
// PING, SET, GET into a caller buffer, CONFIG SET, FLUSHALL and simple
// commands whose reply is a status, an error, an integer or a bulk string.
//
// Errors are Status values, never exceptions:
//   - an error reply ("-ERR ...") is kFailedPrecondition carrying the
//     server's message; the connection stays usable;
//   - a malformed reply (bad type byte, bad number, a negative length other
//     than -1, a length over kMaxBulkBytes, a missing CRLF) is kIoError and
//     breaks the connection: every later call answers kFailedPrecondition;
//   - a GET value larger than the caller's buffer is kResourceExhausted;
//     its bytes are read and dropped, so the connection stays usable.
//
// Thread safety: none. One RespClient (and one RespReader) per thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::bench {

// Redis's own ceiling for a bulk string (proto-max-bulk-len default).
inline constexpr uint64_t kMaxBulkBytes = 512ull << 20;

enum class RespType { kSimpleString, kError, kInteger, kBulkString, kNil };

// One reply as read by RespReader::Read. For kBulkString the payload went
// to the caller's buffer and `length` says how much of it is valid.
struct RespReply {
  RespType type = RespType::kNil;
  std::string text;     // kSimpleString and kError: the line without its type byte
  int64_t integer = 0;  // kInteger
  uint64_t length = 0;  // kBulkString: payload bytes
};

// Reads RESP2 replies from a byte stream. `Source` fills part of its
// argument and returns how many bytes it wrote (0 means the peer closed).
class RespReader {
 public:
  using Source = std::function<Result<size_t>(std::span<std::byte>)>;

  explicit RespReader(Source source);

  // Reads one reply. A bulk string's payload goes to `bulk_out`; one that
  // does not fit is read, dropped and answered kResourceExhausted. Arrays are
  // refused (kIoError): no command this client sends answers with one.
  // Errors other than kResourceExhausted leave the stream unusable.
  Result<RespReply> Read(std::span<std::byte> bulk_out);

 private:
  Result<std::string_view> ReadLine();  // without CRLF; valid until the next read
  Status Fill();                        // appends at least one byte to the buffer
  Status ReadExact(std::span<std::byte> out);
  Status Skip(uint64_t bytes);

  Source source_;
  std::vector<std::byte> buffer_;
  size_t begin_ = 0;  // unread bytes are buffer_[begin_, end_)
  size_t end_ = 0;
};

class RespClient {
 public:
  // Connects over TCP to host:port (an IPv4 address) with TCP_NODELAY on.
  static Result<std::unique_ptr<RespClient>> Connect(uint16_t port,
                                                     const std::string& host = "127.0.0.1");
  // Takes ownership of a connected stream socket (tests use a socketpair).
  static std::unique_ptr<RespClient> FromFd(int fd);

  ~RespClient();
  RespClient(const RespClient&) = delete;
  RespClient& operator=(const RespClient&) = delete;

  // OK when the server answers PONG.
  Status Ping();
  // Stores `value` under `key`; OK when the server answers OK.
  Status Set(std::string_view key, std::span<const std::byte> value);
  // Copies the value of `key` to the front of `out` and returns its length;
  // kNotFound when the key does not exist; kResourceExhausted when the
  // value is longer than `out` (nothing useful is written then).
  Result<size_t> Get(std::string_view key, std::span<std::byte> out);
  // CONFIG SET parameter value; OK when the server accepts it.
  Status ConfigSet(std::string_view parameter, std::string_view value);
  // Removes every key of every database, synchronously.
  Status FlushAll();
  // Sends any command and returns its reply; a bulk reply is kept in
  // `text` (up to 64 KiB). An error reply is a Status, as above.
  Result<RespReply> Command(std::initializer_list<std::string_view> args);

 private:
  explicit RespClient(int fd);
  // Sends one command: `args`, then `tail` (when given) as a last argument
  // sent straight from the caller's memory, so large values are not copied.
  Status Send(std::initializer_list<std::string_view> args,
              std::optional<std::span<const std::byte>> tail = std::nullopt);
  Result<RespReply> Receive(std::span<std::byte> bulk_out);
  Status ExpectStatus(std::string_view expected, std::string_view command);

  int fd_;
  bool broken_ = false;
  std::string header_;  // reused for the encoded command
  RespReader reader_;
};

}  // namespace tokenmem::bench
