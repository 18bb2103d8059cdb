#include "control/control_service.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "control/control_server.h"
#include "control/proto_convert.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::control {
namespace {

class ControlServiceTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kMaxPins = 4;
  static constexpr uint64_t kMaxReply = 1 << 20;  // 255 blocks of 4 KiB with framing

  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 1 << 20, .nvme = 4 << 20};
    options.nvme_root = dir_ / "nvme";
    options.nvme_segment_bytes = 1 << 20;
    options.max_pinned_blocks_per_lease = kMaxPins;
    options.limits = &limits_;
    std::filesystem::create_directory(options.nvme_root);
    auto pools = pool::PoolManager::Open(options);
    ASSERT_TRUE(pools.ok());
    pools_ = std::move(pools).value();
    info_.version = "test";
    info_.max_reply_bytes = kMaxReply;
    info_.limits = &limits_;
    ControlServerOptions server;
    server.socket_path = dir_ / "agent.sock";
    server.tcp_listen = "127.0.0.1:0";
    server.admin_token = "sesame";
    auto started = ControlServer::Start(server, pools_.get(), &leases_, &info_);
    ASSERT_TRUE(started.ok()) << started.status().ToString();
    server_ = std::move(started).value();
    stub_ = v1::Control::NewStub(grpc::CreateChannel("unix:" + server.socket_path.string(),
                                                     grpc::InsecureChannelCredentials()));
    tcp_stub_ = v1::Control::NewStub(grpc::CreateChannel(
        "127.0.0.1:" + std::to_string(server_->tcp_port()), grpc::InsecureChannelCredentials()));

    grpc::ClientContext ctx;
    v1::CreatePoolRequest req;
    req.mutable_spec()->set_name("p");
    req.mutable_spec()->set_block_size(4096);
    auto* cap = req.mutable_spec()->add_capacity();
    cap->set_tier(v1::TIER_KIND_DRAM);
    cap->set_bytes(64 * 4096);
    v1::PoolInfo info;
    ASSERT_TRUE(stub_->CreatePool(&ctx, req, &info).ok());
    lease_ = CreateLease(8 * 4096);
  }

  v1::LeaseInfo CreateLease(uint64_t quota) {
    grpc::ClientContext ctx;
    v1::CreateLeaseRequest req;
    req.set_quota_bytes(quota);
    v1::LeaseInfo lease;
    EXPECT_TRUE(stub_->CreateLease(&ctx, req, &lease).ok());
    return lease;
  }

  grpc::Status Put(const v1::LeaseInfo& lease, const std::string& pool,
                   const std::vector<std::pair<BlockKey, std::string>>& blocks,
                   v1::PutReply* reply) {
    grpc::ClientContext ctx;
    v1::PutRequest req;
    req.mutable_lease()->set_id(lease.id());
    req.mutable_lease()->set_secret(lease.secret());
    req.set_pool(pool);
    for (const auto& [key, data] : blocks) {
      auto* b = req.add_blocks();
      b->set_key(KeyToBytes(key));
      b->set_data(data);
    }
    return stub_->Put(&ctx, req, reply);
  }

  v1::GetRequest GetOf(const v1::LeaseInfo& lease, uint64_t keys) {
    v1::GetRequest get;
    get.mutable_lease()->set_id(lease.id());
    get.mutable_lease()->set_secret(lease.secret());
    get.set_pool("p");
    for (uint64_t i = 0; i < keys; ++i) get.add_keys(KeyToBytes({7, i}));
    return get;
  }

  limits::LimitCounters limits_;  // outlives the server
  testing::TempDir dir_;
  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  AgentInfo info_;
  std::unique_ptr<ControlServer> server_;
  std::unique_ptr<v1::Control::Stub> stub_;
  std::unique_ptr<v1::Control::Stub> tcp_stub_;
  v1::LeaseInfo lease_;
};

