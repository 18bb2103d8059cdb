#include "pool/pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <tuple>
#include <random>
#include <vector>

#include "tokenmem/common/crc32c.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::pool {
namespace {

constexpr uint64_t kBlock = 4096;

BlockKey Key(uint64_t n) { return BlockKey{0xabcdef, n}; }

std::vector<std::byte> Payload(uint64_t n, size_t size = kBlock) {
  std::vector<std::byte> data(size);
  std::mt19937_64 rng(n);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  return data;
}

class PoolTest : public ::testing::Test {
 protected:
  std::unique_ptr<Pool> OpenPool(TierCapacities capacity,
                                 EvictionPolicy eviction = EvictionPolicy::kLru, uint64_t ttl = 0) {
    PoolSpec spec;
    spec.name = "test";
    spec.block_size = kBlock;
    spec.capacity = capacity;
    spec.eviction = eviction;
    spec.ttl_seconds = ttl;
    PoolEnvironment env;
    env.nvme_directory = dir_ / "test";
    env.nvme_segment_bytes = 1 << 20;
    env.memory_segment_bytes = 1 << 20;
    env.now_ms = [this] { return now_ms_; };
    auto pool = Pool::Open(spec, env);
    EXPECT_TRUE(pool.ok()) << pool.status().ToString();
    return pool.ok() ? std::move(pool).value() : nullptr;
  }

  std::shared_ptr<LeaseAccount> Lease(uint64_t quota) {
    auto lease = leases_.Create(LeaseOptions{.quota_bytes = quota});
    EXPECT_TRUE(lease.ok());
    return lease->account;
  }

  void ExpectBlock(Pool& pool, uint64_t n, TierKind tier) {
    std::vector<std::byte> out(kBlock);
    auto got = pool.Get(Key(n), out);
    ASSERT_TRUE(got.ok()) << "block " << n << ": " << got.status().ToString();
    EXPECT_EQ(got->tier, tier) << "block " << n;
    EXPECT_EQ(out, Payload(n)) << "block " << n;
  }

