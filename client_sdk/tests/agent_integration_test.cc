// The SDK against a real tokenmem-agent (tests/integration/agent_fixture.h):
// the local data path end to end, the C ABI included.
#include <gtest/gtest.h>

#include <chrono>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "agent_fixture.h"
#include "local/pool_impl.h"
#include "tokenmem/client.h"
#include "tokenmem/tokenmem.h"

namespace tokenmem {
namespace {

using testing::AgentOptions;
using testing::AgentProcess;

constexpr size_t kBlock = 64 * 1024;

BlockKey K(uint64_t i) { return BlockKey{0x5eed5eed5eed5eedull, i}; }

std::string Bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (size_t i = 0; i + 8 <= n; i += 8) {
    const uint64_t v = rng();
    std::memcpy(s.data() + i, &v, 8);
  }
  return s;
}

std::span<const std::byte> AsBytes(const std::string& s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}
std::span<std::byte> AsWritable(std::string& s) {
  return {reinterpret_cast<std::byte*>(s.data()), s.size()};
}

// The agent puts its data socket beside the control socket.
std::string DataSocket(const AgentProcess& agent) {
  return (agent.dir() / "agent-data.sock").string();
}

struct Lease {
  std::string id, secret;
};

Lease Split(const std::string& lease) {
  const size_t colon = lease.find(':');
  return {lease.substr(0, colon), lease.substr(colon + 1)};
}

class AgentIntegrationTest : public ::testing::Test {
 protected:
  void Start(AgentOptions options) {
    agent_ = std::make_unique<AgentProcess>(std::move(options));
    Status s = agent_->Start();
    ASSERT_TRUE(s.ok()) << s.ToString();
  }
  std::unique_ptr<Client> Connect(uint64_t quota = 256ull << 20, bool read_only = false) {
    auto lease = agent_->CreateLease(quota, {}, read_only);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    if (!lease.ok()) return nullptr;
    const Lease l = Split(*lease);
    auto client = Client::Connect(DataSocket(*agent_), l.id, l.secret);
    EXPECT_TRUE(client.ok()) << client.status().ToString() << "\n" << agent_->LogTail();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  std::unique_ptr<AgentProcess> agent_;
};

AgentOptions OnePool(std::string dram = "8MiB", std::string nvme = "0") {
  AgentOptions o;
  o.pools = {
      {.name = "p1", .block_size = "64KiB", .dram = std::move(dram), .nvme = std::move(nvme)}};
  return o;
}

TEST_F(AgentIntegrationTest, PutGetBatchesLookupPinRemove) {
  Start(OnePool());
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto attached = client->Attach("p1");
  ASSERT_TRUE(attached.ok()) << attached.status().ToString();
  std::shared_ptr<Pool> pool = *attached;
  EXPECT_EQ(pool->block_size(), kBlock);
  EXPECT_FALSE(pool->read_only());
  EXPECT_EQ(client->Attach("missing").status().code(), StatusCode::kNotFound);

  const std::string one = Bytes(kBlock, 1);
  Status s = pool->Put(K(1), AsBytes(one));
  ASSERT_TRUE(s.ok()) << s.ToString() << "\n" << agent_->LogTail();
  std::string out(kBlock, '\0');
  auto n = pool->Get(K(1), AsWritable(out));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(*n, kBlock);
  EXPECT_EQ(out, one);
  EXPECT_TRUE(pool->Contains(K(1)));
  EXPECT_EQ(pool->Get(K(2), AsWritable(out)).status().code(), StatusCode::kNotFound);

  // Scatter-gather: 16 blocks of 4 "layers" each, read back in 2 pieces.
  constexpr size_t kBlocks = 16, kLayers = 4, kLayer = kBlock / kLayers;
  std::vector<std::string> blocks;
  std::vector<std::vector<IoVec>> pieces(kBlocks);
  std::vector<BlockIo> items;
  for (size_t b = 0; b < kBlocks; ++b) blocks.push_back(Bytes(kBlock, 100 + b));
  for (size_t b = 0; b < kBlocks; ++b) {
    for (size_t l = 0; l < kLayers; ++l)
      pieces[b].push_back({blocks[b].data() + l * kLayer, kLayer});
    items.push_back({K(100 + b), pieces[b]});
  }
  std::vector<IoResult> results(kBlocks);
  s = pool->PutMany(items, results);
  ASSERT_TRUE(s.ok()) << s.ToString();
  std::vector<std::string> halves(2 * kBlocks, std::string(kBlock / 2, '\0'));
  for (size_t b = 0; b < kBlocks; ++b) {
    pieces[b] = {{halves[2 * b].data(), kBlock / 2}, {halves[2 * b + 1].data(), kBlock / 2}};
    items[b] = {K(100 + b), pieces[b]};
  }
  s = pool->GetMany(items, results);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (size_t b = 0; b < kBlocks; ++b) {
    ASSERT_EQ(results[b].code, StatusCode::kOk) << b;
    ASSERT_EQ(results[b].length, kBlock);
    EXPECT_TRUE(halves[2 * b] + halves[2 * b + 1] == blocks[b]) << b;
  }

  std::vector<BlockKey> chain;
  for (size_t b = 0; b < kBlocks + 4; ++b) chain.push_back(K(100 + b));
  EXPECT_EQ(pool->LookupPrefix(chain), kBlocks);

  EXPECT_TRUE(pool->Pin(K(100)).ok());
  EXPECT_TRUE(pool->Unpin(K(100)).ok());
  EXPECT_EQ(pool->Pin(K(999)).code(), StatusCode::kNotFound);
  EXPECT_TRUE(pool->Remove(K(100)).ok());
  EXPECT_FALSE(pool->Contains(K(100)));
  EXPECT_EQ(pool->Remove(K(100)).code(), StatusCode::kNotFound);
  EXPECT_EQ(pool->LookupPrefix(chain), 0u);

  // Too large for the pool.
  const std::string big(kBlock + 1, 'x');
  EXPECT_EQ(pool->Put(K(3), AsBytes(big)).code(), StatusCode::kInvalidArgument);
}

TEST_F(AgentIntegrationTest, LeasesAreEnforced) {
  Start(OnePool());
  auto lease = agent_->CreateLease(2 * kBlock);
  ASSERT_TRUE(lease.ok());
  Lease l = Split(*lease);
  EXPECT_EQ(Client::Connect(DataSocket(*agent_), l.id, "not-the-secret").status().code(),
            StatusCode::kPermissionDenied);
  auto writer = Client::Connect(DataSocket(*agent_), l.id, l.secret);
  ASSERT_TRUE(writer.ok());
  auto pool = (*writer)->Attach("p1");
  ASSERT_TRUE(pool.ok());
  const std::string data = Bytes(kBlock, 7);
  ASSERT_TRUE((*pool)->Put(K(1), AsBytes(data)).ok());
  ASSERT_TRUE((*pool)->Put(K(2), AsBytes(data)).ok());
  Status s = (*pool)->Put(K(3), AsBytes(data));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();

  // A read-only lease reads what others wrote and writes nothing.
  auto reader = Connect(64ull << 20, /*read_only=*/true);
  ASSERT_NE(reader, nullptr);
  auto ro = reader->Attach("p1");
  ASSERT_TRUE(ro.ok()) << ro.status().ToString();
  EXPECT_TRUE((*ro)->read_only());
  std::string out(kBlock, '\0');
  auto n = (*ro)->Get(K(2), AsWritable(out));
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(out, data);
  EXPECT_EQ((*ro)->Put(K(9), AsBytes(data)).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ((*ro)->Remove(K(1)).code(), StatusCode::kPermissionDenied);
}

TEST_F(AgentIntegrationTest, BlocksDemotedToNvmeAreFetched) {
  // 1 MiB of DRAM holds 16 blocks; 48 blocks push the oldest to NVMe.
  Start(OnePool("1MiB", "16MiB"));
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto pool = client->Attach("p1");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  constexpr uint64_t kCount = 48;
  for (uint64_t i = 0; i < kCount; ++i) {
    Status s = (*pool)->Put(K(i), AsBytes(Bytes(kBlock, 1000 + i)));
    ASSERT_TRUE(s.ok()) << i << ": " << s.ToString() << "\n" << agent_->LogTail();
  }
  // Which blocks the shared index says are on NVMe now.
  const void* index = PoolImplForTesting(**pool).map->index();
  size_t on_nvme = 0;
  for (uint64_t i = 0; i < kCount; ++i) {
    layout::EntryView v;
    ASSERT_EQ(layout::FindEntry(index, K(i).hi, K(i).lo, &v), layout::FindResult::kFound) << i;
    on_nvme += v.tier == 2 ? 1 : 0;
  }
  EXPECT_GT(on_nvme, 0u);
  const auto& area = PoolImplForTesting(**pool).map->client_area();
  const uint64_t dram_before = area.hits[0].load();
  const uint64_t nvme_before = area.hits[2].load();
  std::string out(kBlock, '\0');
  for (uint64_t i = 0; i < kCount; ++i) {
    auto n = (*pool)->Get(K(i), AsWritable(out));
    ASSERT_TRUE(n.ok()) << i << ": " << n.status().ToString() << "\n" << agent_->LogTail();
    ASSERT_EQ(out, Bytes(kBlock, 1000 + i)) << i;
  }
  // Every get counts once, as an NVMe hit when it had to be fetched (at
  // least the blocks on NVMe at the start: fetching demotes others).
  EXPECT_EQ(area.hits[2].load() - nvme_before + area.hits[0].load() - dram_before, kCount);
  EXPECT_GE(area.hits[2].load() - nvme_before, on_nvme);
  std::vector<BlockKey> chain;
  for (uint64_t i = 0; i < kCount; ++i) chain.push_back(K(i));
  EXPECT_EQ((*pool)->LookupPrefix(chain), kCount);
}

TEST_F(AgentIntegrationTest, InPlaceReadsHandOutMappedPoolMemory) {
  // 1 MiB of DRAM holds 16 blocks; 24 blocks push the oldest to NVMe.
  Start(OnePool("1MiB", "16MiB"));
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto pool = client->Attach("p1");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  constexpr uint64_t kCount = 24;
  for (uint64_t i = 0; i < kCount; ++i) {
    ASSERT_TRUE((*pool)->Put(K(i), AsBytes(Bytes(kBlock - i, 2000 + i))).ok());
  }
  // Every block, in memory or fetched from NVMe, is handed over where it
  // lies: inside one of the regions a DMA engine would register.
  for (uint64_t i = 0; i < kCount; ++i) {
    std::string copied;
    const std::byte* where = nullptr;
    auto n = (*pool)->ReadInPlace(K(i), [&](std::span<const std::byte> bytes) {
      copied.assign(reinterpret_cast<const char*>(bytes.data()), bytes.size());
      where = bytes.data();
      return Status::Ok();
    });
    ASSERT_TRUE(n.ok()) << i << ": " << n.status().ToString();
    EXPECT_EQ(*n, kBlock - i);
    EXPECT_EQ(copied, Bytes(kBlock - i, 2000 + i)) << i;
    bool inside = false;
    for (const IoVec& r : (*pool)->MappedRegions()) {
      const auto* base = static_cast<const std::byte*>(r.data);
      inside = inside || (where >= base && where + *n <= base + r.len);
    }
    EXPECT_TRUE(inside) << "block " << i << " is not inside a mapped region";
  }
  auto miss = (*pool)->ReadInPlace(K(999), [](std::span<const std::byte>) { return Status::Ok(); });
  EXPECT_EQ(miss.status().code(), StatusCode::kNotFound);
  auto failed = (*pool)->ReadInPlace(K(1), [](std::span<const std::byte>) {
    return Status(StatusCode::kIoError, "device copy failed");
  });
  EXPECT_EQ(failed.status().code(), StatusCode::kIoError);
  EXPECT_EQ(failed.status().message(), "device copy failed");

  // The same through the C ABI.
  tm_client* c = nullptr;
  const std::string lease = *agent_->CreateLease(64 << 20);
  const auto colon = lease.find(':');
  ASSERT_EQ(tm_client_connect(DataSocket(*agent_).c_str(), lease.substr(0, colon).c_str(),
                              lease.substr(colon + 1).c_str(), 10000, &c),
            TM_OK);
  tm_pool* cp = nullptr;
  ASSERT_EQ(tm_pool_attach(c, "p1", &cp), TM_OK);
  size_t regions = 0;
  ASSERT_EQ(tm_pool_mapped_regions(cp, nullptr, 0, &regions), TM_OK);
  EXPECT_GT(regions, 0u);
  std::string out;
  size_t length = 0;
  const tm_key key{K(3).hi, K(3).lo};
  auto copy = [](void* ctx, const void* src, size_t len) {
    static_cast<std::string*>(ctx)->assign(static_cast<const char*>(src), len);
    return 0;
  };
  ASSERT_EQ(tm_read_in_place(cp, &key, copy, &out, &length), TM_OK);
  EXPECT_EQ(length, kBlock - 3);
  EXPECT_EQ(out, Bytes(kBlock - 3, 2003));
  auto refuse = [](void*, const void*, size_t) { return 1; };
  EXPECT_EQ(tm_read_in_place(cp, &key, refuse, nullptr, nullptr), TM_INTERNAL);
  tm_pool_close(cp);
  tm_client_close(c);
}

TEST_F(AgentIntegrationTest, AgentKilledGivesUnavailableWithoutHanging) {
  Start(OnePool());
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  auto pool = client->Attach("p1");
  ASSERT_TRUE(pool.ok());
  const std::string data = Bytes(kBlock, 5);
  ASSERT_TRUE((*pool)->Put(K(1), AsBytes(data)).ok());
  std::string mapped(kBlock, '\0');
  ASSERT_TRUE((*pool)->Get(K(1), AsWritable(mapped)).ok());  // maps its segment (writers stage)
  ASSERT_TRUE(agent_->Kill(SIGKILL).ok());

  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ((*pool)->Put(K(2), AsBytes(data)).code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(5));
  EXPECT_FALSE(client->connected());
  std::string out(kBlock, '\0');
  auto n = (*pool)->Get(K(1), AsWritable(out));  // mapped memory outlives the agent
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(out, data);

  // Back again: a new client works.
  Status s = agent_->Start();
  ASSERT_TRUE(s.ok()) << s.ToString();
  auto again = Connect();
  ASSERT_NE(again, nullptr);
  auto pool2 = again->Attach("p1");
  ASSERT_TRUE(pool2.ok()) << pool2.status().ToString();
  EXPECT_TRUE((*pool2)->Put(K(2), AsBytes(data)).ok());
}

TEST_F(AgentIntegrationTest, CAbi) {
  Start(OnePool());
  auto lease = agent_->CreateLease(64ull << 20);
  ASSERT_TRUE(lease.ok());
  const Lease l = Split(*lease);
  tm_client* client = nullptr;
  ASSERT_EQ(
      tm_client_connect(DataSocket(*agent_).c_str(), l.id.c_str(), l.secret.c_str(), 0, &client),
      TM_OK)
      << tm_last_error();
  tm_pool* pool = nullptr;
  ASSERT_EQ(tm_pool_attach(client, "p1", &pool), TM_OK) << tm_last_error();
  EXPECT_EQ(tm_pool_block_size(pool), kBlock);
  const std::string data = Bytes(1000, 3);
  const tm_key key{1, 2};
  EXPECT_EQ(tm_put(pool, &key, data.data(), data.size()), TM_OK) << tm_last_error();
  std::string out(kBlock, '\0');
  size_t len = 0;
  EXPECT_EQ(tm_get(pool, &key, out.data(), out.size(), &len), TM_OK);
  EXPECT_EQ(out.substr(0, len), data);
  EXPECT_EQ(tm_contains(pool, &key), TM_OK);
  EXPECT_EQ(tm_lookup_prefix(pool, &key, 1), 1u);
  int code = -1;
  EXPECT_EQ(tm_remove(pool, &key, 1, &code), TM_OK);
  EXPECT_EQ(code, TM_OK);
  EXPECT_EQ(tm_get(pool, &key, out.data(), out.size(), &len), TM_NOT_FOUND);
  tm_pool_close(pool);
  tm_client_close(client);
}

}  // namespace
}  // namespace tokenmem
