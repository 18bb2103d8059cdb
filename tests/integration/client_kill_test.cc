// A client killed with SIGKILL in the middle of writing: the agent and the
// other clients go on unaffected, and the slots it had reserved come back.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <thread>

#include "agent_fixture.h"
#include "tokenmem/client.h"

namespace tokenmem::testing {
namespace {

constexpr uint64_t kBlock = 64 * 1024;

std::string DataSocket(const AgentProcess& agent) {
  return (agent.dir() / "agent-data.sock").string();
}

std::pair<std::string, std::string> Split(const std::string& lease) {
  auto colon = lease.find(':');
  return {lease.substr(0, colon), lease.substr(colon + 1)};
}

uint64_t LeaseUsed(AgentProcess& agent, const std::string& id) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ListLeasesReply reply;
  if (!agent.stub().ListLeases(&ctx, {}, &reply).ok()) return ~0ull;
  for (const auto& l : reply.leases()) {
    if (l.id() == id) return l.used_bytes();
  }
  return ~0ull;
}

uint64_t PoolBlocks(AgentProcess& agent, const std::string& pool) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::StatsRequest req;
  req.set_pool(pool);
  v1::StatsReply reply;
  if (!agent.stub().GetStats(&ctx, req, &reply).ok() || reply.pools_size() == 0) return ~0ull;
  uint64_t blocks = 0;
  for (const auto& u : reply.pools(0).usage()) blocks += u.blocks();
  return blocks;
}

TEST(ClientKillTest, KilledWriterLeaksNothingAndOthersGoOn) {
  AgentProcess agent({.pools = {{.name = "shared", .block_size = "64KiB", .dram = "32MiB"}}});
  ASSERT_TRUE(agent.Start().ok()) << agent.LogTail();
  auto victim_lease = agent.CreateLease(1ull << 30, {"shared"});
  auto other_lease = agent.CreateLease(1ull << 30, {"shared"});
  ASSERT_TRUE(victim_lease.ok() && other_lease.ok());
  const auto [victim_id, victim_secret] = Split(*victim_lease);

  // The victim writes big batches in a loop until it is killed; each batch
  // reserves 256 slots before it commits any.
  pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto client = Client::Connect(DataSocket(agent), victim_id, victim_secret);
    if (!client.ok()) ::_exit(2);
    auto pool = (*client)->Attach("shared");
    if (!pool.ok()) ::_exit(3);
    std::vector<std::byte> data(kBlock, std::byte{0x11});
    std::vector<IoVec> pieces(256, IoVec{data.data(), data.size()});
    for (uint64_t round = 0;; ++round) {
      std::vector<BlockIo> ios;
      for (uint64_t i = 0; i < 256; ++i) ios.push_back({BlockKey{round, i}, {&pieces[i], 1}});
      std::vector<IoResult> results(ios.size());
      (void)(*pool)->PutMany(ios, results);
    }
  }
  // Let it get going, then kill it at an arbitrary point.
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  ASSERT_EQ(::kill(child, SIGKILL), 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFSIGNALED(status)) << "the writer ended on its own with " << status;

  // The agent is unaffected.
  grpc::ClientContext ctx;
  v1::StatusReply reply;
  ASSERT_TRUE(agent.stub().GetStatus(&ctx, {}, &reply).ok()) << agent.LogTail();

  // Slots the victim had reserved but not committed are freed: its charge
  // comes down to exactly the blocks it committed (the only blocks there).
  uint64_t used = 0, blocks = 0;
  for (int i = 0; i < 500; ++i) {
    used = LeaseUsed(agent, victim_id);
    blocks = PoolBlocks(agent, "shared");
    if (used == blocks * kBlock) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(used, blocks * kBlock);
  EXPECT_GT(blocks, 0u);

  // Another client works as before, and reads what the victim committed.
  const auto [other_id, other_secret] = Split(*other_lease);
  auto client = Client::Connect(DataSocket(agent), other_id, other_secret);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto pool = (*client)->Attach("shared");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  std::vector<std::byte> data(1000, std::byte{0x22});
  ASSERT_TRUE((*pool)->Put(BlockKey{99, 99}, data).ok());
  std::vector<std::byte> out(kBlock);
  auto got = (*pool)->Get(BlockKey{99, 99}, out);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(*got, data.size());
  auto victims = (*pool)->Get(BlockKey{0, 0}, out);
  if (victims.ok()) {
    EXPECT_EQ(*victims, kBlock);
    EXPECT_EQ(out[0], std::byte{0x11});
  }
}

}  // namespace
}  // namespace tokenmem::testing
