#include "control/proto_convert.h"

#include <gtest/gtest.h>

namespace tokenmem::control {
namespace {

TEST(ProtoConvertTest, KeysAreBigEndianHiThenLo) {
  BlockKey key{0x0102030405060708ULL, 0x090a0b0c0d0e0f10ULL};
  std::string bytes = KeyToBytes(key);
  ASSERT_EQ(bytes.size(), 16u);
  EXPECT_EQ(bytes[0], 0x01);
  EXPECT_EQ(bytes[15], 0x10);
  EXPECT_EQ(*KeyFromBytes(bytes), key);
  EXPECT_EQ(KeyFromBytes("abc").status().code(), StatusCode::kInvalidArgument);
}

TEST(ProtoConvertTest, PoolSpecRoundTripAndUnknownEnums) {
  pool::PoolSpec spec{.name = "p",
                      .block_size = 8192,
                      .capacity = {.dram = 1 << 20, .nvme = 2 << 20},
                      .eviction = pool::EvictionPolicy::kNone,
                      .ttl_seconds = 5};
  v1::PoolSpec proto;
  ToProto(spec, &proto);
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->capacity.nvme, 2u << 20);
  EXPECT_EQ(back->eviction, pool::EvictionPolicy::kNone);
  EXPECT_EQ(back->scope, pool::PoolScope::kLocal);
  EXPECT_EQ(proto.scope(), v1::POOL_SCOPE_LOCAL);
  proto.mutable_capacity(0)->set_tier(static_cast<v1::TierKind>(42));
  EXPECT_EQ(FromProto(proto).status().code(), StatusCode::kInvalidArgument);
}

TEST(ProtoConvertTest, PoolScope) {
  pool::PoolSpec spec{.name = "p", .block_size = 4096, .capacity = {.dram = 1 << 20}};
  spec.scope = pool::PoolScope::kCluster;
  v1::PoolSpec proto;
  ToProto(spec, &proto);
  EXPECT_EQ(proto.scope(), v1::POOL_SCOPE_CLUSTER);
  auto back = FromProto(proto);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->scope, pool::PoolScope::kCluster);
  proto.set_scope(v1::POOL_SCOPE_UNSPECIFIED);  // an older client: local
  EXPECT_EQ(FromProto(proto)->scope, pool::PoolScope::kLocal);
  proto.set_scope(static_cast<v1::PoolScope>(9));
  auto bad = FromProto(proto);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("scope"), std::string::npos);
}

TEST(ProtoConvertTest, StatusCodesMap) {
  EXPECT_EQ(ToGrpc(NotFound("x")).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(ToGrpc(ResourceExhausted("x")).error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(ToGrpc(InvalidArgument("why")).error_message(), "why");
  EXPECT_TRUE(ToGrpc(Status::Ok()).ok());
}

}  // namespace
}  // namespace tokenmem::control
