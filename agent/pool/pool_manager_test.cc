#include "pool/pool_manager.h"

#include <gtest/gtest.h>

#include <fstream>

#include "pool/pool_meta.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::pool {
namespace {

PoolSpec Spec(const std::string& name, TierCapacities capacity) {
  PoolSpec spec;
  spec.name = name;
  spec.block_size = 4096;
  spec.capacity = capacity;
  return spec;
}

class PoolManagerTest : public ::testing::Test {
 protected:
  std::unique_ptr<PoolManager> Open() {
    PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 * 4096, .nvme = 256 * 4096};
    options.nvme_root = dir_.path();
    options.nvme_segment_bytes = 1 << 20;
    auto manager = PoolManager::Open(options);
    EXPECT_TRUE(manager.ok()) << manager.status().ToString();
    return manager.ok() ? std::move(manager).value() : nullptr;
  }
  testing::TempDir dir_;
};

TEST_F(PoolManagerTest, CreateListDelete) {
  auto manager = Open();
  ASSERT_TRUE(manager->Create(Spec("a", {.dram = 16 * 4096})).ok());
  ASSERT_TRUE(manager->Create(Spec("b.2", {.dram = 16 * 4096, .nvme = 64 * 4096})).ok());
  EXPECT_EQ(manager->List().size(), 2u);
  EXPECT_EQ(manager->Reserved().dram, 32u * 4096);
  EXPECT_EQ(manager->Create(Spec("a", {.dram = 4096})).status().code(), StatusCode::kAlreadyExists);
  ASSERT_TRUE(manager->Delete("a").ok());
  EXPECT_TRUE(manager->Find("a").status().IsNotFound());
  EXPECT_TRUE(manager->Delete("a").IsNotFound());
  EXPECT_FALSE(std::filesystem::exists(dir_ / "a"));
  EXPECT_EQ(manager->Reserved().dram, 16u * 4096);
}

TEST_F(PoolManagerTest, BadInputChangesNothing) {
  auto manager = Open();
  EXPECT_EQ(manager->Create(Spec("Bad_Name", {.dram = 4096})).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(manager->Create(Spec("x", {})).status().code(), StatusCode::kInvalidArgument);
  auto too_big = manager->Create(Spec("big", {.dram = 65 * 4096}));
  EXPECT_EQ(too_big.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(too_big.status().message().find("dram"), std::string::npos);
  EXPECT_TRUE(manager->List().empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path()));
  EXPECT_EQ(manager->Delete("../etc").code(), StatusCode::kInvalidArgument);
}

TEST_F(PoolManagerTest, PoolsAndTheirNvmeBlocksComeBackAfterRestart) {
  auto lease = std::make_shared<LeaseAccount>("l", "s", LeaseOptions{.quota_bytes = 1 << 30}, 0);
  std::vector<std::byte> data(4096, std::byte{7});
  {
    auto manager = Open();
    auto pool = manager->Create(Spec("keep", {.nvme = 32 * 4096}));
    ASSERT_TRUE(pool.ok());
    ASSERT_TRUE((*pool)->Put(BlockKey{1, 2}, data, lease).ok());
    ASSERT_TRUE(manager->Create(Spec("mem", {.dram = 4096})).ok());
  }
  auto manager = Open();
  EXPECT_EQ(manager->List().size(), 2u);
  EXPECT_EQ(manager->recovered_blocks(), 1u);
  auto pool = manager->Find("keep");
  ASSERT_TRUE(pool.ok());
  std::vector<std::byte> out(4096);
  ASSERT_TRUE((*pool)->Get(BlockKey{1, 2}, out).ok());
  EXPECT_EQ(out, data);
}

TEST_F(PoolManagerTest, DamagedDefinitionIsSkippedAndLeftAlone) {
  std::filesystem::create_directory(dir_ / "broken");
  std::ofstream(dir_ / "broken" / kPoolMetaFile) << "format 1\nname broken\nblock_size lots\n";
  auto manager = Open();
  EXPECT_TRUE(manager->List().empty());
  EXPECT_TRUE(std::filesystem::exists(dir_ / "broken" / kPoolMetaFile));
  EXPECT_EQ(manager->Create(Spec("broken", {.dram = 4096})).status().code(),
            StatusCode::kAlreadyExists);
}

TEST(PoolMetaTest, RoundTripAndErrors) {
  testing::TempDir dir;
  PoolSpec spec = Spec("m", {.dram = 8192, .cxl = 4096, .nvme = 1 << 20});
  spec.eviction = EvictionPolicy::kNone;
  spec.ttl_seconds = 30;
  spec.scope = PoolScope::kCluster;
  spec.allowed_namespaces = {"inference", "team-b"};
  ASSERT_TRUE(WritePoolMeta(dir.path(), spec).ok());
  auto back = ReadPoolMeta(dir.path());
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->name, "m");
  EXPECT_EQ(back->capacity.cxl, 4096u);
  EXPECT_EQ(back->eviction, EvictionPolicy::kNone);
  EXPECT_EQ(back->ttl_seconds, 30u);
  EXPECT_EQ(back->scope, PoolScope::kCluster);
  EXPECT_EQ(back->allowed_namespaces, spec.allowed_namespaces);
  EXPECT_TRUE(*back == spec);
  // Files written before pools had a scope read as local.
  std::ofstream(dir / kPoolMetaFile) << "format 1\nname m\nblock_size 4096\ndram 8192\n";
  auto old = ReadPoolMeta(dir.path());
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->scope, PoolScope::kLocal);
  std::ofstream(dir / kPoolMetaFile) << "format 1\nname m\nblock_size 4096\ndram 8192\nscope x\n";
  EXPECT_NE(ReadPoolMeta(dir.path()).status().message().find(":5:"), std::string::npos);
  std::ofstream(dir / kPoolMetaFile) << "format 1\nname m\ncolour blue\n";
  auto bad = ReadPoolMeta(dir.path());
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(bad.status().message().find(":3:"), std::string::npos);
}

}  // namespace
}  // namespace tokenmem::pool