TEST_F(ControlServiceTest, BatchedPutGetLookupDelete) {
  v1::PutReply put;
  ASSERT_TRUE(Put(lease_, "p", {{{0, 1}, "one"}, {{0, 2}, std::string(4096, 'x')}}, &put).ok());
  ASSERT_EQ(put.results_size(), 2);
  EXPECT_EQ(put.results(0).code(), 0);
  EXPECT_EQ(put.results(1).tier(), v1::TIER_KIND_DRAM);

  grpc::ClientContext ctx;
  v1::GetRequest get;
  get.mutable_lease()->set_id(lease_.id());
  get.mutable_lease()->set_secret(lease_.secret());
  get.set_pool("p");
  get.add_keys(KeyToBytes({0, 1}));
  get.add_keys(KeyToBytes({0, 3}));
  get.add_keys(KeyToBytes({0, 2}));
  v1::GetReply got;
  ASSERT_TRUE(stub_->Get(&ctx, get, &got).ok());
  ASSERT_EQ(got.blocks_size(), 3);
  EXPECT_EQ(got.blocks(0).data(), "one");
  EXPECT_FALSE(got.blocks(1).found());
  EXPECT_EQ(got.blocks(2).data(), std::string(4096, 'x'));

  grpc::ClientContext ctx2;
  v1::LookupPrefixRequest lookup;
  *lookup.mutable_lease() = get.lease();
  lookup.set_pool("p");
  lookup.add_keys(KeyToBytes({0, 1}));
  lookup.add_keys(KeyToBytes({0, 2}));
  lookup.add_keys(KeyToBytes({0, 3}));
  v1::LookupPrefixReply matched;
  ASSERT_TRUE(stub_->LookupPrefix(&ctx2, lookup, &matched).ok());
  EXPECT_EQ(matched.matched(), 2u);

  grpc::ClientContext ctx3;
  v1::DeleteRequest del;
  *del.mutable_lease() = get.lease();
  del.set_pool("p");
  del.add_keys(KeyToBytes({0, 1}));
  del.add_keys(KeyToBytes({0, 9}));
  v1::DeleteReply deleted;
  ASSERT_TRUE(stub_->Delete(&ctx3, del, &deleted).ok());
  EXPECT_EQ(deleted.deleted(), 1u);
}

