#include "tokenmem/transport/frame.h"

#include <gtest/gtest.h>

#include <cstring>

namespace tokenmem::transport {
namespace {

Request RoundTrip(const Request& in) {
  auto bytes = EncodeRequest(in);
  EXPECT_TRUE(bytes.ok()) << bytes.status().message();
  auto out = DecodeRequest(*bytes);
  EXPECT_TRUE(out.ok()) << out.status().message();
  return *out;
}

Reply RoundTrip(const Reply& in) {
  auto bytes = EncodeReply(in);
  EXPECT_TRUE(bytes.ok()) << bytes.status().message();
  auto out = DecodeReply(*bytes);
  EXPECT_TRUE(out.ok()) << out.status().message();
  return *out;
}

TEST(FrameTest, RequestsRoundTrip) {
  Request hello{.op = Op::kHello, .id = 7, .lease_id = "lease-1", .lease_secret = "s3cret"};
  Request got = RoundTrip(hello);
  EXPECT_EQ(got.op, Op::kHello);
  EXPECT_EQ(got.id, 7u);
  EXPECT_EQ(got.lease_id, "lease-1");
  EXPECT_EQ(got.lease_secret, "s3cret");

  Request get{.op = Op::kGet, .id = 9, .pool = 3};
  get.gets = {{BlockKey{1, 2}, 4096}, {BlockKey{3, 4}, 65536}};
  got = RoundTrip(get);
  ASSERT_EQ(got.gets.size(), 2u);
  EXPECT_EQ(got.pool, 3u);
  EXPECT_EQ(got.gets[1].key, (BlockKey{3, 4}));
  EXPECT_EQ(got.gets[1].capacity, 65536u);

  Request put{.op = Op::kPut, .id = 10, .pool = 1};
  put.puts = {{BlockKey{5, 6}, 100}, {BlockKey{7, 8}, 28}};
  got = RoundTrip(put);
  EXPECT_EQ(got.PayloadBytes(), 128u);

  Request lookup{.op = Op::kLookupPrefix, .id = 11, .pool = 2};
  lookup.keys = {BlockKey{1, 1}, BlockKey{2, 2}, BlockKey{3, 3}};
  got = RoundTrip(lookup);
  EXPECT_EQ(got.keys, lookup.keys);

  Request attach{.op = Op::kAttach, .id = 12, .pool_name = "llama"};
  EXPECT_EQ(RoundTrip(attach).pool_name, "llama");
}

TEST(FrameTest, RepliesRoundTrip) {
  Reply get{.op = Op::kGet, .id = 5};
  get.items = {{StatusCode::kOk, 100}, {StatusCode::kNotFound, 0}, {StatusCode::kOk, 28}};
  Reply got = RoundTrip(get);
  ASSERT_EQ(got.items.size(), 3u);
  EXPECT_EQ(got.items[1].code, StatusCode::kNotFound);
  EXPECT_EQ(got.PayloadBytes(), 128u);

  Reply error{
      .op = Op::kPut, .id = 6, .status = StatusCode::kPermissionDenied, .message = "read-only"};
  got = RoundTrip(error);
  EXPECT_EQ(got.status, StatusCode::kPermissionDenied);
  EXPECT_EQ(got.message, "read-only");
  EXPECT_EQ(got.PayloadBytes(), 0u);

  Reply attach{.op = Op::kAttach, .id = 7, .pool = 4, .block_size = 1 << 20, .read_only = true};
  got = RoundTrip(attach);
  EXPECT_EQ(got.pool, 4u);
  EXPECT_EQ(got.block_size, 1u << 20);
  EXPECT_TRUE(got.read_only);

  Reply lookup{.op = Op::kLookupPrefix, .id = 8, .matched = 42};
  EXPECT_EQ(RoundTrip(lookup).matched, 42u);
}

TEST(FrameTest, MalformedRequestsAreRefusedWithAReason) {
  Request get{.op = Op::kGet, .id = 9, .pool = 3};
  get.gets = {{BlockKey{1, 2}, 4096}};
  auto bytes = *EncodeRequest(get);

  auto truncated = bytes;
  truncated.pop_back();
  auto r = DecodeRequest(truncated);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find("GET items"), std::string::npos);

  auto trailing = bytes;
  trailing.push_back(std::byte{0});
  EXPECT_FALSE(DecodeRequest(trailing).ok());

  auto bad_magic = bytes;
  bad_magic[0] = std::byte{0};
  EXPECT_NE(DecodeRequest(bad_magic).status().message().find("magic"), std::string::npos);

  auto bad_op = bytes;
  bad_op[6] = std::byte{99};
  EXPECT_NE(DecodeRequest(bad_op).status().message().find("unknown op"), std::string::npos);

  auto bad_version = bytes;
  bad_version[4] = std::byte{2};
  EXPECT_NE(DecodeRequest(bad_version).status().message().find("version"), std::string::npos);

  // A count that claims more items than the limit is refused before any
  // allocation, whatever the header length.
  auto huge = bytes;
  uint32_t count = kMaxItems + 1;
  std::memcpy(huge.data() + 20, &count, 4);
  EXPECT_NE(DecodeRequest(huge).status().message().find(std::to_string(kMaxItems)),
            std::string::npos);

  EXPECT_FALSE(DecodeRequest({}).ok());
}

TEST(FrameTest, CredentialsAndNamesAreLimited) {
  Request hello{.op = Op::kHello, .lease_id = std::string(64, 'x'), .lease_secret = "s"};
  EXPECT_EQ(EncodeRequest(hello).status().code(), StatusCode::kInvalidArgument);
  Request attach{.op = Op::kAttach, .pool_name = std::string(300, 'p')};
  EXPECT_EQ(EncodeRequest(attach).status().code(), StatusCode::kInvalidArgument);
  Request many{.op = Op::kExists};
  many.keys.resize(kMaxItems + 1);
  EXPECT_EQ(EncodeRequest(many).status().code(), StatusCode::kInvalidArgument);

  // A HELLO whose id length field says 200 bytes is malformed even when
  // that many bytes follow.
  Request ok{.op = Op::kHello, .lease_id = "id", .lease_secret = "s"};
  auto bytes = *EncodeRequest(ok);
  uint16_t n = 200;
  std::memcpy(bytes.data() + 24, &n, 2);
  bytes.resize(24 + 2 + 200 + 2 + 1);
  EXPECT_FALSE(DecodeRequest(bytes).ok());
}

TEST(FrameTest, MalformedRepliesAreRefused) {
  Reply get{.op = Op::kGet, .id = 5};
  get.items = {{StatusCode::kOk, 100}};
  auto bytes = *EncodeReply(get);
  auto bad_code = bytes;
  bad_code[24] = std::byte{200};
  EXPECT_FALSE(DecodeReply(bad_code).ok());
  auto bad_status = bytes;
  bad_status[16] = std::byte{77};
  EXPECT_FALSE(DecodeReply(bad_status).ok());
  bytes.pop_back();
  EXPECT_FALSE(DecodeReply(bytes).ok());
}

}  // namespace
}  // namespace tokenmem::transport
