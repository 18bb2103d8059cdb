#include "resp_client.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

namespace tokenmem::bench {
namespace {

// A source that hands out the given chunks one read at a time (a chunk
// larger than the reader's request is handed out over several reads),
// then reports the peer closed.
RespReader::Source Chunks(std::vector<std::string> chunks) {
  auto state = std::make_shared<std::pair<std::vector<std::string>, size_t>>(std::move(chunks), 0);
  return [state](std::span<std::byte> out) -> Result<size_t> {
    auto& [list, next] = *state;
    while (next < list.size() && list[next].empty()) ++next;
    if (next == list.size()) return size_t{0};
    std::string& chunk = list[next];
    size_t n = std::min(out.size(), chunk.size());
    std::memcpy(out.data(), chunk.data(), n);
    chunk.erase(0, n);
    return n;
  };
}

std::string AsString(std::span<const std::byte> bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

TEST(RespReaderTest, SimpleStringAndIntegers) {
  RespReader reader(Chunks({"+OK\r\n:1234\r\n:-5\r\n:0\r\n"}));
  auto ok = reader.Read({});
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(ok->type, RespType::kSimpleString);
  EXPECT_EQ(ok->text, "OK");
  for (int64_t want : {1234, -5, 0}) {
    auto n = reader.Read({});
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    EXPECT_EQ(n->type, RespType::kInteger);
    EXPECT_EQ(n->integer, want);
  }
}

TEST(RespReaderTest, BulkStringSplitAcrossReads) {
  RespReader reader(Chunks({"$", "1", "0\r", "\n0123", "456789", "\r", "\n+OK\r\n"}));
  std::vector<std::byte> out(32);
  auto bulk = reader.Read(out);
  ASSERT_TRUE(bulk.ok()) << bulk.status().ToString();
  EXPECT_EQ(bulk->type, RespType::kBulkString);
  ASSERT_EQ(bulk->length, 10u);
  EXPECT_EQ(AsString(std::span(out).first(10)), "0123456789");
  auto next = reader.Read({});
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->text, "OK");
}

TEST(RespReaderTest, LargeBulkStringInOddChunks) {
  std::string payload(200000, '\0');
  for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>(i * 7 + i / 251);
  std::string wire = "$" + std::to_string(payload.size()) + "\r\n" + payload + "\r\n:7\r\n";
  std::vector<std::string> chunks;
  for (size_t at = 0; at < wire.size(); at += 7777) chunks.push_back(wire.substr(at, 7777));
  RespReader reader(Chunks(chunks));
  std::vector<std::byte> out(payload.size());
  auto bulk = reader.Read(out);
  ASSERT_TRUE(bulk.ok()) << bulk.status().ToString();
  ASSERT_EQ(bulk->length, payload.size());
  EXPECT_TRUE(AsString(out) == payload);
  auto next = reader.Read({});
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->integer, 7);
}

TEST(RespReaderTest, EmptyAndNilBulkStrings) {
  RespReader reader(Chunks({"$0\r\n\r\n$-1\r\n"}));
  auto empty = reader.Read({});
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->type, RespType::kBulkString);
  EXPECT_EQ(empty->length, 0u);
  auto nil = reader.Read({});
  ASSERT_TRUE(nil.ok()) << nil.status().ToString();
  EXPECT_EQ(nil->type, RespType::kNil);
}

TEST(RespReaderTest, ErrorReplyKeepsTheMessage) {
  RespReader reader(Chunks({"-ERR unknown command 'FOO'\r\n"}));
  auto e = reader.Read({});
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->type, RespType::kError);
  EXPECT_EQ(e->text, "ERR unknown command 'FOO'");
}

