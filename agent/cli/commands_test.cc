// Runs tokenmemctl's commands against an in-process fake of the control API,
// to pin down output, error lines and exit statuses without an agent.
#include "cli/commands.h"

#include <grpcpp/server.h>
#include <grpcpp/server_builder.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "cli/args.h"
#include "wire/key_bytes.h"

namespace tokenmem::cli {
namespace {

class FakeControl final : public v1::Control::Service {
 public:
  grpc::Status GetStatus(grpc::ServerContext* context, const v1::StatusRequest*,
                         v1::StatusReply* reply) override {
    // Slow: answer late, or once the caller gives up.
    for (int i = 0; slow_ && i < 200 && !context->IsCancelled(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    reply->set_version("fake");
    return grpc::Status::OK;
  }
  grpc::Status CreatePool(grpc::ServerContext*, const v1::CreatePoolRequest* req,
                          v1::PoolInfo* reply) override {
    std::lock_guard lock(mu_);
    const std::string& name = req->spec().name();
    if (name.empty() ||
        name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") != std::string::npos) {
      return {grpc::StatusCode::INVALID_ARGUMENT, "bad pool name '" + name + "'"};
    }
    if (pools_.count(name)) return {grpc::StatusCode::ALREADY_EXISTS, "pool exists"};
    *reply->mutable_spec() = req->spec();
    pools_[name] = *reply;
    return grpc::Status::OK;
  }
  grpc::Status ListPools(grpc::ServerContext*, const v1::ListPoolsRequest*,
                         v1::ListPoolsReply* reply) override {
    std::lock_guard lock(mu_);
    for (const auto& [name, info] : pools_) *reply->add_pools() = info;
    return grpc::Status::OK;
  }
  grpc::Status GetPool(grpc::ServerContext*, const v1::GetPoolRequest* req,
                       v1::PoolInfo* reply) override {
    std::lock_guard lock(mu_);
    auto it = pools_.find(req->name());
    if (it == pools_.end()) return {grpc::StatusCode::NOT_FOUND, "no pool '" + req->name() + "'"};
    *reply = it->second;
    return grpc::Status::OK;
  }
  grpc::Status CreateLease(grpc::ServerContext*, const v1::CreateLeaseRequest* req,
                           v1::LeaseInfo* reply) override {
    reply->set_id("L1");
    reply->set_secret("sekrit");
    reply->set_quota_bytes(req->quota_bytes());
    return grpc::Status::OK;
  }
  grpc::Status Put(grpc::ServerContext*, const v1::PutRequest* req, v1::PutReply* reply) override {
    std::lock_guard lock(mu_);
    if (req->lease().secret() != "sekrit") {
      return {grpc::StatusCode::PERMISSION_DENIED, "wrong secret for lease L1"};
    }
    for (const auto& b : req->blocks()) {
      v1::PutResult* r = reply->add_results();
      if (b.data().size() > 1024) {
        r->set_code(static_cast<int>(StatusCode::kResourceExhausted));
        r->set_message("pool is full");
        continue;
      }
      blocks_[b.key()] = b.data();
      r->set_tier(v1::TIER_KIND_DRAM);
    }
    return grpc::Status::OK;
  }
  grpc::Status Get(grpc::ServerContext*, const v1::GetRequest* req, v1::GetReply* reply) override {
    std::lock_guard lock(mu_);
    for (const auto& k : req->keys()) {
      v1::BlockRead* b = reply->add_blocks();
      auto it = blocks_.find(k);
      if (it == blocks_.end()) continue;
      b->set_found(true);
      b->set_data(it->second);
      b->set_tier(v1::TIER_KIND_NVME);
    }
    return grpc::Status::OK;
  }
  grpc::Status Exists(grpc::ServerContext*, const v1::ExistsRequest* req,
                      v1::ExistsReply* reply) override {
    std::lock_guard lock(mu_);
    for (const auto& k : req->keys()) reply->add_present(blocks_.count(k) > 0);
    return grpc::Status::OK;
  }

  bool slow_ = false;

 private:
  std::mutex mu_;
  std::map<std::string, v1::PoolInfo> pools_;
  std::map<std::string, std::string> blocks_;
};

struct Outcome {
  int code;
  std::string out;
  std::string err;
};

class CommandsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    builder.RegisterService(&fake_);
    server_ = builder.BuildAndStart();
    stub_ = v1::Control::NewStub(server_->InProcessChannel(grpc::ChannelArguments()));
    std::string tmpl = (std::filesystem::temp_directory_path() / "tm-cli-XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
    unsetenv("TOKENMEM_LEASE");
  }
  void TearDown() override {
    server_->Shutdown();
    std::filesystem::remove_all(dir_);
    unsetenv("TOKENMEM_LEASE");
  }

  Outcome Run(std::vector<std::string> args) {
    auto inv = ParseArgs(args);
    EXPECT_TRUE(inv.ok()) << inv.status().ToString();
    if (!inv.ok()) return {-1, "", ""};
    std::ostringstream out, err;
    int code = RunCommand(*inv, *stub_, out, err);
    return {code, out.str(), err.str()};
  }

  std::string Key(int i) { return BlockKey{0, static_cast<uint64_t>(i)}.ToHex(); }

  FakeControl fake_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Control::Stub> stub_;
  std::string dir_;
};

TEST_F(CommandsTest, CreatesAndShowsPools) {
  Outcome r = Run({"pool", "create", "p1", "--block-size", "64KiB", "--dram", "8MiB", "--nvme",
                   "1GiB", "--eviction", "none", "--ttl", "60", "--scope", "cluster"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("created pool p1"), std::string::npos);
  EXPECT_TRUE(r.err.empty());

  r = Run({"pool", "get", "p1", "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find(R"("block_size":65536)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("eviction":"none")"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("ttl_seconds":60)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("scope":"cluster")"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(R"("capacity":{"dram":8388608,"nvme":1073741824})"), std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.back(), '\n');
}

TEST_F(CommandsTest, ServerErrorsBecomeOneLineAndExitOne) {
  Outcome r = Run({"pool", "create", "Bad_Name", "--dram", "1MiB"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_EQ(r.err, "tokenmemctl: INVALID_ARGUMENT: bad pool name 'Bad_Name'\n");
  EXPECT_TRUE(r.out.empty());

  r = Run({"pool", "get", "nope"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_EQ(r.err, "tokenmemctl: NOT_FOUND: no pool 'nope'\n");
}

TEST_F(CommandsTest, BadSizesAreUsageErrorsAndSendNothing) {
  Outcome r = Run({"pool", "create", "p1", "--dram", "lots"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("--dram"), std::string::npos);
  EXPECT_NE(r.err.find("tokenmemctl help"), std::string::npos);
  EXPECT_EQ(Run({"pool", "get", "p1"}).code, kExitError);  // not created

  EXPECT_EQ(Run({"pool", "create", "p1", "--eviction", "fifo"}).code, kExitUsage);
  EXPECT_EQ(Run({"pool", "create", "p1", "--scope", "node"}).code, kExitUsage);
  EXPECT_EQ(Run({"pool", "create", "p1", "--ttl", "-1"}).code, kExitUsage);
  EXPECT_EQ(Run({"lease", "create", "--quota", "0"}).code, kExitUsage);
}

TEST_F(CommandsTest, LeaseCreatePrintsTheExportLine) {
  Outcome r = Run({"lease", "create", "--quota", "1GiB"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("export TOKENMEM_LEASE=L1:sekrit\n"), std::string::npos) << r.out;
}

TEST_F(CommandsTest, PutGetRoundTripThroughFiles) {
  std::string in = dir_ + "/in.bin", out = dir_ + "/out.bin";
  std::string payload("\x00\x01\xff binary\n", 11);
  std::ofstream(in, std::ios::binary) << payload;
  Outcome r = Run({"put", "--pool", "p", "--key", Key(1), "--file", in, "--lease", "L1:sekrit"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find("(dram)"), std::string::npos) << r.out;

  setenv("TOKENMEM_LEASE", "L1:sekrit", 1);
  r = Run({"get", "--pool", "p", "--key", Key(1), "--file", out, "--json"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_NE(r.out.find(R"("tier":"nvme")"), std::string::npos) << r.out;
  std::ifstream f(out, std::ios::binary);
  std::string back((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  EXPECT_EQ(back, payload);

  r = Run({"get", "--pool", "p", "--key", Key(1), "--file", "-"});
  ASSERT_EQ(r.code, kExitOk) << r.err;
  EXPECT_EQ(r.out, payload);
}

TEST_F(CommandsTest, MissExitsThreeAndWritesNoFile) {
  std::string out = dir_ + "/never.bin";
  Outcome r = Run({"get", "--pool", "p", "--key", Key(9), "--file", out, "--lease", "L1:sekrit"});
  EXPECT_EQ(r.code, kExitMissing);
  EXPECT_EQ(r.err, "tokenmemctl: NOT_FOUND: key " + Key(9) + " is not in pool p\n");
  EXPECT_FALSE(std::filesystem::exists(out));
}

TEST_F(CommandsTest, LeaseProblems) {
  std::string in = dir_ + "/in.bin";
  std::ofstream(in) << "x";
  Outcome r = Run({"put", "--pool", "p", "--key", Key(1), "--file", in});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("TOKENMEM_LEASE"), std::string::npos);

  r = Run({"put", "--pool", "p", "--key", Key(1), "--file", in, "--lease", "L1:wrong"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_EQ(r.err, "tokenmemctl: PERMISSION_DENIED: wrong secret for lease L1\n");

  setenv("TOKENMEM_LEASE", "garbage", 1);
  r = Run({"put", "--pool", "p", "--key", Key(1), "--file", in});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_EQ(r.err.find("garbage"), std::string::npos);
}

TEST_F(CommandsTest, PerBlockFailuresUseTheStoreCodeName) {
  std::string in = dir_ + "/big.bin";
  std::ofstream(in) << std::string(4096, 'z');
  Outcome r = Run({"put", "--pool", "p", "--key", Key(2), "--file", in, "--lease", "L1:sekrit"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_EQ(r.err, "tokenmemctl: RESOURCE_EXHAUSTED: pool is full\n");
}

TEST_F(CommandsTest, BadKeysAndMissingFilesAreCaughtLocally) {
  Outcome r = Run({"get", "--pool", "p", "--key", "xyz", "--file", "-", "--lease", "L1:sekrit"});
  EXPECT_EQ(r.code, kExitUsage);
  EXPECT_NE(r.err.find("32 hexadecimal"), std::string::npos);

  r = Run(
      {"put", "--pool", "p", "--key", Key(1), "--file", dir_ + "/absent", "--lease", "L1:sekrit"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_NE(r.err.find("IO_ERROR"), std::string::npos);
}

TEST_F(CommandsTest, ExistsExitsThreeWhenAnyKeyIsAbsent) {
  std::string in = dir_ + "/in.bin";
  std::ofstream(in) << "x";
  ASSERT_EQ(Run({"put", "--pool", "p", "--key", Key(1), "--file", in, "--lease", "L1:sekrit"}).code,
            kExitOk);
  Outcome r = Run({"exists", "--pool", "p", "--key", Key(1), "--lease", "L1:sekrit"});
  EXPECT_EQ(r.code, kExitOk);
  EXPECT_EQ(r.out, Key(1) + "  present\n");
  r = Run({"exists", "--pool", "p", "--key", Key(1), "--key", Key(3), "--lease", "L1:sekrit",
           "--json"});
  EXPECT_EQ(r.code, kExitMissing);
  EXPECT_NE(r.out.find(R"("present":1,"absent":1)"), std::string::npos) << r.out;
}

TEST_F(CommandsTest, CallsHonourTheTimeout) {
  fake_.slow_ = true;
  auto start = std::chrono::steady_clock::now();
  Outcome r = Run({"status", "--timeout", "0.2"});
  EXPECT_EQ(r.code, kExitError);
  EXPECT_NE(r.err.find("DEADLINE_EXCEEDED"), std::string::npos) << r.err;
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
}

}  // namespace
}  // namespace tokenmem::cli
