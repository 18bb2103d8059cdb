// Plays the demo against an in-process fake of the control API whose
// behaviour is simple enough to predict every count.
#include "demo/runner.h"

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <map>
#include <mutex>
#include <sstream>

#include "demo/report.h"

namespace tokenmem::demo {
namespace {

// Blocks stay forever; every read comes from DRAM, except that keys read for
// the second time or more come from NVMe (so two tiers show up).
class FakeAgent final : public v1::Control::Service {
 public:
  grpc::Status GetPool(grpc::ServerContext*, const v1::GetPoolRequest* req,
                       v1::PoolInfo* reply) override {
    std::lock_guard lock(mu_);
    auto it = pools_.find(req->name());
    if (it == pools_.end()) return {grpc::StatusCode::NOT_FOUND, "no pool"};
    *reply = it->second;
    return grpc::Status::OK;
  }
  grpc::Status CreatePool(grpc::ServerContext*, const v1::CreatePoolRequest* req,
                          v1::PoolInfo* reply) override {
    std::lock_guard lock(mu_);
    *reply->mutable_spec() = req->spec();
    pools_[req->spec().name()] = *reply;
    return grpc::Status::OK;
  }
  grpc::Status CreateLease(grpc::ServerContext*, const v1::CreateLeaseRequest* req,
                           v1::LeaseInfo* reply) override {
    std::lock_guard lock(mu_);
    ++leases_created;
    last_lease_pools.assign(req->pools().begin(), req->pools().end());
    reply->set_id("L7");
    reply->set_secret("s");
    return grpc::Status::OK;
  }
  grpc::Status ReleaseLease(grpc::ServerContext*, const v1::ReleaseLeaseRequest* req,
                            v1::ReleaseLeaseReply* reply) override {
    std::lock_guard lock(mu_);
    released.push_back(req->id());
    reply->set_released_blocks(blocks_.size());
    return grpc::Status::OK;
  }
  grpc::Status LookupPrefix(grpc::ServerContext*, const v1::LookupPrefixRequest* req,
                            v1::LookupPrefixReply* reply) override {
    std::lock_guard lock(mu_);
    if (!Authorized(req->lease())) return Denied();
    uint32_t n = 0;
    while (n < static_cast<uint32_t>(req->keys_size()) && blocks_.count(req->keys(n))) ++n;
    reply->set_matched(n);
    return grpc::Status::OK;
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* req, v1::GetReply* reply) override {
    std::lock_guard lock(mu_);
    if (!Authorized(req->lease())) return Denied();
    for (const auto& k : req->keys()) {
      v1::BlockRead* b = reply->add_blocks();
      auto it = blocks_.find(k);
      if (it == blocks_.end()) continue;
      b->set_found(true);
      b->set_data(it->second);
      if (corrupt && gets_ == 0) (*b->mutable_data())[100] ^= 0x40;
      ++gets_;
      b->set_tier(reads_[k]++ == 0 ? v1::TIER_KIND_DRAM : v1::TIER_KIND_NVME);
    }
    return grpc::Status::OK;
  }
  grpc::Status Put(grpc::ServerContext*, const v1::PutRequest* req, v1::PutReply* reply) override {
    std::lock_guard lock(mu_);
    if (!Authorized(req->lease())) return Denied();
    ++put_calls;
    for (const auto& b : req->blocks()) {
      blocks_[b.key()] = b.data();
      reply->add_results()->set_tier(v1::TIER_KIND_DRAM);
    }
    return grpc::Status::OK;
  }
  grpc::Status GetStats(grpc::ServerContext*, const v1::StatsRequest* req,
                        v1::StatsReply* reply) override {
    v1::PoolStats* p = reply->add_pools();
    p->set_pool(req->pool());
    v1::TierCounters* dram = p->add_tiers();
    dram->set_tier(v1::TIER_KIND_DRAM);
    dram->set_demotions_out(3);
    dram->set_bytes_demoted_out(3 * 4096);
    v1::TierCounters* nvme = p->add_tiers();
    nvme->set_tier(v1::TIER_KIND_NVME);
    nvme->set_promotions_in(2);
    nvme->set_evictions(1);
    return grpc::Status::OK;
  }

  bool corrupt = false;
  int leases_created = 0;
  int put_calls = 0;
  std::vector<std::string> released;
  std::vector<std::string> last_lease_pools;
  std::string expected_secret = "s";

 private:
  bool Authorized(const v1::LeaseCredentials& c) { return c.secret() == expected_secret; }
  static grpc::Status Denied() { return {grpc::StatusCode::PERMISSION_DENIED, "wrong secret"}; }

  std::mutex mu_;
  std::map<std::string, v1::PoolInfo> pools_;
  std::map<std::string, std::string> blocks_;
  std::map<std::string, int> reads_;
  int gets_ = 0;
};

class RunnerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("TOKENMEM_LEASE");
    grpc::ServerBuilder builder;
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    stub_ = v1::Control::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
    options_.block_size = 4096;
    options_.sessions = 2;
    options_.turns = 2;
    options_.system_prompt_tokens = 32;
    options_.user_tokens = 8;
    options_.reply_tokens = 8;
    options_.block_tokens = 8;
  }
  void TearDown() override { server_->Shutdown(); }

