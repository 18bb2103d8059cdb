// Plays the demo against an in-process fake of the control API whose
// behaviour is simple enough to predict every count: its blocks through the
// control API's BlockStore (ControlBlockStore), or through a fake BlockStore
// that, like the SDK's local path, does not name tiers.
#include "demo/runner.h"

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <sstream>

#include "demo/control_block_store.h"
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
    ++stats_calls;
    v1::PoolStats* p = reply->add_pools();
    p->set_pool(req->pool());
    v1::TierCounters* dram = p->add_tiers();
    dram->set_tier(v1::TIER_KIND_DRAM);
    dram->set_hits(dram_hits.load());
    dram->set_demotions_out(3);
    dram->set_bytes_demoted_out(3 * 4096);
    v1::TierCounters* nvme = p->add_tiers();
    nvme->set_tier(v1::TIER_KIND_NVME);
    nvme->set_hits(nvme_hits.load());
    nvme->set_promotions_in(2);
    nvme->set_evictions(1);
    return grpc::Status::OK;
  }

  size_t released_count() {
    std::lock_guard lock(mu_);
    return released.size();
  }

  // The pool's tier hit counters (what clients of the local path add to).
  std::atomic<uint64_t> dram_hits{0};
  std::atomic<uint64_t> nvme_hits{0};
  std::atomic<int> stats_calls{0};
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

  // A runner whose blocks go over the fake's control API.
  DemoRunner ControlRunner() {
    return DemoRunner(*stub_, ControlStoreOpener(*stub_, options_.timeout), options_, progress_);
  }
};

TEST_F(RunnerTest, CountsReuseExactly) {
  DemoRunner runner = ControlRunner();
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // Turn 1: s0 stores 5 blocks (40 tokens); s1 reuses the 4 system-prompt blocks, stores 1.
  // Turn 2: each prompt is 56 tokens = 7 blocks; its first 5 are the last prompt's.
  EXPECT_TRUE(r->pool_created);
  EXPECT_EQ(r->path, "control");
  EXPECT_TRUE(r->hits_per_read);
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
  EXPECT_NE(json.find(R"("path":"control")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("hits_source":"reads")"), std::string::npos) << json;
}

TEST_F(RunnerTest, SameSeedSameKeys) {
  // A second run finds everything the first stored, except each last user message.
  DemoRunner first = ControlRunner();
  ASSERT_TRUE(first.Run().ok());
  DemoRunner second = ControlRunner();
  auto r = second.Run();
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->pool_created);
  EXPECT_EQ(r->reused_tokens, 40u + 40 + 56 + 56);
  EXPECT_EQ(r->blocks_stored, 0u);
}

TEST_F(RunnerTest, CatchesCorruption) {
  fake_.corrupt = true;
  DemoRunner runner = ControlRunner();
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->verification_failures, 1u);
  EXPECT_FALSE(r->ok());
  EXPECT_NE(progress_.str().find("VERIFICATION FAILED"), std::string::npos);
  EXPECT_NE(ReportJson(*r).find(R"("ok":false)"), std::string::npos);
}

TEST_F(RunnerTest, UsesAGivenLeaseAndKeepsIt) {
  options_.lease = "mine:s";
  DemoRunner runner = ControlRunner();
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(fake_.leases_created, 0);
  EXPECT_TRUE(fake_.released.empty());
  EXPECT_EQ(r->lease_id, "mine");
}

TEST_F(RunnerTest, FailsWithTheCallAndCodeAndStillReleasesItsLease) {
  fake_.expected_secret = "other";
  DemoRunner runner = ControlRunner();
  auto r = runner.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(r.status().message(), "LookupPrefix: PERMISSION_DENIED: wrong secret");
  EXPECT_EQ(fake_.released, std::vector<std::string>{"L7"});
}

TEST_F(RunnerTest, RejectsKvBytesLargerThanTheBlock) {
  options_.kv_bytes_per_block = 8192;
  DemoRunner runner = ControlRunner();
  auto r = runner.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
}

TEST_F(RunnerTest, BatchesLargeWrites) {
  options_.block_size = 1 << 20;
  options_.system_prompt_tokens = 64;  // 8 blocks of 1 MiB in the first prompt
  options_.sessions = 1;
  options_.turns = 1;
  DemoRunner runner = ControlRunner();
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->blocks_stored, 9u);
  EXPECT_EQ(fake_.put_calls, 5);  // 2 MiB per batch
}

