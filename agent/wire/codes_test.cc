#include "wire/codes.h"

#include <gtest/gtest.h>

namespace tokenmem::wire {
namespace {

TEST(CodesTest, NamesRpcCodes) {
  EXPECT_EQ(RpcCodeName(grpc::StatusCode::INVALID_ARGUMENT), "INVALID_ARGUMENT");
  EXPECT_EQ(RpcCodeName(grpc::StatusCode::PERMISSION_DENIED), "PERMISSION_DENIED");
  EXPECT_EQ(RpcCodeName(static_cast<grpc::StatusCode>(99)), "UNKNOWN");
}

TEST(CodesTest, DescribesErrors) {
  EXPECT_EQ(DescribeRpcError(grpc::Status(grpc::StatusCode::NOT_FOUND, "no pool 'x'")),
            "NOT_FOUND: no pool 'x'");
  EXPECT_EQ(DescribeRpcError(grpc::Status(grpc::StatusCode::UNAVAILABLE, "")), "UNAVAILABLE");
}

TEST(CodesTest, MapsRpcStatusesKeepingTheGrpcName) {
  EXPECT_TRUE(FromRpcStatus("Put", grpc::Status::OK).ok());
  Status s = FromRpcStatus("Put", grpc::Status(grpc::StatusCode::PERMISSION_DENIED, "bad secret"));
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(s.message(), "Put: PERMISSION_DENIED: bad secret");
  EXPECT_EQ(FromRpcStatus("Get", grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "")).code(),
            StatusCode::kUnavailable);
  EXPECT_EQ(FromRpcStatus("Get", grpc::Status(grpc::StatusCode::UNIMPLEMENTED, "")).code(),
            StatusCode::kInternal);
}

TEST(CodesTest, NamesStoreCodesFromTheWire) {
  EXPECT_EQ(StoreCodeName(0), "OK");
  EXPECT_EQ(StoreCodeName(4), "RESOURCE_EXHAUSTED");
  EXPECT_EQ(StoreCodeName(10), "INTERNAL");
  EXPECT_EQ(StoreCodeName(11), "CODE_11");
  EXPECT_EQ(StoreCodeName(-1), "CODE_-1");
}

TEST(CodesTest, NamesTiersAndPolicies) {
  EXPECT_EQ(TierName(v1::TIER_KIND_DRAM), "dram");
  EXPECT_EQ(TierName(v1::TIER_KIND_CXL), "cxl");
  EXPECT_EQ(TierName(v1::TIER_KIND_NVME), "nvme");
  EXPECT_EQ(TierName(v1::TIER_KIND_UNSPECIFIED), "unspecified");
  EXPECT_EQ(EvictionName(v1::EVICTION_POLICY_LRU), "lru");
  EXPECT_EQ(EvictionName(v1::EVICTION_POLICY_NONE), "none");
}

}  // namespace
}  // namespace tokenmem::wire