  testing::TempDir dir_;
  int64_t now_ms_ = 1'000'000;
  LeaseTable leases_;
};

TEST_F(PoolTest, PutThenGetIsByteExactAndMissIsNotFound) {
  auto pool = OpenPool({.dram = 16 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 8; ++n) {
    auto data = Payload(n, 100 + n * 500);
    auto put = pool->Put(Key(n), data, lease);
    ASSERT_TRUE(put.ok()) << put.status().ToString();
    EXPECT_EQ(*put, TierKind::kDram);
  }
  for (uint64_t n = 0; n < 8; ++n) {
    std::vector<std::byte> out(kBlock);
    auto got = pool->Get(Key(n), out);
    ASSERT_TRUE(got.ok());
    ASSERT_EQ(got->length, 100 + n * 500);
    EXPECT_TRUE(
        std::equal(out.begin(), out.begin() + got->length, Payload(n, got->length).begin()));
  }
  std::vector<std::byte> out(kBlock);
  EXPECT_TRUE(pool->Get(Key(99), out).status().IsNotFound());
  EXPECT_EQ(pool->Snapshot().counters.misses, 1u);
  auto keys = pool->Keys();
  std::sort(keys.begin(), keys.end(), [](const BlockKey& a, const BlockKey& b) {
    return std::tie(a.hi, a.lo) < std::tie(b.hi, b.lo);
  });
  ASSERT_EQ(keys.size(), 8u);
  for (uint64_t n = 0; n < 8; ++n) EXPECT_EQ(keys[n], Key(n));
}

TEST_F(PoolTest, ReservedSlotsAreWrittenInPlaceAndCommitted) {
  auto pool = OpenPool({.dram = 4 * kBlock});
  auto lease = Lease(1 << 20);
  auto grants = pool->Reserve(7, 2, lease);
  ASSERT_TRUE(grants.ok()) << grants.status().ToString();
  ASSERT_EQ(grants->size(), 2u);
  EXPECT_EQ(lease->used_bytes(), 2 * kBlock);  // charged up front
  const auto one = Payload(1), two = Payload(2);
  ASSERT_EQ((*grants)[0].bytes.size(), kBlock);
  std::copy(one.begin(), one.end(), (*grants)[0].bytes.begin());
  std::copy(two.begin(), two.end(), (*grants)[1].bytes.begin());
  // A writer inside the agent computed the checksum itself: taken as given.
  std::vector<Pool::CommitItem> trusted = {{(*grants)[0].reservation, Key(1), kBlock, Crc32c(one)}};
  auto ok = pool->Commit(7, trusted, Pool::Checksum::kTrusted);
  ASSERT_TRUE(ok[0].ok()) << ok[0].ToString();
  ExpectBlock(*pool, 1, TierKind::kDram);
  // A client's checksum is verified: a wrong one frees the slot and refunds it.
  std::vector<Pool::CommitItem> wrong = {
      {(*grants)[1].reservation, Key(2), kBlock, Crc32c(two) ^ 1}};
  auto bad = pool->Commit(7, wrong);
  EXPECT_EQ(bad[0].code(), StatusCode::kCorruption);
  EXPECT_EQ(lease->used_bytes(), kBlock);
  std::vector<std::byte> out(kBlock);
  EXPECT_TRUE(pool->Get(Key(2), out).status().IsNotFound());
}

TEST_F(PoolTest, ReserveWithoutNvmeIoRefusesOnlyWhenRoomNeedsAnNvmeWrite) {
  auto lease = Lease(1 << 20);
  {  // DRAM full above NVMe: room would mean writing a block to NVMe
    auto pool = OpenPool({.dram = 2 * kBlock, .nvme = 8 * kBlock});
    for (uint64_t n = 0; n < 2; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
    const uint64_t used = lease->used_bytes();
    auto refused = pool->Reserve(1, 1, lease, Pool::ReserveRoom::kNoNvmeIo);
    EXPECT_EQ(refused.status().code(), StatusCode::kResourceExhausted);
    EXPECT_EQ(lease->used_bytes(), used);             // nothing charged
    EXPECT_EQ(pool->Snapshot().usage[2].blocks, 0u);  // nothing demoted
    auto granted = pool->Reserve(1, 1, lease, Pool::ReserveRoom::kMakeRoom);
    ASSERT_TRUE(granted.ok()) << granted.status().ToString();
    EXPECT_EQ(pool->Snapshot().usage[2].blocks, 1u);
    pool->Abort(1, {});
    EXPECT_EQ(lease->used_bytes(), used);
  }
  {  // DRAM full above CXL with room: demotion is a memory copy
    auto pool = OpenPool({.dram = 2 * kBlock, .cxl = 2 * kBlock, .nvme = 8 * kBlock});
    for (uint64_t n = 0; n < 2; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
    auto granted = pool->Reserve(1, 1, lease, Pool::ReserveRoom::kNoNvmeIo);
    ASSERT_TRUE(granted.ok()) << granted.status().ToString();
    EXPECT_EQ(pool->Snapshot().usage[1].blocks, 1u);
    pool->Abort(1, {});
  }
  {  // DRAM only: room is made by dropping the least recently used block
    auto pool = OpenPool({.dram = 2 * kBlock});
    for (uint64_t n = 0; n < 2; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
    auto granted = pool->Reserve(1, 1, lease, Pool::ReserveRoom::kNoNvmeIo);
    ASSERT_TRUE(granted.ok()) << granted.status().ToString();
    EXPECT_TRUE(pool->Locate(Key(0)).status().IsNotFound());
    pool->Abort(1, {});
  }
}

TEST_F(PoolTest, HeldBytesStayPutUntilUnheldEvenWhenTheBlockLeaves) {
  // DRAM only, 4 slots: every put after the first four reuses a slot.
  auto pool = OpenPool({.dram = 4 * kBlock});
  auto lease = Lease(1 << 20);
  ASSERT_TRUE(pool->Put(Key(1), Payload(1), lease).ok());
  auto held = pool->Hold(Key(1));
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_EQ(std::vector<std::byte>(held->bytes.begin(), held->bytes.end()), Payload(1));

  // Replace the key, then churn through more blocks than the tier holds:
  // the held slot is never handed out again while held.
  ASSERT_TRUE(pool->Put(Key(1), Payload(100), lease).ok());
  for (uint64_t n = 2; n < 12; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  EXPECT_EQ(std::vector<std::byte>(held->bytes.begin(), held->bytes.end()), Payload(1));
  EXPECT_EQ(pool->Snapshot().usage[0].blocks, 3u);  // one of four slots is still held

  pool->Unhold(*held);
  for (uint64_t n = 12; n < 16; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  EXPECT_EQ(pool->Snapshot().usage[0].blocks, 4u);  // the slot came back
  for (uint64_t n = 12; n < 16; ++n) ExpectBlock(*pool, n, TierKind::kDram);

  EXPECT_EQ(pool->Hold(Key(999)).status().code(), StatusCode::kNotFound);
}

TEST_F(PoolTest, HoldRefusesBlocksOnNvme) {
  auto pool = OpenPool({.dram = 2 * kBlock, .nvme = 1 << 20});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 6; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  auto held = pool->Hold(Key(0));  // the oldest went down to NVMe
  EXPECT_EQ(held.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(PoolTest, RejectsOversizedBlockAndSmallBuffer) {
  auto pool = OpenPool({.dram = 4 * kBlock});
  auto lease = Lease(1 << 20);
  EXPECT_EQ(pool->Put(Key(1), Payload(1, kBlock + 1), lease).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(lease->used_bytes(), 0u);
  ASSERT_TRUE(pool->Put(Key(1), Payload(1), lease).ok());
  std::vector<std::byte> small(10);
  EXPECT_EQ(pool->Get(Key(1), small).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(PoolTest, ReplacingAKeyReturnsTheNewBytes) {
  auto pool = OpenPool({.dram = 4 * kBlock});
  auto lease = Lease(1 << 20);
  ASSERT_TRUE(pool->Put(Key(1), Payload(1), lease).ok());
  ASSERT_TRUE(pool->Put(Key(1), Payload(2), lease).ok());
  std::vector<std::byte> out(kBlock);
  ASSERT_TRUE(pool->Get(Key(1), out).ok());
  EXPECT_EQ(out, Payload(2));
  EXPECT_EQ(lease->used_bytes(), kBlock);  // the old copy was refunded
  EXPECT_EQ(pool->Snapshot().usage[0].blocks, 1u);
}

TEST_F(PoolTest, PutsLandInDramThenCascadeLeastRecentlyUsedToNvme) {
  auto pool = OpenPool({.dram = 4 * kBlock, .nvme = 16 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 4; ++n)
    ASSERT_EQ(*pool->Put(Key(n), Payload(n), lease), TierKind::kDram);
  // Touch block 0 so block 1 is now the least recently used.
  ASSERT_TRUE(pool->Locate(Key(0)).ok());
  // DRAM is full: the put demotes the LRU block (1) and still lands in DRAM.
  ASSERT_EQ(*pool->Put(Key(4), Payload(4), lease), TierKind::kDram);
  auto snap = pool->Snapshot();
  EXPECT_EQ(snap.usage[0].blocks, 4u);
  EXPECT_EQ(snap.usage[2].blocks, 1u);
  EXPECT_EQ(snap.counters.tiers[0].demotions_out, 1u);
  EXPECT_EQ(*pool->Locate(Key(1)), TierKind::kNvme);
  EXPECT_EQ(*pool->Locate(Key(0)), TierKind::kDram);
}

TEST_F(PoolTest, DemotionOrderIsDramCxlNvmeThenDropped) {
  auto pool = OpenPool({.dram = 2 * kBlock, .cxl = 2 * kBlock, .nvme = 2 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 7; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  // Oldest (0) fell off the end; 1,2 on NVMe; 3,4 on CXL; 5,6 in DRAM.
  std::vector<std::byte> out(kBlock);
  EXPECT_TRUE(pool->Get(Key(0), out).status().IsNotFound());
  EXPECT_EQ(*pool->Locate(Key(6)), TierKind::kDram);
  EXPECT_EQ(*pool->Locate(Key(5)), TierKind::kDram);
  EXPECT_EQ(*pool->Locate(Key(4)), TierKind::kCxl);
  EXPECT_EQ(*pool->Locate(Key(3)), TierKind::kCxl);
  EXPECT_EQ(*pool->Locate(Key(2)), TierKind::kNvme);
  EXPECT_EQ(*pool->Locate(Key(1)), TierKind::kNvme);
  auto snap = pool->Snapshot();
  EXPECT_EQ(snap.counters.tiers[2].evictions, 1u);
  EXPECT_EQ(lease->used_bytes(), 6 * kBlock);  // the dropped block was refunded
  for (uint64_t n = 1; n < 7; ++n) {
    ASSERT_TRUE(pool->Get(Key(n), out).ok());
    EXPECT_EQ(out, Payload(n));
  }
}

TEST_F(PoolTest, NvmeHitIsPromotedIntoMemory) {
  auto pool = OpenPool({.dram = 2 * kBlock, .nvme = 8 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 3; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  ASSERT_EQ(*pool->Locate(Key(0)), TierKind::kNvme);
  ASSERT_TRUE(pool->Remove(Key(2)).ok());             // room in DRAM for the promotion
  ExpectBlock(*pool, 0, TierKind::kNvme);             // served from NVMe...
  EXPECT_EQ(*pool->Locate(Key(0)), TierKind::kDram);  // ...and promoted
  ExpectBlock(*pool, 0, TierKind::kDram);
  auto snap = pool->Snapshot();
  EXPECT_EQ(snap.counters.tiers[0].promotions_in, 1u);
  EXPECT_EQ(snap.counters.tiers[0].bytes_promoted_in, kBlock);
  EXPECT_EQ(snap.counters.tiers[2].hits, 1u);
}

TEST_F(PoolTest, BackgroundMaintenanceKeepsWatermarks) {
  auto pool = OpenPool({.dram = 10 * kBlock, .nvme = 20 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 10; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  EXPECT_EQ(pool->Snapshot().usage[0].blocks, 10u);
  pool->Maintain();
  // Free fraction restored to the high watermark (20%): 2 blocks demoted, oldest first.
  auto snap = pool->Snapshot();
  EXPECT_EQ(snap.usage[0].blocks, 8u);
  EXPECT_EQ(snap.usage[2].blocks, 2u);
  EXPECT_EQ(*pool->Locate(Key(0)), TierKind::kNvme);
  EXPECT_EQ(*pool->Locate(Key(1)), TierKind::kNvme);
  // The next put finds a free DRAM slot without demoting anything.
  ASSERT_EQ(*pool->Put(Key(10), Payload(10), lease), TierKind::kDram);
  EXPECT_EQ(pool->Snapshot().counters.tiers[0].demotions_out, 2u);
  for (uint64_t n = 0; n <= 10; ++n) {
    std::vector<std::byte> out(kBlock);
    ASSERT_TRUE(pool->Get(Key(n), out).ok());
    EXPECT_EQ(out, Payload(n));
  }
}

TEST_F(PoolTest, QuotaExceededFailsWithoutEvictingAnything) {
  auto pool = OpenPool({.dram = 4 * kBlock});
  auto small = Lease(2 * kBlock);
  auto other = Lease(1 << 20);
  for (uint64_t n = 0; n < 4; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), other).ok());
  ASSERT_TRUE(pool->Put(Key(10), Payload(10), small).ok());  // evicts one of `other`'s, fine
  ASSERT_TRUE(pool->Put(Key(11), Payload(11), small).ok());
  auto before = pool->Snapshot();
  auto put = pool->Put(Key(12), Payload(12), small);
  EXPECT_EQ(put.status().code(), StatusCode::kResourceExhausted);
  EXPECT_NE(put.status().message().find("quota"), std::string::npos);
  auto after = pool->Snapshot();
  EXPECT_EQ(after.counters.tiers[0].evictions, before.counters.tiers[0].evictions);
  EXPECT_EQ(after.counters.quota_rejections, 1u);
  EXPECT_EQ(small->used_bytes(), 2 * kBlock);
  // Freeing one block lets the lease store again.
  ASSERT_TRUE(pool->Remove(Key(10)).ok());
  EXPECT_TRUE(pool->Put(Key(12), Payload(12), small).ok());
}

TEST_F(PoolTest, EvictionNoneRefusesPutsWhenFull) {
  auto pool = OpenPool({.dram = 2 * kBlock}, EvictionPolicy::kNone);
  auto lease = Lease(1 << 20);
  ASSERT_TRUE(pool->Put(Key(0), Payload(0), lease).ok());
  ASSERT_TRUE(pool->Put(Key(1), Payload(1), lease).ok());
  auto put = pool->Put(Key(2), Payload(2), lease);
  EXPECT_EQ(put.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(lease->used_bytes(), 2 * kBlock);
  ExpectBlock(*pool, 0, TierKind::kDram);
  ExpectBlock(*pool, 1, TierKind::kDram);
}

TEST_F(PoolTest, TtlExpiresBlocksOnReadAndInTheSweep) {
  auto pool = OpenPool({.dram = 8 * kBlock}, EvictionPolicy::kLru, /*ttl=*/10);
  auto lease = Lease(1 << 20);
  ASSERT_TRUE(pool->Put(Key(0), Payload(0), lease).ok());
  now_ms_ += 5'000;
  ASSERT_TRUE(pool->Put(Key(1), Payload(1), lease).ok());
  ASSERT_TRUE(pool->Put(Key(2), Payload(2), lease).ok());
  ASSERT_TRUE(pool->Pin(Key(2)).ok());
  now_ms_ += 6'000;  // block 0 is 11 s old, 1 and 2 are 6 s old
  std::vector<std::byte> out(kBlock);
  EXPECT_TRUE(pool->Get(Key(0), out).status().IsNotFound());
  ExpectBlock(*pool, 1, TierKind::kDram);
  now_ms_ += 5'000;  // 1 and 2 are 11 s old; 2 is pinned
  pool->Maintain();
  auto snap = pool->Snapshot();
  EXPECT_EQ(snap.counters.expired, 2u);
  EXPECT_EQ(snap.usage[0].blocks, 1u);
  ExpectBlock(*pool, 2, TierKind::kDram);
  EXPECT_EQ(lease->used_bytes(), kBlock);
}

TEST_F(PoolTest, PinnedBlocksAreNeitherDemotedNorDropped) {
  auto pool = OpenPool({.dram = 2 * kBlock, .nvme = 2 * kBlock});
  auto lease = Lease(1 << 20);
  ASSERT_TRUE(pool->Put(Key(0), Payload(0), lease).ok());
  ASSERT_TRUE(pool->Pin(Key(0)).ok());
  for (uint64_t n = 1; n < 10; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  ExpectBlock(*pool, 0, TierKind::kDram);
  EXPECT_EQ(pool->Snapshot().usage[0].pinned_blocks, 1u);
  // With DRAM holding one pinned block, the rest still cycle through.
  ExpectBlock(*pool, 9, TierKind::kDram);
  ASSERT_TRUE(pool->Unpin(Key(0)).ok());
  for (uint64_t n = 10; n < 14; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  std::vector<std::byte> out(kBlock);
  EXPECT_TRUE(pool->Get(Key(0), out).status().IsNotFound());  // unpinned: aged out
}

TEST_F(PoolTest, PinningAnNvmeBlockBringsItIntoMemory) {
  auto pool = OpenPool({.dram = 2 * kBlock, .nvme = 8 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 4; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  ASSERT_EQ(*pool->Locate(Key(0)), TierKind::kNvme);
  ASSERT_TRUE(pool->Pin(Key(0)).ok());
  EXPECT_EQ(*pool->Locate(Key(0)), TierKind::kDram);
  ExpectBlock(*pool, 0, TierKind::kDram);
  EXPECT_EQ(pool->Pin(Key(77)).code(), StatusCode::kNotFound);
}

TEST_F(PoolTest, LookupPrefixCountsLeadingKeysAndKeepsTheHeadWarm) {
  auto pool = OpenPool({.dram = 4 * kBlock, .nvme = 8 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 4; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  std::vector<BlockKey> chain = {Key(0), Key(1), Key(2), Key(7), Key(3)};
  std::vector<TierKind> tiers;
  EXPECT_EQ(pool->LookupPrefix(chain, &tiers), 3u);
  EXPECT_EQ(tiers.size(), 3u);
  // The head (0) is now the most recently used, the tail of the chain (2)
  // the least among the chain: a new put demotes 3 first, then 2.
  ASSERT_TRUE(pool->Put(Key(10), Payload(10), lease).ok());
  ASSERT_TRUE(pool->Put(Key(11), Payload(11), lease).ok());
  EXPECT_EQ(*pool->Locate(Key(3)), TierKind::kNvme);
  EXPECT_EQ(*pool->Locate(Key(2)), TierKind::kNvme);
  EXPECT_EQ(*pool->Locate(Key(0)), TierKind::kDram);
  auto snap = pool->Snapshot();
  EXPECT_EQ(snap.counters.prefix_lookups, 1u);
  EXPECT_EQ(snap.counters.prefix_keys_matched, 3u);
}

TEST_F(PoolTest, LookupPrefixStartsPromotingNvmeBlocks) {
  auto pool = OpenPool({.dram = 8 * kBlock, .nvme = 8 * kBlock});
  auto lease = Lease(1 << 20);
  for (uint64_t n = 0; n < 8; ++n) ASSERT_TRUE(pool->Put(Key(n), Payload(n), lease).ok());
  pool->Maintain();  // demotes 0 and 1 to keep 20% free
  ASSERT_EQ(*pool->Locate(Key(0)), TierKind::kNvme);
  std::vector<BlockKey> chain = {Key(0), Key(1)};
  ASSERT_EQ(pool->LookupPrefix(chain, nullptr), 2u);
  pool->Maintain();
  EXPECT_NE(*pool->Locate(Key(0)), TierKind::kNvme);
  ExpectBlock(*pool, 0, TierKind::kDram);
}

TEST_F(PoolTest, NvmeBlocksSurviveReopen) {
  {
    auto pool = OpenPool({.nvme = 16 * kBlock});
    auto lease = Lease(1 << 20);
    for (uint64_t n = 0; n < 10; ++n)
      ASSERT_EQ(*pool->Put(Key(n), Payload(n), lease), TierKind::kNvme);
    ASSERT_TRUE(pool->Remove(Key(3)).ok());
    ASSERT_TRUE(pool->Put(Key(4), Payload(44), lease).ok());  // replaced
    pool->Maintain();  // tombstones for the removed and replaced copies
  }
  auto pool = OpenPool({.nvme = 16 * kBlock});
  EXPECT_EQ(pool->recovered_blocks(), 9u);
  std::vector<std::byte> out(kBlock);
  EXPECT_TRUE(pool->Get(Key(3), out).status().IsNotFound());
  ASSERT_TRUE(pool->Get(Key(4), out).ok());
  EXPECT_EQ(out, Payload(44));
  for (uint64_t n : {0, 1, 2, 5, 6, 7, 8, 9}) ExpectBlock(*pool, n, TierKind::kNvme);
}

TEST_F(PoolTest, CorruptedNvmeBlockIsAMissAndCounted) {
  auto pool = OpenPool({.nvme = 4 * kBlock});
  auto lease = Lease(1 << 20);
  std::vector<std::byte> marked(kBlock, std::byte{'Z'});
  ASSERT_TRUE(pool->Put(Key(1), marked, lease).ok());
  // Find the block's bytes in a segment file and flip one.
  bool flipped = false;
  for (const auto& entry : std::filesystem::directory_iterator(dir_ / "test")) {
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(f)), {});
    auto at = content.find(std::string(kBlock, 'Z'));
    if (at == std::string::npos) continue;
    f.seekp(static_cast<std::streamoff>(at + 100));
    f.put('Y');
    flipped = true;
  }
  ASSERT_TRUE(flipped);
  std::vector<std::byte> out(kBlock);
  EXPECT_TRUE(pool->Get(Key(1), out).status().IsNotFound());
  EXPECT_EQ(pool->Snapshot().counters.checksum_failures, 1u);
  EXPECT_TRUE(pool->Get(Key(1), out).status().IsNotFound());  // dropped, not retried
  EXPECT_EQ(pool->Snapshot().counters.checksum_failures, 1u);
}

}  // namespace
}  // namespace tokenmem::pool