// Each input is a protocol violation: an IoError naming the problem.
TEST(RespReaderTest, MalformedRepliesAreClearErrors) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"?what\r\n", "unexpected reply type"},
      {"\r\n", "empty line"},
      {"$-2\r\n", "bulk length -2"},
      {"$1x\r\n", "bad number"},
      {"$\r\n", "bad number"},
      {":\r\n", "bad number"},
      {": 5\r\n", "bad number"},
      {":+5\r\n", "bad number"},
      {":99999999999999999999\r\n", "bad number"},
      {":9223372036854775808\r\n", "out of range"},
      {"$600000000\r\n", "512 MiB"},
      {"+OK\n", "LF without CR"},
      {"$3\r\nabcXY", "not followed by CRLF"},
      {"*1\r\n$1\r\na\r\n", "array"},
  };
  for (const auto& [wire, message] : cases) {
    RespReader reader(Chunks({wire}));
    std::vector<std::byte> out(16);
    auto r = reader.Read(out);
    ASSERT_FALSE(r.ok()) << "accepted: " << wire;
    EXPECT_EQ(r.status().code(), StatusCode::kIoError) << wire;
    EXPECT_NE(r.status().message().find(message), std::string::npos)
        << wire << " -> " << r.status().ToString();
  }
}

TEST(RespReaderTest, ExtremeIntegersParse) {
  RespReader reader(Chunks({":9223372036854775807\r\n:-9223372036854775808\r\n"}));
  auto max = reader.Read({});
  ASSERT_TRUE(max.ok()) << max.status().ToString();
  EXPECT_EQ(max->integer, INT64_MAX);
  auto min = reader.Read({});
  ASSERT_TRUE(min.ok()) << min.status().ToString();
  EXPECT_EQ(min->integer, INT64_MIN);
}

TEST(RespReaderTest, LineLongerThanTheBufferIsRefused) {
  RespReader reader(Chunks({"+" + std::string(70000, 'a') + "\r\n"}));
  auto r = reader.Read({});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find("longer than 64 KiB"), std::string::npos);
}

TEST(RespReaderTest, OversizedValueIsRefusedAndSkipped) {
  RespReader reader(Chunks({"$10\r\n01234", "56789\r\n+OK\r\n"}));
  std::vector<std::byte> small(4);
  auto r = reader.Read(small);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(r.status().message().find("10 bytes"), std::string::npos) << r.status().ToString();
  EXPECT_NE(r.status().message().find("4-byte buffer"), std::string::npos);
  auto next = reader.Read({});  // the stream is still in step
  ASSERT_TRUE(next.ok()) << next.status().ToString();
  EXPECT_EQ(next->text, "OK");
}

TEST(RespReaderTest, PeerClosingMidReplyIsUnavailable) {
  for (std::string wire : {"", "+OK", "$5\r\nab"}) {
    RespReader reader(Chunks({wire}));
    std::vector<std::byte> out(8);
    auto r = reader.Read(out);
    ASSERT_FALSE(r.ok()) << wire;
    EXPECT_EQ(r.status().code(), StatusCode::kUnavailable) << wire;
  }
}

// A client on one end of a socketpair; the test plays the server on the
// other end. Replies are written before the call that reads them (they fit
// the socket buffer), so no thread is needed.
class RespClientPairTest : public ::testing::Test {
 protected:
  void SetUp() override {
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    client_ = RespClient::FromFd(fds[0]);
    server_ = fds[1];
  }
  void TearDown() override {
    client_.reset();
    ::close(server_);
  }
  void Reply(const std::string& wire) {
    ASSERT_EQ(::write(server_, wire.data(), wire.size()), static_cast<ssize_t>(wire.size()));
  }
  std::string Received() {
    std::string all;
    char buf[4096];
    ssize_t n;
    while ((n = ::recv(server_, buf, sizeof(buf), MSG_DONTWAIT)) > 0) all.append(buf, n);
    return all;
  }

  std::unique_ptr<RespClient> client_;
  int server_ = -1;
};

TEST_F(RespClientPairTest, EncodesCommandsAsBulkArrays) {
  Reply("+OK\r\n+OK\r\n+PONG\r\n");
  const std::string value = "he\r\nllo";
  ASSERT_TRUE(client_->Set("k", std::as_bytes(std::span(value))).ok());
  EXPECT_EQ(Received(), "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$7\r\nhe\r\nllo\r\n");
  ASSERT_TRUE(client_->ConfigSet("maxmemory", "0").ok());
  EXPECT_EQ(Received(), "*4\r\n$6\r\nCONFIG\r\n$3\r\nSET\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n");
  ASSERT_TRUE(client_->Ping().ok());
  EXPECT_EQ(Received(), "*1\r\n$4\r\nPING\r\n");
}

