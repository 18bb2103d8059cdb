// The control API against hostile protobufs: mutated requests of every RPC,
// sent as raw bytes through a real gRPC channel to a ControlServer, so that
// the server's own message parsing and every handler see them. The agent
// must answer each call with a status (never crash, hang or leak a thread),
// and keep serving: a well-formed request still works after the run.
//
// Seeds are valid requests of each RPC carrying a real lease and a real
// pool (so mutations reach deep into the handlers); mutations flip, insert,
// delete and duplicate bytes, splice two seeds, and grow repeated fields.
// The run is deterministic (fixed seed); TOKENMEM_FUZZ_SECONDS (default 8)
// bounds it, TOKENMEM_FUZZ_SEED changes it. Inputs in
// tests/fuzz/corpus/control (a byte naming the RPC, then the request) are
// replayed first: a finding is added there so that it is checked forever.
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <vector>

#include "control/control_server.h"
#include "control/proto_convert.h"
#include "tokenmem/common/testing/temp_dir.h"
#include "tokenmem/v1/control.grpc.pb.h"

namespace tokenmem::control {
namespace {

constexpr const char* kMethods[] = {
    "GetStatus",    "CreatePool", "GetPool",   "ListPools", "DeletePool", "CreateLease",
    "ReleaseLease", "ListLeases", "BindLease", "Put",       "Get",        "Exists",
    "LookupPrefix", "Delete",     "Pin",       "Unpin",     "GetStats"};
constexpr size_t kNumMethods = std::size(kMethods);

struct Input {
  size_t method;
  std::string bytes;
};

class ControlFuzz : public ::testing::Test {
 protected:
  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 << 20, .nvme = 0};
    options.nvme_root = dir_ / "nvme";
    std::filesystem::create_directory(options.nvme_root);
    auto pools = pool::PoolManager::Open(options);
    ASSERT_TRUE(pools.ok()) << pools.status().ToString();
    pools_ = std::move(pools).value();
    info_.version = "fuzz";
    ControlServerOptions server;
    server.socket_path = dir_ / "agent.sock";
    server.max_message_bytes = 4 << 20;
    auto started = ControlServer::Start(server, pools_.get(), &leases_, &info_);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    server_ = std::move(started).value();
    channel_ = grpc::CreateChannel("unix:" + server.socket_path.string(),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Control::NewStub(channel_);
    generic_ = std::make_unique<grpc::GenericStub>(channel_);
    ASSERT_TRUE(CreatePool("p"));
    grpc::ClientContext ctx;
    v1::CreateLeaseRequest req;
    req.set_quota_bytes(1 << 20);
    ASSERT_TRUE(stub_->CreateLease(&ctx, req, &lease_).ok());
  }

  bool CreatePool(const std::string& name) {
    grpc::ClientContext ctx;
    v1::CreatePoolRequest req;
    req.mutable_spec()->set_name(name);
    req.mutable_spec()->set_block_size(4096);
    auto* cap = req.mutable_spec()->add_capacity();
    cap->set_tier(v1::TIER_KIND_DRAM);
    cap->set_bytes(64 * 4096);
    v1::PoolInfo info;
    return stub_->CreatePool(&ctx, req, &info).ok();
  }

  // One valid request per RPC, with the real lease and pool.
  std::vector<Input> Seeds() const {
    std::vector<Input> out;
    auto add = [&](const char* method, const google::protobuf::Message& m) {
      for (size_t i = 0; i < kNumMethods; ++i) {
        if (std::string(kMethods[i]) == method) out.push_back({i, m.SerializeAsString()});
      }
    };
    const std::string key = KeyToBytes(BlockKey{1, 2});
    auto creds = [&](auto* m) {
      m->mutable_lease()->set_id(lease_.id());
      m->mutable_lease()->set_secret(lease_.secret());
      m->set_pool("p");
    };
    v1::PutRequest put;
    creds(&put);
    auto* b = put.add_blocks();
    b->set_key(key);
    b->set_data(std::string(100, 'x'));
    add("Put", put);
    v1::GetRequest get;
    creds(&get);
    get.add_keys(key);
    add("Get", get);
    v1::ExistsRequest exists;
    creds(&exists);
    exists.add_keys(key);
    add("Exists", exists);
    v1::LookupPrefixRequest lookup;
    creds(&lookup);
    lookup.add_keys(key);
    lookup.add_keys(KeyToBytes(BlockKey{3, 4}));
    add("LookupPrefix", lookup);
    v1::DeleteRequest del;
    creds(&del);
    del.add_keys(key);
    add("Delete", del);
    v1::PinRequest pin;
    creds(&pin);
    pin.add_keys(key);
    add("Pin", pin);
    add("Unpin", pin);
    v1::CreatePoolRequest create;
    create.mutable_spec()->set_name("q");
    create.mutable_spec()->set_block_size(4096);
    auto* cap = create.mutable_spec()->add_capacity();
    cap->set_tier(v1::TIER_KIND_DRAM);
    cap->set_bytes(16 * 4096);
    add("CreatePool", create);
    v1::GetPoolRequest gp;
    gp.set_name("p");
    add("GetPool", gp);
    v1::CreateLeaseRequest cl;
    cl.set_quota_bytes(4096);
    cl.add_pools("p");
    add("CreateLease", cl);
    v1::DeletePoolRequest dp;
    dp.set_name("q");
    add("DeletePool", dp);
    v1::ReleaseLeaseRequest rl;
    rl.set_id("lease-0000000000000000");
    add("ReleaseLease", rl);
    v1::BindLeaseRequest bind;
    bind.set_id(lease_.id());
    bind.set_namespace_("ns");
    add("BindLease", bind);
    v1::StatsRequest stats;
    stats.set_pool("p");
    add("GetStats", stats);
    add("GetStatus", v1::StatusRequest());
    add("ListPools", v1::ListPoolsRequest());
    add("ListLeases", v1::ListLeasesRequest());
    return out;
  }