// What the fake BlockStore saw and does, shared by every store it opens.
struct FakeStoreState {
  FakeAgent* agent = nullptr;
  std::map<BlockKey, std::string> blocks;
  std::map<BlockKey, int> reads;
  std::vector<std::pair<std::string, std::string>> opened;  // (pool, "ID:SECRET")
  int closed = 0;
  size_t leases_released_at_close = 0;
  Status open_error = Status::Ok();
  Status get_error = Status::Ok();        // the next GetMany fails with it
  size_t refuse_put_of_block = SIZE_MAX;  // the n-th block put (from 0) is refused
  size_t puts = 0;
  bool grow_first_read = false;  // the first block read comes back one byte too long
  StatusCode first_read_code = StatusCode::kOk;  // else the first block read fails with it
};

// Blocks in a map. Like the SDK's local path it does not say which tier
// served a get; it adds to the fake agent's pool counters instead: the
// first read of a key to DRAM, later ones to NVMe.
class FakeBlockStore final : public BlockStore {
 public:
  explicit FakeBlockStore(FakeStoreState* state) : state_(state) {}
  ~FakeBlockStore() override {
    ++state_->closed;
    state_->leases_released_at_close = state_->agent->released_count();
  }

  std::string_view path() const override { return "fake"; }
  std::string description() const override { return "a map in the test"; }
  bool tiers_per_read() const override { return false; }

  Result<size_t> LookupPrefix(std::span<const BlockKey> keys) override {
    size_t n = 0;
    while (n < keys.size() && state_->blocks.count(keys[n])) ++n;
    return n;
  }
  Status GetMany(std::span<const BlockKey> keys, std::span<const std::span<std::byte>> buffers,
                 std::span<BlockOutcome> outcomes) override {
    if (!state_->get_error.ok()) return state_->get_error;
    for (size_t i = 0; i < keys.size(); ++i) {
      auto it = state_->blocks.find(keys[i]);
      if (it == state_->blocks.end()) {
        outcomes[i].code = StatusCode::kNotFound;
        continue;
      }
      (state_->reads[keys[i]]++ == 0 ? state_->agent->dram_hits : state_->agent->nvme_hits)++;
      if (state_->first_read_code != StatusCode::kOk) {
        outcomes[i] = {state_->first_read_code, 0, v1::TIER_KIND_UNSPECIFIED, "bad checksum"};
        state_->first_read_code = StatusCode::kOk;
        continue;
      }
      if (state_->grow_first_read) {
        state_->grow_first_read = false;
        outcomes[i] = {StatusCode::kInvalidArgument, it->second.size() + 1,
                       v1::TIER_KIND_UNSPECIFIED, "too small"};
        continue;
      }
      std::memcpy(buffers[i].data(), it->second.data(), it->second.size());
      outcomes[i].length = it->second.size();
    }
    return Status::Ok();
  }
  Status PutMany(std::span<const BlockKey> keys, std::span<const std::span<const std::byte>> blocks,
                 std::span<BlockOutcome> outcomes) override {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (state_->puts++ == state_->refuse_put_of_block) {
        outcomes[i] = {StatusCode::kResourceExhausted, 0, v1::TIER_KIND_UNSPECIFIED,
                       "quota of lease L7 exceeded"};
        continue;
      }
      state_->blocks[keys[i]].assign(reinterpret_cast<const char*>(blocks[i].data()),
                                     blocks[i].size());
    }
    return Status::Ok();
  }

 private:
  FakeStoreState* state_;
};

class FakeStoreRunnerTest : public RunnerTest {
 protected:
  void SetUp() override {
    RunnerTest::SetUp();
    state_.agent = &fake_;
    // Hits from before the run must not count.
    fake_.dram_hits = 100;
    fake_.nvme_hits = 50;
  }

  DemoRunner FakeRunner() {
    BlockStoreOpener open =
        [this](const std::string& pool,
               const wire::LeaseString& lease) -> Result<std::unique_ptr<BlockStore>> {
      state_.opened.emplace_back(pool, wire::FormatLease(lease.id, lease.secret));
      if (!state_.open_error.ok()) return state_.open_error;
      return std::unique_ptr<BlockStore>(new FakeBlockStore(&state_));
    };
    return DemoRunner(*stub_, std::move(open), options_, progress_);
  }

  FakeStoreState state_;
};

