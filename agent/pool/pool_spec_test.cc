#include "pool/pool_spec.h"

#include <gtest/gtest.h>

namespace tokenmem::pool {
namespace {

TEST(PoolSpecTest, Names) {
  for (const std::string& good :
       std::vector<std::string>{"a", "0", "chat-llama3.8b", std::string(63, 'x')}) {
    EXPECT_TRUE(ValidatePoolName(good).ok()) << good;
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "-a", ".a", "A", "a_b", "a/b", "a b", std::string(64, 'x')}) {
    auto s = ValidatePoolName(bad);
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << bad;
  }
}

TEST(PoolSpecTest, Sizes) {
  PoolSpec spec{.name = "p", .block_size = 65536, .capacity = {.dram = 1 << 20}};
  EXPECT_TRUE(ValidatePoolSpec(spec).ok());
  spec.block_size = 5000;
  EXPECT_NE(ValidatePoolSpec(spec).message().find("block_size"), std::string::npos);
  spec.block_size = 1 << 20;
  spec.capacity.nvme = 4096;
  EXPECT_NE(ValidatePoolSpec(spec).message().find("nvme"), std::string::npos);
  spec.capacity = {};
  EXPECT_FALSE(ValidatePoolSpec(spec).ok());
}

TEST(PoolSpecTest, EvictionPolicies) {
  EXPECT_EQ(*ParseEvictionPolicy("lru"), EvictionPolicy::kLru);
  EXPECT_EQ(*ParseEvictionPolicy("none"), EvictionPolicy::kNone);
  EXPECT_FALSE(ParseEvictionPolicy("random").ok());
}

TEST(PoolSpecTest, Scopes) {
  EXPECT_EQ(PoolSpec{}.scope, PoolScope::kLocal);
  EXPECT_EQ(*ParsePoolScope("local"), PoolScope::kLocal);
  EXPECT_EQ(*ParsePoolScope("cluster"), PoolScope::kCluster);
  EXPECT_EQ(PoolScopeName(PoolScope::kLocal), "local");
  EXPECT_EQ(PoolScopeName(PoolScope::kCluster), "cluster");
  auto bad = ParsePoolScope("node");
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find("local, cluster"), std::string::npos);

  PoolSpec spec{.name = "p", .block_size = 4096, .capacity = {.dram = 1 << 20}};
  spec.scope = PoolScope::kCluster;
  EXPECT_TRUE(ValidatePoolSpec(spec).ok());
  spec.scope = static_cast<PoolScope>(7);
  EXPECT_NE(ValidatePoolSpec(spec).message().find("scope"), std::string::npos);
}

TEST(PoolSpecTest, AllowedNamespaces) {
  for (const std::string& good :
       std::vector<std::string>{"a", "team-a", "0ns", std::string(63, 'x')}) {
    EXPECT_TRUE(ValidateNamespaceName(good).ok()) << good;
  }
  for (const std::string& bad :
       std::vector<std::string>{"", "-a", "a-", "Team", "a.b", "a_b", std::string(64, 'x')}) {
    EXPECT_EQ(ValidateNamespaceName(bad).code(), StatusCode::kInvalidArgument) << bad;
  }
  PoolSpec spec{.name = "p", .block_size = 4096, .capacity = {.dram = 4096}};
  spec.allowed_namespaces = {"team-b", "team-a", "team-b"};
  EXPECT_EQ(ValidatePoolSpec(spec).code(), StatusCode::kInvalidArgument);  // not normalized
  NormalizeNamespaces(&spec.allowed_namespaces);
  EXPECT_EQ(spec.allowed_namespaces, (std::vector<std::string>{"team-a", "team-b"}));
  EXPECT_TRUE(ValidatePoolSpec(spec).ok());
  spec.allowed_namespaces = {"Bad"};
  Status bad = ValidatePoolSpec(spec);
  EXPECT_NE(bad.message().find("allowed_namespaces"), std::string::npos) << bad.message();
  spec.allowed_namespaces.clear();
  for (int i = 0; i < 257; ++i) spec.allowed_namespaces.push_back("n" + std::to_string(1000 + i));
  EXPECT_EQ(ValidatePoolSpec(spec).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::pool
