// Pins per lease: the quota (limits.max_pinned_blocks_per_lease), who may
// unpin, and every way a pin is given back.
#include <gtest/gtest.h>

#include <vector>

#include "limits/limits.h"
#include "pool/pool.h"
#include "pool/pool_manager.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::pool {
namespace {

constexpr uint64_t kBlock = 4096;
constexpr uint32_t kMaxPins = 3;

BlockKey Key(uint64_t n) { return BlockKey{0x5151, n}; }

class PoolPinsTest : public ::testing::Test {
 protected:
  std::unique_ptr<Pool> OpenPool(const std::string& name, uint64_t blocks = 16) {
    PoolSpec spec;
    spec.name = name;
    spec.block_size = kBlock;
    spec.capacity = {.dram = blocks * kBlock};
    PoolEnvironment env;
    env.memory_segment_bytes = 1 << 20;
    env.max_pinned_blocks_per_lease = kMaxPins;
    env.limits = &counters_;
    auto pool = Pool::Open(spec, env);
    EXPECT_TRUE(pool.ok()) << pool.status().ToString();
    return pool.ok() ? std::move(pool).value() : nullptr;
  }

  std::shared_ptr<LeaseAccount> Lease() {
    auto lease = leases_.Create(LeaseOptions{.quota_bytes = 1 << 20});
    EXPECT_TRUE(lease.ok());
    return lease->account;
  }

  void PutBlocks(Pool& pool, const std::shared_ptr<LeaseAccount>& lease, uint64_t n) {
    std::vector<std::byte> data(kBlock, std::byte{7});
    for (uint64_t i = 0; i < n; ++i) ASSERT_TRUE(pool.Put(Key(i), data, lease).ok());
  }

  static uint64_t Pinned(const Pool& pool) {
    return pool.Snapshot().usage[static_cast<size_t>(TierKind::kDram)].pinned_blocks;
  }