TEST_F(FakeStoreRunnerTest, CountsReuseThroughTheStoreAndTiersFromThePoolCounters) {
  DemoRunner runner = FakeRunner();
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  // The store was opened once, for the pool under the created lease, and
  // closed before the lease was released.
  ASSERT_EQ(state_.opened.size(), 1u);
  EXPECT_EQ(state_.opened[0], std::make_pair(std::string("demo"), std::string("L7:s")));
  EXPECT_EQ(state_.closed, 1);
  EXPECT_EQ(state_.leases_released_at_close, 0u);
  EXPECT_EQ(fake_.released, std::vector<std::string>{"L7"});

  // The same workload counts as over the control API (CountsReuseExactly).
  EXPECT_EQ(r->path, "fake");
  EXPECT_EQ(r->path_description, "a map in the test");
  EXPECT_EQ(r->reused_tokens, 0u + 32 + 40 + 40);
  EXPECT_EQ(r->blocks_looked_up, 24u);
  EXPECT_EQ(r->blocks_matched, 14u);
  EXPECT_EQ(r->blocks_read, 14u);
  EXPECT_EQ(r->blocks_stored, 10u);
  EXPECT_EQ(state_.blocks.size(), 10u);
  EXPECT_EQ(r->verification_failures, 0u);
  EXPECT_TRUE(r->ok());

  // Tiers come from the growth of the pool's counters: before the run, after
  // each of the two rounds.
  EXPECT_FALSE(r->hits_per_read);
  EXPECT_EQ(fake_.stats_calls.load(), 3);
  EXPECT_EQ(r->hits_by_tier[v1::TIER_KIND_DRAM], 6u);
  EXPECT_EQ(r->hits_by_tier[v1::TIER_KIND_NVME], 8u);
  ASSERT_TRUE(r->pool_stats.has_value());
  std::string lines = progress_.str();
  // Round 1: s1 reads the 4 system blocks for the first time; round 2: 8
  // repeated reads and each session's fifth block once.
  EXPECT_NE(lines.find("4 read back (pool hits: dram 4, cxl 0, nvme 0)"), std::string::npos)
      << lines;
  EXPECT_NE(lines.find("10 read back (pool hits: dram 2, cxl 0, nvme 8)"), std::string::npos)
      << lines;

  std::string text = ReportText(*r, "--socket /x.sock");
  EXPECT_NE(text.find("fake path (a map in the test)"), std::string::npos) << text;
  EXPECT_NE(text.find("Hits in pool demo during the run"), std::string::npos) << text;
  EXPECT_NE(text.find("nvme     8      57.1%"), std::string::npos) << text;
  std::string json = ReportJson(*r);
  EXPECT_NE(json.find(R"("path":"fake")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("hits_source":"pool_counters")"), std::string::npos) << json;
  EXPECT_NE(json.find(R"("nvme":{"hits":8,)"), std::string::npos) << json;
}

TEST_F(FakeStoreRunnerTest, CountsBlocksThatFailAlone) {
  state_.refuse_put_of_block = 2;
  state_.grow_first_read = true;
  DemoRunner runner = FakeRunner();
  auto r = runner.Run();
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->put_failures, 1u);
  EXPECT_EQ(r->first_put_failure, "RESOURCE_EXHAUSTED: quota of lease L7 exceeded");
  // A block longer than the demo wrote fails verification and is recomputed.
  EXPECT_EQ(r->verification_failures, 1u);
  EXPECT_NE(progress_.str().find("VERIFICATION FAILED: block "), std::string::npos);
  EXPECT_NE(progress_.str().find("(4097 bytes, 4096 expected)"), std::string::npos)
      << progress_.str();
  EXPECT_FALSE(r->ok());
}

TEST_F(FakeStoreRunnerTest, ABlockThatCanNeitherBeReadNorMissedEndsTheRun) {
  state_.first_read_code = StatusCode::kCorruption;
  DemoRunner runner = FakeRunner();
  auto r = runner.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kCorruption);
  EXPECT_EQ(r.status().message().rfind("reading block ", 0), 0u) << r.status().message();
  EXPECT_NE(r.status().message().find(": CORRUPTION: bad checksum"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(fake_.released, std::vector<std::string>{"L7"});
}

TEST_F(FakeStoreRunnerTest, AFailedStoreCallEndsTheRunAndTheLeaseStillGoes) {
  state_.get_error = Unavailable("GetMany: UNAVAILABLE: the agent closed the data connection");
  DemoRunner runner = FakeRunner();
  auto r = runner.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "GetMany: UNAVAILABLE: the agent closed the data connection");
  EXPECT_EQ(state_.closed, 1);
  EXPECT_EQ(fake_.released, std::vector<std::string>{"L7"});
}

TEST_F(FakeStoreRunnerTest, AStoreThatCannotOpenEndsTheRunAndTheLeaseStillGoes) {
  state_.open_error = Unavailable("Connect: UNAVAILABLE: /x/agent-data.sock: No such file");
  DemoRunner runner = FakeRunner();
  auto r = runner.Run();
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "Connect: UNAVAILABLE: /x/agent-data.sock: No such file");
  EXPECT_EQ(fake_.released, std::vector<std::string>{"L7"});
  EXPECT_TRUE(state_.blocks.empty());
}

}  // namespace
}  // namespace tokenmem::demo
