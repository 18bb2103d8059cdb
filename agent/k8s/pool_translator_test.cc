#include "k8s/pool_translator.h"

#include <gtest/gtest.h>

namespace tokenmem::k8s {
namespace {

nlohmann::json Object(nlohmann::json spec) {
  return {{"metadata", {{"name", "chat"}}}, {"spec", std::move(spec)}};
}

TEST(PoolTranslatorTest, ReadsEveryField) {
  auto spec = TranslatePool(Object({{"blockSize", "256Ki"},
                                    {"capacity", {{"dram", "1Gi"}, {"cxl", 0}, {"nvme", "10GB"}}},
                                    {"evictionPolicy", "none"},
                                    {"ttlSeconds", 60},
                                    {"scope", "cluster"},
                                    {"allowedNamespaces", {"team-b", "team-a", "team-b"}}}));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->name, "chat");
  EXPECT_EQ(spec->block_size, 256u * 1024);
  EXPECT_EQ(spec->capacity.dram, 1ull << 30);
  EXPECT_EQ(spec->capacity.cxl, 0u);
  EXPECT_EQ(spec->capacity.nvme, 10'000'000'000ull);
  EXPECT_EQ(spec->eviction, pool::EvictionPolicy::kNone);
  EXPECT_EQ(spec->ttl_seconds, 60u);
  EXPECT_EQ(spec->scope, pool::PoolScope::kCluster);
  EXPECT_EQ(spec->allowed_namespaces, (std::vector<std::string>{"team-a", "team-b"}));
  EXPECT_FALSE(TranslatePool(Object({{"blockSize", 4096},
                                     {"capacity", {{"dram", "1Mi"}}},
                                     {"allowedNamespaces", {"Team_A"}}}))
                   .ok());
  EXPECT_FALSE(TranslatePool(Object({{"blockSize", 4096},
                                     {"capacity", {{"dram", "1Mi"}}},
                                     {"allowedNamespaces", "team-a"}}))
                   .ok());

  spec = TranslatePool(
      Object({{"blockSize", 4096}, {"capacity", {{"dram", "1Mi"}}}, {"scope", "node"}}));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->scope, pool::PoolScope::kLocal);
  spec = TranslatePool(Object({{"blockSize", 4096}, {"capacity", {{"dram", "1Mi"}}}}));
  ASSERT_TRUE(spec.ok()) << spec.status().ToString();
  EXPECT_EQ(spec->scope, pool::PoolScope::kLocal);
}

TEST(PoolTranslatorTest, SizesAsTheCrdTakesThem) {
  EXPECT_EQ(ParseCrdSize(4096, "f").value(), 4096u);
  EXPECT_EQ(ParseCrdSize("2MiB", "f").value(), 2u << 20);
  EXPECT_EQ(ParseCrdSize("1.5Gi", "f").value(), 3ull << 29);
  EXPECT_EQ(ParseCrdSize("3KB", "f").value(), 3000u);
  for (const char* bad : {"4K", "1G", "2T", "5M"}) {
    auto r = ParseCrdSize(bad, "spec.blockSize");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("ambiguous"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("spec.blockSize"), std::string::npos);
  }
  EXPECT_FALSE(ParseCrdSize(-1, "f").ok());
  EXPECT_FALSE(ParseCrdSize("12XB", "f").ok());
  EXPECT_FALSE(ParseCrdSize("Gi", "f").ok());
  EXPECT_FALSE(ParseCrdSize(true, "f").ok());
}

TEST(PoolTranslatorTest, ErrorsNameTheField) {
  auto message = [](const nlohmann::json& object) {
    auto r = TranslatePool(object);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    return r.status().message();
  };
  EXPECT_NE(message({{"spec", {{"blockSize", 4096}}}}).find("metadata.name"), std::string::npos);
  EXPECT_NE(message(Object({{"capacity", {{"dram", "1Mi"}}}})).find("spec.blockSize"),
            std::string::npos);
  EXPECT_NE(message(Object({{"blockSize", 4096}})).find("spec.capacity"), std::string::npos);
  EXPECT_NE(message(Object({{"blockSize", 4096}, {"capacity", {{"hbm", "1Mi"}}}}))
                .find("spec.capacity.hbm"),
            std::string::npos);
  EXPECT_NE(message(Object({{"blockSize", 4096}, {"capacity", {{"dram", "1Mi"}}}, {"scope", "x"}}))
                .find("spec.scope"),
            std::string::npos);
  EXPECT_NE(
      message(Object({{"blockSize", 4096}, {"capacity", {{"dram", "1Mi"}}}, {"ttlSeconds", -3}}))
          .find("spec.ttlSeconds"),
      std::string::npos);
  EXPECT_NE(message(Object({{"blockSize", 4096},
                            {"capacity", {{"dram", "1Mi"}}},
                            {"evictionPolicy", "fifo"}}))
                .find("spec.evictionPolicy"),
            std::string::npos);
  // Not a multiple of 4 KiB: PoolSpec's own check.
  EXPECT_FALSE(TranslatePool(Object({{"blockSize", 5000}, {"capacity", {{"dram", "1Mi"}}}})).ok());
  EXPECT_FALSE(TranslatePool({{"metadata", {{"name", "Bad_Name"}}},
                              {"spec", {{"blockSize", 4096}, {"capacity", {{"dram", "1Mi"}}}}}})
                   .ok());
}

}  // namespace
}  // namespace tokenmem::k8s