  // The status of one call; DEADLINE_EXCEEDED is a hang.
  grpc::StatusCode Call(const Input& in) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
    grpc::Slice slice(in.bytes);
    grpc::ByteBuffer request(&slice, 1);
    grpc::ByteBuffer reply;
    grpc::Status status;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    generic_->UnaryCall(&ctx, std::string("/tokenmem.v1.Control/") + kMethods[in.method],
                        grpc::StubOptions(), &request, &reply, [&](grpc::Status s) {
                          std::lock_guard lock(mu);
                          status = std::move(s);
                          done = true;
                          cv.notify_one();
                        });
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return done; });
    return status.error_code();
  }

  testing::TempDir dir_;
  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  AgentInfo info_;
  std::unique_ptr<ControlServer> server_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Control::Stub> stub_;
  std::unique_ptr<grpc::GenericStub> generic_;
  v1::LeaseInfo lease_;
};

std::string Mutate(const std::string& seed, const std::vector<Input>& pool, std::mt19937_64& rng) {
  std::string s = seed;
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    const size_t at = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 7) {
      case 0:  // flip a bit
        if (!s.empty()) s[at] = static_cast<char>(s[at] ^ (1 << (rng() % 8)));
        break;
      case 1:  // a random byte
        if (!s.empty()) s[at] = static_cast<char>(rng());
        break;
      case 2:  // insert bytes
        s.insert(at, std::string(1 + rng() % 8, static_cast<char>(rng())));
        break;
      case 3:  // delete bytes
        if (!s.empty()) s.erase(at, 1 + rng() % 8);
        break;
      case 4:  // truncate
        s.resize(at);
        break;
      case 5: {  // splice with another seed
        const std::string& other = pool[rng() % pool.size()].bytes;
        s = s.substr(0, at) + other.substr(other.empty() ? 0 : rng() % other.size());
        break;
      }
      case 6: {  // repeat a run (grows repeated fields and lengths)
        const size_t len = 1 + rng() % 32;
        const std::string run = s.substr(at, len);
        for (int i = 0, n = 1 + static_cast<int>(rng() % 64); i < n; ++i) s.insert(at, run);
        break;
      }
    }
  }
  return s;
}

TEST_F(ControlFuzz, EveryRpcAnswersMutatedRequestsAndTheAgentKeepsServing) {
  std::vector<Input> corpus = Seeds();
  ASSERT_EQ(corpus.size(), kNumMethods);
  const std::filesystem::path dir =
      std::filesystem::path(TOKENMEM_SOURCE_DIR) / "tests/fuzz/corpus/control";
  size_t replayed = 0;
  if (std::filesystem::is_directory(dir)) {
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      std::ifstream f(entry.path(), std::ios::binary);
      std::string data((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
      if (data.empty()) continue;
      Input in{static_cast<unsigned char>(data[0]) % kNumMethods, data.substr(1)};
      EXPECT_NE(Call(in), grpc::StatusCode::DEADLINE_EXCEEDED) << entry.path();
      ++replayed;
    }
  }
  const char* secs = std::getenv("TOKENMEM_FUZZ_SECONDS");
  const char* seed = std::getenv("TOKENMEM_FUZZ_SEED");
  const auto budget = std::chrono::seconds(secs ? std::atoi(secs) : 8);
  std::mt19937_64 rng(seed ? std::strtoull(seed, nullptr, 10) : 20261208);
  std::map<grpc::StatusCode, size_t> codes;
  size_t runs = 0;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < budget) {
    const Input& base = corpus[rng() % corpus.size()];
    Input in{base.method, Mutate(base.bytes, corpus, rng)};
    const grpc::StatusCode code = Call(in);
    ASSERT_NE(code, grpc::StatusCode::DEADLINE_EXCEEDED)
        << kMethods[in.method] << " hung on " << in.bytes.size() << " bytes";
    ASSERT_NE(code, grpc::StatusCode::UNAVAILABLE) << "the server went away";
    ++codes[code];
    ++runs;
    if (code == grpc::StatusCode::OK && runs % 64 == 0)
      corpus.push_back(in);  // keep some that parse
    // A fuzzed DeletePool may take the pool (and fuzzed CreatePools the
    // room for it): put it back when it can be, to keep reaching the data
    // handlers.
    if (!pools_->Find("p").ok()) CreatePool("p");
  }
  // Still serving, correctly.
  grpc::ClientContext ctx;
  v1::StatusReply status;
  ASSERT_TRUE(stub_->GetStatus(&ctx, v1::StatusRequest(), &status).ok());
  std::string summary;
  for (const auto& [code, n] : codes)
    summary += " " + std::to_string(code) + ":" + std::to_string(n);
  RecordProperty("executions", static_cast<int>(runs));
  std::printf(
      "control fuzz: %zu corpus inputs replayed, %zu executions in %lld s, status codes%s\n",
      replayed, runs, static_cast<long long>(budget.count()), summary.c_str());
  EXPECT_GT(runs, 100u);
}

}  // namespace
}  // namespace tokenmem::control
