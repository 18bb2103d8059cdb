// The agent's durability and bad-input behaviour, end to end: real agent
// processes killed with SIGKILL and restarted, NVMe bytes corrupted on disk,
// configurations that must be refused.
#include <gtest/gtest.h>

#include <fstream>
#include <random>

#include "agent_fixture.h"
#include "tokenmem/common/block_key.h"

namespace tokenmem::testing {
namespace {

constexpr uint64_t kBlock = 64 * 1024;

std::string KeyBytes(uint64_t n) {
  std::string out(16, '\0');
  for (int i = 0; i < 8; ++i) out[8 + i] = static_cast<char>(n >> (56 - 8 * i));
  out[0] = 0x42;
  return out;
}

// Deterministic content of random length, so a reader can check any block.
std::string Payload(uint64_t n) {
  std::mt19937_64 rng(n * 7919 + 1);
  std::string data(1 + rng() % kBlock, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  return data;
}

struct Lease {
  std::string id;
  std::string secret;
};

Lease MakeLease(AgentProcess& agent) {
  auto lease = agent.CreateLease(1ull << 30);
  EXPECT_TRUE(lease.ok()) << lease.status().ToString();
  auto colon = lease->find(':');
  return {lease->substr(0, colon), lease->substr(colon + 1)};
}

template <typename Request>
void SetLease(Request* req, const Lease& lease, const std::string& pool) {
  req->mutable_lease()->set_id(lease.id);
  req->mutable_lease()->set_secret(lease.secret);
  req->set_pool(pool);
}

void PutBlocks(AgentProcess& agent, const Lease& lease, const std::string& pool, uint64_t first,
               uint64_t count) {
  for (uint64_t start = first; start < first + count; start += 32) {
    v1::PutRequest req;
    SetLease(&req, lease, pool);
    for (uint64_t n = start; n < std::min(first + count, start + 32); ++n) {
      auto* block = req.add_blocks();
      block->set_key(KeyBytes(n));
      block->set_data(Payload(n));
    }
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    v1::PutReply reply;
    auto status = agent.stub().Put(&ctx, req, &reply);
    ASSERT_TRUE(status.ok()) << status.error_message();
    for (const auto& r : reply.results()) ASSERT_EQ(r.code(), 0) << r.message();
  }
}

v1::GetReply GetBlocks(AgentProcess& agent, const Lease& lease, const std::string& pool,
                       uint64_t first, uint64_t count) {
  v1::GetRequest req;
  SetLease(&req, lease, pool);
  for (uint64_t n = first; n < first + count; ++n) req.add_keys(KeyBytes(n));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::GetReply reply;
  auto status = agent.stub().Get(&ctx, req, &reply);
  EXPECT_TRUE(status.ok()) << status.error_message();
  return reply;
}

v1::PoolStats Stats(AgentProcess& agent, const std::string& pool) {
  v1::StatsRequest req;
  req.set_pool(pool);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::StatsReply reply;
  EXPECT_TRUE(agent.stub().GetStats(&ctx, req, &reply).ok());
  return reply.pools_size() ? reply.pools(0) : v1::PoolStats{};
}

TEST(RestartTest, NvmeBlocksAreServedByteExactAfterSigkill) {
  AgentProcess agent({.pools = {{.name = "disk", .dram = "0", .nvme = "64MiB"}}});
  ASSERT_TRUE(agent.Start().ok()) << agent.LogTail();
  Lease lease = MakeLease(agent);
  constexpr uint64_t kBlocks = 400;
  PutBlocks(agent, lease, "disk", 0, kBlocks);
  ASSERT_TRUE(agent.Kill(SIGKILL).ok());
  ASSERT_TRUE(agent.Restart().ok()) << agent.LogTail();

  grpc::ClientContext ctx;
  v1::StatusReply status;
  ASSERT_TRUE(agent.stub().GetStatus(&ctx, {}, &status).ok());
  EXPECT_EQ(status.recovered_blocks(), kBlocks);
  lease = MakeLease(agent);  // leases do not survive a restart
  for (uint64_t first = 0; first < kBlocks; first += 50) {
    auto reply = GetBlocks(agent, lease, "disk", first, 50);
    ASSERT_EQ(reply.blocks_size(), 50);
    for (int i = 0; i < 50; ++i) {
      ASSERT_TRUE(reply.blocks(i).found()) << "block " << first + i;
      ASSERT_EQ(reply.blocks(i).data(), Payload(first + i)) << "block " << first + i;
      EXPECT_EQ(reply.blocks(i).tier(), v1::TIER_KIND_NVME);
    }
  }
}

TEST(RestartTest, LeasesSurviveSigkillAndKeepWorking) {
  AgentProcess agent({.pools = {{.name = "disk", .dram = "0", .nvme = "16MiB"}}});
  ASSERT_TRUE(agent.Start().ok()) << agent.LogTail();
  Lease lease = MakeLease(agent);
  PutBlocks(agent, lease, "disk", 0, 10);
  ASSERT_TRUE(agent.Kill(SIGKILL).ok());
  ASSERT_TRUE(agent.Restart().ok()) << agent.LogTail();
  // The same id and secret work after the restart: pods keep their leases.
  auto reply = GetBlocks(agent, lease, "disk", 0, 10);
  ASSERT_EQ(reply.blocks_size(), 10);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(reply.blocks(i).data(), Payload(i));
  PutBlocks(agent, lease, "disk", 10, 5);
  // A wrong secret is still refused.
  Lease wrong = lease;
  wrong.secret = std::string(32, '0');
  v1::GetRequest req;
  SetLease(&req, wrong, "disk");
  req.add_keys(KeyBytes(0));
  grpc::ClientContext ctx;
  v1::GetReply denied;
  EXPECT_EQ(agent.stub().Get(&ctx, req, &denied).error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST(RestartTest, MixedTiersNeverServeWrongBytesAfterSigkill) {
  AgentProcess agent({.pools = {{.name = "mixed", .dram = "2MiB", .nvme = "64MiB"}}});
  ASSERT_TRUE(agent.Start().ok()) << agent.LogTail();
  Lease lease = MakeLease(agent);
  constexpr uint64_t kBlocks = 300;  // 32 fit in DRAM; the rest are demoted to NVMe
  PutBlocks(agent, lease, "mixed", 0, kBlocks);
  auto before = Stats(agent, "mixed");
  uint64_t on_nvme = 0;
  for (const auto& u : before.usage()) {
    if (u.tier() == v1::TIER_KIND_NVME) on_nvme = u.blocks();
  }
  ASSERT_GT(on_nvme, 200u);
  ASSERT_TRUE(agent.Kill(SIGKILL).ok());
  ASSERT_TRUE(agent.Restart().ok()) << agent.LogTail();
  lease = MakeLease(agent);
  uint64_t found = 0;
  for (uint64_t first = 0; first < kBlocks; first += 50) {
    auto reply = GetBlocks(agent, lease, "mixed", first, 50);
    for (int i = 0; i < reply.blocks_size(); ++i) {
      if (!reply.blocks(i).found()) continue;  // it was in DRAM: lost with the process
      ++found;
      ASSERT_EQ(reply.blocks(i).data(), Payload(first + i)) << "block " << first + i;
    }
  }
  EXPECT_GE(found, on_nvme);
}

TEST(RestartTest, CorruptedNvmeByteIsAMissAndCounted) {
  AgentProcess agent({.pools = {{.name = "disk", .dram = "0", .nvme = "16MiB"}}});
  ASSERT_TRUE(agent.Start().ok()) << agent.LogTail();
  Lease lease = MakeLease(agent);
  const std::string marked(kBlock, 'Q');
  {
    v1::PutRequest req;
    SetLease(&req, lease, "disk");
    auto* block = req.add_blocks();
    block->set_key(KeyBytes(1));
    block->set_data(marked);
    grpc::ClientContext ctx;
    v1::PutReply reply;
    ASSERT_TRUE(agent.stub().Put(&ctx, req, &reply).ok());
  }
  ASSERT_TRUE(agent.Stop().ok());
  bool flipped = false;
  for (const auto& entry : std::filesystem::directory_iterator(agent.nvme_dir() + "/disk")) {
    std::fstream f(entry.path(), std::ios::in | std::ios::out | std::ios::binary);
    std::string content((std::istreambuf_iterator<char>(f)), {});
    auto at = content.find(marked);
    if (at == std::string::npos) continue;
    f.seekp(static_cast<std::streamoff>(at + 1234));
    f.put('R');
    flipped = true;
  }
  ASSERT_TRUE(flipped);
  ASSERT_TRUE(agent.Start().ok()) << agent.LogTail();
  lease = MakeLease(agent);
  auto reply = GetBlocks(agent, lease, "disk", 1, 1);
  ASSERT_EQ(reply.blocks_size(), 1);
  EXPECT_FALSE(reply.blocks(0).found());
  EXPECT_EQ(Stats(agent, "disk").checksum_failures(), 1u);
}

TEST(RestartTest, InvalidConfigurationIsRefusedWithTheFieldNamed) {
  AgentProcess agent({.extra_yaml = "bogus_key: 1\n"});
  Status started = agent.Start();
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.message().find("bogus_key"), std::string::npos) << started.ToString();
  EXPECT_FALSE(std::filesystem::exists(agent.socket_path()));
}

TEST(RestartTest, ImpossibleSizesAreRefused) {
  AgentProcess agent({.pools = {{.name = "big", .dram = "1GiB"}}});  // the agent has 64MiB of DRAM
  Status started = agent.Start();
  ASSERT_FALSE(started.ok());
  EXPECT_NE(started.message().find("dram"), std::string::npos) << started.ToString();
}

}  // namespace
}  // namespace tokenmem::testing