TEST_F(RespClientPairTest, ErrorReplyBecomesStatusWithTheMessage) {
  Reply("-WRONGTYPE Operation against a key holding the wrong kind of value\r\n+OK\r\n");
  std::vector<std::byte> out(16);
  auto r = client_->Get("list", out);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("WRONGTYPE Operation against a key"), std::string::npos)
      << r.status().ToString();
  EXPECT_TRUE(client_->ConfigSet("a", "b").ok());  // still usable
}

TEST_F(RespClientPairTest, GetAnswers) {
  Reply("$3\r\nabc\r\n$-1\r\n$5\r\n12345\r\n$2\r\nxy\r\n:1\r\n");
  std::vector<std::byte> out(4);
  auto hit = client_->Get("a", out);
  ASSERT_TRUE(hit.ok()) << hit.status().ToString();
  EXPECT_EQ(*hit, 3u);
  EXPECT_EQ(AsString(std::span(out).first(3)), "abc");
  auto miss = client_->Get("b", out);
  EXPECT_TRUE(miss.status().IsNotFound()) << miss.status().ToString();
  auto big = client_->Get("c", out);
  EXPECT_EQ(big.status().code(), StatusCode::kResourceExhausted);
  auto after = client_->Get("d", out);  // in step after the oversized value
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_EQ(AsString(std::span(out).first(2)), "xy");
  auto wrong = client_->Get("e", out);  // an integer is no answer to GET
  EXPECT_EQ(wrong.status().code(), StatusCode::kInternal);
}

TEST_F(RespClientPairTest, ProtocolErrorBreaksTheConnection) {
  Reply("!bogus\r\n+PONG\r\n");
  Status first = client_->Ping();
  EXPECT_EQ(first.code(), StatusCode::kIoError);
  Status second = client_->Ping();
  EXPECT_EQ(second.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(second.message().find("unusable"), std::string::npos);
}

TEST_F(RespClientPairTest, UnexpectedStatusIsAnError) {
  Reply("+QUEUED\r\n");
  Status s = client_->Ping();
  EXPECT_EQ(s.code(), StatusCode::kInternal);
  EXPECT_NE(s.message().find("PONG"), std::string::npos);
}

TEST_F(RespClientPairTest, CommandReturnsBulkAsText) {
  Reply("$5\r\nhello\r\n:42\r\n-ERR nope\r\n");
  auto bulk = client_->Command({"ECHO", "hello"});
  ASSERT_TRUE(bulk.ok()) << bulk.status().ToString();
  EXPECT_EQ(bulk->type, RespType::kBulkString);
  EXPECT_EQ(bulk->text, "hello");
  auto n = client_->Command({"DBSIZE"});
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(n->integer, 42);
  auto e = client_->Command({"X"});
  EXPECT_EQ(e.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(e.status().message().find("ERR nope"), std::string::npos);
}

TEST_F(RespClientPairTest, PeerGoneIsAnError) {
  ::close(server_);
  server_ = ::open("/dev/null", O_RDONLY);  // TearDown closes something harmless
  Status s = client_->Ping();
  EXPECT_FALSE(s.ok());
}

TEST(RespClientTest, ConnectRefusedAndBadAddress) {
  auto bad = RespClient::Connect(6379, "not-an-address");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  // A port held by a socket that is bound but not listening refuses.
  int holder = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(holder, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(holder, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(holder, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  auto refused = RespClient::Connect(ntohs(addr.sin_port));
  EXPECT_EQ(refused.status().code(), StatusCode::kIoError);
  EXPECT_NE(refused.status().message().find("refused"), std::string::npos)
      << refused.status().ToString();
  ::close(holder);
}

}  // namespace
}  // namespace tokenmem::bench