  FakeAgent fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Control::Stub> stub_;
  DemoOptions options_;
  std::ostringstream progress_;
};

TEST_F(RunnerTest, CountsReuseExactly) {
  DemoRunner runner(*stub_, options_, progress_);
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Turn 1: s0 stores 5 blocks (40 tokens); s1 reuses the 4 system-prompt blocks, stores 1.
  // Turn 2: each prompt is 56 tokens = 7 blocks; its first 5 are the last prompt's.
  EXPECT_TRUE(r->pool_created);
  EXPECT_EQ(r->kv_bytes_per_block, 4096u);
  EXPECT_EQ(r->prompts, 4u);
  EXPECT_EQ(r->prompt_tokens, 40u + 40 + 56 + 56);
  EXPECT_EQ(r->reused_tokens, 0u + 32 + 40 + 40);
  EXPECT_EQ(r->blocks_looked_up, 24u);
  EXPECT_EQ(r->blocks_matched, 14u);
  EXPECT_EQ(r->blocks_read, 14u);
  EXPECT_EQ(r->blocks_stored, 10u);
  EXPECT_EQ(r->bytes_stored, 10u * 4096);
  EXPECT_EQ(r->bytes_read, 14u * 4096);
  // The 4 system blocks: first read by s1 in turn 1 (DRAM), then by both sessions in
  // turn 2 (NVMe, a repeated read in this fake); each session's fifth block once (DRAM).
  EXPECT_EQ(r->hits_by_tier[v1::TIER_KIND_DRAM], 6u);
  EXPECT_EQ(r->hits_by_tier[v1::TIER_KIND_NVME], 8u);
  EXPECT_EQ(r->verification_failures, 0u);
  EXPECT_TRUE(r->ok());
  ASSERT_TRUE(r->pool_stats.has_value());
  EXPECT_EQ(fake_.leases_created, 1);
  EXPECT_EQ(fake_.last_lease_pools, std::vector<std::string>{"demo"});
  EXPECT_EQ(fake_.released, std::vector<std::string>{"L7"});
  EXPECT_TRUE(r->lease_released);

  // One progress line per turn round.
  std::string lines = progress_.str();
  EXPECT_EQ(std::count(lines.begin(), lines.end(), '\n'), 2);
  EXPECT_NE(lines.find("turn 2/2"), std::string::npos);

  std::string text = ReportText(*r, "--socket /x.sock");
  EXPECT_NE(text.find("112  (58.3% of prompt tokens)"), std::string::npos) << text;
  EXPECT_NE(text.find("tokenmemctl --socket /x.sock stats --pool demo"), std::string::npos);
  std::string json = ReportJson(*r);
  EXPECT_NE(json.find(R"("reused_tokens":112)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("evictions":1)"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("ok":true)"), std::string::npos) << json;
}

TEST_F(RunnerTest, SameSeedSameKeys) {
  // A second run finds everything the first stored, except each last user message.
  DemoRunner first(*stub_, options_, progress_);
  ASSERT_TRUE(first.Run().ok());
  DemoRunner second(*stub_, options_, progress_);
  auto r = second.Run();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->pool_created);
  EXPECT_EQ(r->reused_tokens, 40u + 40 + 56 + 56);
  EXPECT_EQ(r->blocks_stored, 0u);
}

TEST_F(RunnerTest, CatchesCorruption) {
  fake_.corrupt = true;
  DemoRunner runner(*stub_, options_, progress_);
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->verification_failures, 1u);
  EXPECT_FALSE(r->ok());
  EXPECT_NE(progress_.str().find("VERIFICATION FAILED"), std::string::npos);
  EXPECT_NE(ReportJson(*r).find(R"("ok":false)"), std::string::npos);
}

TEST_F(RunnerTest, UsesAGivenLeaseAndKeepsIt) {
  options_.lease = "mine:s";
  DemoRunner runner(*stub_, options_, progress_);
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(fake_.leases_created, 0);
  EXPECT_TRUE(fake_.released.empty());
  EXPECT_EQ(r->lease_id, "mine");
}

TEST_F(RunnerTest, FailsWithTheCallAndCodeAndStillReleasesItsLease) {
  fake_.expected_secret = "other";
  DemoRunner runner(*stub_, options_, progress_);
  auto r = runner.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(r.status().message(), "LookupPrefix: PERMISSION_DENIED: wrong secret");
  EXPECT_EQ(fake_.released, std::vector<std::string>{"L7"});
}

TEST_F(RunnerTest, RejectsKvBytesLargerThanTheBlock) {
  options_.kv_bytes_per_block = 8192;
  DemoRunner runner(*stub_, options_, progress_);
  auto r = runner.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RunnerTest, BatchesLargeWrites) {
  options_.block_size = 1 << 20;
  options_.system_prompt_tokens = 64;  // 8 blocks of 1 MiB in the first prompt
  options_.sessions = 1;
  options_.turns = 1;
  DemoRunner runner(*stub_, options_, progress_);
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_stored, 9u);
  EXPECT_EQ(fake_.put_calls, 5);  // 2 MiB per batch
}

}  // namespace
}  // namespace tokenmem::demo