TEST_F(ControlServiceTest, BadInputIsRejectedAndChangesNothing) {
  v1::PutReply put;
  // Malformed key: the whole batch fails, nothing stored.
  grpc::ClientContext ctx;
  v1::PutRequest req;
  req.mutable_lease()->set_id(lease_.id());
  req.mutable_lease()->set_secret(lease_.secret());
  req.set_pool("p");
  auto* good = req.add_blocks();
  good->set_key(KeyToBytes({1, 1}));
  good->set_data("fine");
  auto* bad = req.add_blocks();
  bad->set_key("short");
  bad->set_data("x");
  auto status = stub_->Put(&ctx, req, &put);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("key 1"), std::string::npos);
  EXPECT_EQ(pools_->Find("p").value()->Snapshot().usage[0].blocks, 0u);

  EXPECT_EQ(Put(lease_, "p", {{{1, 2}, std::string(4097, 'x')}}, &put).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Put(lease_, "Bad_Pool", {{{1, 2}, "x"}}, &put).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(Put(lease_, "nope", {{{1, 2}, "x"}}, &put).error_code(), grpc::StatusCode::NOT_FOUND);
  v1::LeaseInfo wrong = lease_;
  wrong.set_secret("00000000000000000000000000000000");
  EXPECT_EQ(Put(wrong, "p", {{{1, 2}, "x"}}, &put).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(pools_->Find("p").value()->Snapshot().usage[0].blocks, 0u);

  grpc::ClientContext pool_ctx;
  v1::CreatePoolRequest create;
  create.mutable_spec()->set_name("q");
  create.mutable_spec()->set_block_size(1000);
  v1::PoolInfo info;
  auto created = stub_->CreatePool(&pool_ctx, create, &info);
  EXPECT_EQ(created.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(created.error_message().find("block_size"), std::string::npos);
  EXPECT_EQ(pools_->List().size(), 1u);
}

TEST_F(ControlServiceTest, BatchBeyondQuotaStoresNothing) {
  std::vector<std::pair<BlockKey, std::string>> blocks;
  for (uint64_t i = 0; i < 9; ++i) blocks.push_back({{2, i}, "data"});
  v1::PutReply put;
  auto status = Put(lease_, "p", blocks, &put);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(status.error_message().find("quota"), std::string::npos);
  EXPECT_EQ(pools_->Find("p").value()->Snapshot().usage[0].blocks, 0u);
  blocks.pop_back();
  ASSERT_TRUE(Put(lease_, "p", blocks, &put).ok());
  EXPECT_EQ(pools_->Find("p").value()->Snapshot().usage[0].blocks, 8u);
}

TEST_F(ControlServiceTest, TcpNeedsTheAdminToken) {
  v1::StatusReply reply;
  {
    grpc::ClientContext ctx;
    EXPECT_EQ(tcp_stub_->GetStatus(&ctx, {}, &reply).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer wrong");
    EXPECT_EQ(tcp_stub_->GetStatus(&ctx, {}, &reply).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer sesame");
    ASSERT_TRUE(tcp_stub_->GetStatus(&ctx, {}, &reply).ok());
    EXPECT_EQ(reply.version(), "test");
    EXPECT_EQ(reply.pools(), 1u);
  }
}

TEST_F(ControlServiceTest, SecondServerOnTheSameSocketIsRefused) {
  ControlServerOptions server;
  server.socket_path = dir_ / "agent.sock";
  auto second = ControlServer::Start(server, pools_.get(), &leases_, &info_);
  EXPECT_EQ(second.status().code(), StatusCode::kFailedPrecondition);
}

TEST_F(ControlServiceTest, NamespacedLeasesAndPools) {
  {  // a pool for team-a only
    grpc::ClientContext ctx;
    v1::CreatePoolRequest req;
    req.mutable_spec()->set_name("team");
    req.mutable_spec()->set_block_size(4096);
    auto* cap = req.mutable_spec()->add_capacity();
    cap->set_tier(v1::TIER_KIND_DRAM);
    cap->set_bytes(8 * 4096);
    req.mutable_spec()->add_allowed_namespaces("team-a");
    v1::PoolInfo info;
    ASSERT_TRUE(stub_->CreatePool(&ctx, req, &info).ok());
    ASSERT_EQ(info.spec().allowed_namespaces_size(), 1);
    EXPECT_EQ(info.spec().allowed_namespaces(0), "team-a");
  }
  v1::LeaseInfo lease;
  {
    grpc::ClientContext ctx;
    v1::CreateLeaseRequest req;
    req.set_quota_bytes(4 * 4096);
    req.set_namespace_pending(true);
    ASSERT_TRUE(stub_->CreateLease(&ctx, req, &lease).ok());
    EXPECT_TRUE(lease.namespace_pending());
  }
  v1::PutReply put;
  EXPECT_EQ(Put(lease, "team", {{{1, 1}, "x"}}, &put).error_code(), grpc::StatusCode::UNAVAILABLE);
  auto bind = [&](const std::string& ns, v1::LeaseInfo* out) {
    grpc::ClientContext ctx;
    v1::BindLeaseRequest req;
    req.set_id(lease.id());
    req.set_namespace_(ns);
    return stub_->BindLease(&ctx, req, out).error_code();
  };
  v1::LeaseInfo bound;
  ASSERT_EQ(bind("team-a", &bound), grpc::StatusCode::OK);
  EXPECT_EQ(bound.namespace_(), "team-a");
  EXPECT_FALSE(bound.namespace_pending());
  EXPECT_TRUE(bound.secret().empty());
  EXPECT_EQ(bind("team-b", &bound), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_TRUE(Put(lease, "team", {{{1, 1}, "x"}}, &put).ok());
  // Another namespace is refused; the lease list shows the namespace.
  v1::LeaseInfo other;
  {
    grpc::ClientContext ctx;
    v1::CreateLeaseRequest req;
    req.set_quota_bytes(4096);
    req.set_namespace_("team-b");
    ASSERT_TRUE(stub_->CreateLease(&ctx, req, &other).ok());
  }
  EXPECT_EQ(Put(other, "team", {{{2, 2}, "y"}}, &put).error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  grpc::ClientContext ctx;
  v1::ListLeasesReply list;
  ASSERT_TRUE(stub_->ListLeases(&ctx, {}, &list).ok());
  int seen = 0;
  for (const auto& l : list.leases()) {
    if (l.id() == lease.id()) seen += l.namespace_() == "team-a";
    if (l.id() == other.id()) seen += l.namespace_() == "team-b";
  }
  EXPECT_EQ(seen, 2);
}

TEST_F(ControlServiceTest, ListLeasesNeverShowsSecrets) {
  grpc::ClientContext ctx;
  v1::ListLeasesReply reply;
  ASSERT_TRUE(stub_->ListLeases(&ctx, {}, &reply).ok());
  ASSERT_EQ(reply.leases_size(), 1);
  EXPECT_TRUE(reply.leases(0).secret().empty());
  EXPECT_EQ(reply.leases(0).quota_bytes(), 8u * 4096);
}

}  // namespace
}  // namespace tokenmem::control

namespace tokenmem::control {
namespace {

TEST_F(ControlServiceTest, AGetWhoseReplyCouldPassTheMessageLimitIsRefusedUpFront) {
  v1::PutReply put;
  ASSERT_TRUE(Put(lease_, "p", {{{7, 0}, std::string(4096, 'a')}}, &put).ok());

  // 255 keys of 4 KiB blocks fit in 1 MiB with their framing; 256 do not.
  grpc::ClientContext ok_ctx;
  v1::GetReply got;
  ASSERT_TRUE(stub_->Get(&ok_ctx, GetOf(lease_, 255), &got).ok());
  ASSERT_EQ(got.blocks_size(), 255);
  EXPECT_EQ(got.blocks(0).data(), std::string(4096, 'a'));
  EXPECT_FALSE(got.blocks(1).found());
  EXPECT_TRUE(got.blocks(1).data().empty());  // a miss carries no bytes
  EXPECT_EQ(limits_.count(limits::Limit::kRequestSize), 0u);

  grpc::ClientContext ctx;
  v1::GetReply refused;
  auto status = stub_->Get(&ctx, GetOf(lease_, 256), &refused);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("control.max_message_size"), std::string::npos)
      << status.error_message();
  EXPECT_NE(status.error_message().find("at most 255 keys"), std::string::npos)
      << status.error_message();
  EXPECT_EQ(refused.blocks_size(), 0);
  EXPECT_EQ(limits_.count(limits::Limit::kRequestSize), 1u);
}

TEST_F(ControlServiceTest, TooManyKeysAreRefusedBeforeAnyIsCopied) {
  grpc::ClientContext ctx;
  v1::GetReply got;
  auto status = stub_->Get(&ctx, GetOf(lease_, kMaxKeysPerCall + 1), &got);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("keys per call"), std::string::npos);

  std::vector<std::pair<BlockKey, std::string>> blocks;
  for (uint64_t i = 0; i <= kMaxKeysPerCall; ++i) blocks.push_back({{8, i}, ""});
  v1::PutReply put;
  status = Put(lease_, "p", blocks, &put);
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(status.error_message().find("keys per call"), std::string::npos);
  EXPECT_EQ(put.results_size(), 0);
  EXPECT_EQ(pools_->Find("p").value()->Snapshot().usage[0].blocks, 0u);
  EXPECT_EQ(limits_.count(limits::Limit::kRequestSize), 2u);

  // An oversized block is a request-size refusal too.
  EXPECT_EQ(Put(lease_, "p", {{{8, 0}, std::string(4097, 'x')}}, &put).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(limits_.count(limits::Limit::kRequestSize), 3u);
}

TEST_F(ControlServiceTest, PinsStopAtTheLeaseQuotaAndOnlyItsLeaseUnpins) {
  std::vector<std::pair<BlockKey, std::string>> blocks;
  for (uint64_t i = 0; i < 6; ++i) blocks.push_back({{9, i}, "data"});
  v1::PutReply put;
  ASSERT_TRUE(Put(lease_, "p", blocks, &put).ok());

  auto pin = [&](const v1::LeaseInfo& lease, uint64_t first, uint64_t count, bool on) {
    grpc::ClientContext ctx;
    v1::PinRequest req;
    req.mutable_lease()->set_id(lease.id());
    req.mutable_lease()->set_secret(lease.secret());
    req.set_pool("p");
    for (uint64_t i = first; i < first + count; ++i) req.add_keys(KeyToBytes({9, i}));
    v1::PinReply reply;
    return on ? stub_->Pin(&ctx, req, &reply) : stub_->Unpin(&ctx, req, &reply);
  };
  ASSERT_TRUE(pin(lease_, 0, kMaxPins, true).ok());
  auto over = pin(lease_, kMaxPins, 1, true);
  EXPECT_EQ(over.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(over.error_message().find("max_pinned_blocks_per_lease"), std::string::npos);
  EXPECT_EQ(limits_.count(limits::Limit::kPins), 1u);

  v1::LeaseInfo other = CreateLease(4096);
  EXPECT_EQ(pin(other, 0, 1, false).error_code(), grpc::StatusCode::PERMISSION_DENIED);
  ASSERT_TRUE(pin(lease_, 0, 1, false).ok());
  EXPECT_TRUE(pin(lease_, kMaxPins, 1, true).ok());

  // Releasing the lease gives its pins back, once the agent's hook is set.
  leases_.OnRelease([this](pool::LeaseAccount& a) { pools_->ReleasePinsOf(a); });
  grpc::ClientContext ctx;
  v1::ReleaseLeaseRequest release;
  release.set_id(lease_.id());
  v1::ReleaseLeaseReply released;
  ASSERT_TRUE(stub_->ReleaseLease(&ctx, release, &released).ok());
  EXPECT_EQ(pools_->Find("p").value()->Snapshot().usage[0].pinned_blocks, 0u);
}

}  // namespace
}  // namespace tokenmem::control