  limits::LimitCounters counters_;
  LeaseTable leases_;
};

TEST_F(PoolPinsTest, ALeaseIsRefusedAtItsPinQuotaAndTheRefusalIsCounted) {
  auto pool = OpenPool("p");
  auto lease = Lease();
  PutBlocks(*pool, lease, 8);
  for (uint64_t i = 0; i < kMaxPins; ++i) ASSERT_TRUE(pool->Pin(Key(i), lease).ok());
  EXPECT_EQ(lease->pinned_blocks(), kMaxPins);

  Status over = pool->Pin(Key(kMaxPins), lease);
  EXPECT_EQ(over.code(), StatusCode::kResourceExhausted);
  EXPECT_NE(over.message().find("limits.max_pinned_blocks_per_lease"), std::string::npos)
      << over.message();
  EXPECT_EQ(counters_.count(limits::Limit::kPins), 1u);
  EXPECT_EQ(Pinned(*pool), kMaxPins);

  // A block pinned already costs nothing more, whoever asks.
  EXPECT_TRUE(pool->Pin(Key(0), lease).ok());
  EXPECT_EQ(lease->pinned_blocks(), kMaxPins);
  // Another lease has its own count.
  auto other = Lease();
  EXPECT_TRUE(pool->Pin(Key(5), other).ok());
  EXPECT_EQ(other->pinned_blocks(), 1u);
  EXPECT_EQ(counters_.count(limits::Limit::kPins), 1u);
}

TEST_F(PoolPinsTest, TheQuotaSpansPools) {
  auto a = OpenPool("a");
  auto b = OpenPool("b");
  auto lease = Lease();
  PutBlocks(*a, lease, 4);
  PutBlocks(*b, lease, 4);
  ASSERT_TRUE(a->Pin(Key(0), lease).ok());
  ASSERT_TRUE(a->Pin(Key(1), lease).ok());
  ASSERT_TRUE(b->Pin(Key(0), lease).ok());
  EXPECT_EQ(b->Pin(Key(1), lease).code(), StatusCode::kResourceExhausted);
}

TEST_F(PoolPinsTest, UnpinRemoveAndReplaceGiveThePinBack) {
  auto pool = OpenPool("p");
  auto lease = Lease();
  PutBlocks(*pool, lease, 8);
  for (uint64_t i = 0; i < kMaxPins; ++i) ASSERT_TRUE(pool->Pin(Key(i), lease).ok());

  ASSERT_TRUE(pool->Unpin(Key(0), lease).ok());
  EXPECT_EQ(lease->pinned_blocks(), 2u);
  EXPECT_TRUE(pool->Unpin(Key(0), lease).ok());  // unpinned already: no change
  EXPECT_EQ(lease->pinned_blocks(), 2u);

  ASSERT_TRUE(pool->Remove(Key(1)).ok());
  EXPECT_EQ(lease->pinned_blocks(), 1u);

  std::vector<std::byte> data(kBlock, std::byte{9});
  ASSERT_TRUE(pool->Put(Key(2), data, lease).ok());  // the new block is not pinned
  EXPECT_EQ(lease->pinned_blocks(), 0u);
  EXPECT_EQ(Pinned(*pool), 0u);

  for (uint64_t i = 3; i < 3 + kMaxPins; ++i) EXPECT_TRUE(pool->Pin(Key(i), lease).ok());
}

TEST_F(PoolPinsTest, OnlyThePinningLeaseMayUnpin) {
  auto pool = OpenPool("p");
  auto owner = Lease();
  auto other = Lease();
  PutBlocks(*pool, owner, 2);
  ASSERT_TRUE(pool->Pin(Key(0), owner).ok());
  EXPECT_EQ(pool->Unpin(Key(0), other).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(Pinned(*pool), 1u);
  EXPECT_EQ(owner->pinned_blocks(), 1u);
  // The agent itself (no lease) may.
  EXPECT_TRUE(pool->Unpin(Key(0)).ok());
  EXPECT_EQ(owner->pinned_blocks(), 0u);
  // And a block the agent pinned is not a tenant's to unpin.
  ASSERT_TRUE(pool->Pin(Key(1)).ok());
  EXPECT_EQ(pool->Unpin(Key(1), owner).code(), StatusCode::kPermissionDenied);
}

TEST_F(PoolPinsTest, ReleasingALeaseUnpinsItsBlocksEverywhere) {
  PoolManagerOptions options;
  options.tier_capacity = {.dram = 64 * kBlock};
  options.max_pinned_blocks_per_lease = kMaxPins;
  options.limits = &counters_;
  auto manager = PoolManager::Open(options);
  ASSERT_TRUE(manager.ok()) << manager.status().ToString();
  PoolSpec spec;
  spec.block_size = kBlock;
  spec.capacity = {.dram = 16 * kBlock};
  spec.name = "a";
  auto a = (*manager)->Create(spec);
  spec.name = "b";
  auto b = (*manager)->Create(spec);
  ASSERT_TRUE(a.ok() && b.ok());
  leases_.OnRelease([m = manager->get()](LeaseAccount& lease) { m->ReleasePinsOf(lease); });

  auto lease = Lease();
  auto keeper = Lease();
  PutBlocks(**a, lease, 4);
  PutBlocks(**b, lease, 4);
  ASSERT_TRUE((*a)->Pin(Key(0), lease).ok());
  ASSERT_TRUE((*b)->Pin(Key(0), lease).ok());
  ASSERT_TRUE((*a)->Pin(Key(1), keeper).ok());

  ASSERT_TRUE(leases_.Release(lease->id()).ok());
  EXPECT_EQ(lease->pinned_blocks(), 0u);
  EXPECT_EQ(Pinned(**a), 1u);  // the other lease's pin stays
  EXPECT_EQ(Pinned(**b), 0u);
  EXPECT_EQ(keeper->pinned_blocks(), 1u);
  // A released lease pins nothing more.
  EXPECT_EQ((*a)->Pin(Key(2), lease).code(), StatusCode::kFailedPrecondition);
}

TEST_F(PoolPinsTest, MaintenanceDropsPinsOfALeaseReleasedWithoutTheHook) {
  auto pool = OpenPool("p");
  auto lease = Lease();
  PutBlocks(*pool, lease, 4);
  ASSERT_TRUE(pool->Pin(Key(0), lease).ok());
  ASSERT_TRUE(pool->Pin(Key(1), lease).ok());
  ASSERT_TRUE(leases_.Release(lease->id()).ok());  // no hook set
  EXPECT_EQ(Pinned(*pool), 2u);
  pool->Maintain();
  EXPECT_EQ(Pinned(*pool), 0u);
  EXPECT_EQ(lease->pinned_blocks(), 0u);
}

TEST_F(PoolPinsTest, UnpinnedBlocksOfAReleasedLeaseCanBeEvictedAgain) {
  auto pool = OpenPool("p", 4);
  auto lease = Lease();
  PutBlocks(*pool, lease, 4);
  for (uint64_t i = 0; i < kMaxPins; ++i) ASSERT_TRUE(pool->Pin(Key(i), lease).ok());
  ASSERT_TRUE(pool->ReleasePinsOf(*lease) == kMaxPins);
  // A full pool of unpinned blocks takes new puts by evicting.
  auto writer = Lease();
  std::vector<std::byte> data(kBlock, std::byte{1});
  for (uint64_t i = 10; i < 14; ++i) EXPECT_TRUE(pool->Put(Key(i), data, writer).ok());
}

TEST_F(PoolPinsTest, DeletingThePoolGivesItsPinsBack) {
  auto pool = OpenPool("p");
  auto lease = Lease();
  PutBlocks(*pool, lease, 2);
  ASSERT_TRUE(pool->Pin(Key(0), lease).ok());
  pool->RefundAll();
  EXPECT_EQ(lease->pinned_blocks(), 0u);
}

}  // namespace
}  // namespace tokenmem::pool
