// The agent's remote data path end to end over UCX on loopback: a real
// RemoteServer over real pools, driven by RemoteConnection and by a raw
// UCX client that sends what a well-behaved client never would.
#include "remote/remote_server.h"

#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <future>
#include <thread>

#include "tokenmem/common/testing/temp_dir.h"
#include "tokenmem/transport/address.h"
#include "tokenmem/transport/remote_connection.h"
#include "tokenmem/transport/ucx_runtime.h"

namespace tokenmem::remote {
namespace {

using transport::Op;
using transport::Piece;
using transport::RemoteConnection;
using transport::Reply;
using transport::Request;

constexpr uint64_t kBlock = 1 << 20;

std::vector<std::byte> Pattern(size_t n, uint8_t seed) {
  std::vector<std::byte> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = std::byte(static_cast<uint8_t>(seed + i * 31 + (i >> 12)));
  return v;
}

// A client that sends raw frames: for the bad-input cases.
class RawClient {
 public:
  explicit RawClient(const std::string& address) {
    rt_ = std::move(transport::UcxRuntime::Create({.name = "raw-client"})).value();
    ucp_am_handler_param_t hp{};
    hp.field_mask = UCP_AM_HANDLER_PARAM_FIELD_ID | UCP_AM_HANDLER_PARAM_FIELD_CB |
                    UCP_AM_HANDLER_PARAM_FIELD_ARG | UCP_AM_HANDLER_PARAM_FIELD_FLAGS;
    hp.id = transport::kReplyAm;
    hp.flags = UCP_AM_FLAG_WHOLE_MSG;
    hp.cb = &RawClient::OnReply;
    hp.arg = this;
    EXPECT_EQ(ucp_worker_set_am_recv_handler(rt_->worker(), &hp), UCS_OK);
    auto addr = transport::ResolveAddress(address).value();
    ucp_ep_params_t ep{};
    ep.field_mask = UCP_EP_PARAM_FIELD_FLAGS | UCP_EP_PARAM_FIELD_SOCK_ADDR |
                    UCP_EP_PARAM_FIELD_ERR_HANDLER | UCP_EP_PARAM_FIELD_ERR_HANDLING_MODE;
    ep.flags = UCP_EP_PARAMS_FLAGS_CLIENT_SERVER;
    ep.sockaddr.addr = addr.get();
    ep.sockaddr.addrlen = addr.length;
    ep.err_mode = UCP_ERR_HANDLING_MODE_PEER;
    ep.err_handler.cb = [](void* arg, ucp_ep_h, ucs_status_t) {
      static_cast<RawClient*>(arg)->broken_ = true;
    };
    ep.err_handler.arg = this;
    EXPECT_EQ(ucp_ep_create(rt_->worker(), &ep, &ep_), UCS_OK);
  }
  ~RawClient() {
    if (ep_ != nullptr) Close();
  }

  // Sends one AM; returns once UCX has taken the buffers (or failed).
  void Send(const std::vector<std::byte>& header, const std::vector<std::byte>& payload,
            bool force_rndv = false) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_REPLY | (force_rndv ? UCP_AM_SEND_FLAG_RNDV : 0);
    void* req = ucp_am_send_nbx(ep_, transport::kRequestAm, header.data(), header.size(),
                                payload.empty() ? nullptr : payload.data(), payload.size(), &p);
    (void)transport::WaitRequest(*rt_, req, std::chrono::seconds(5), "send");
  }
  void SendNoWait(const std::vector<std::byte>& header, const std::vector<std::byte>& payload) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_RNDV;
    void* req = ucp_am_send_nbx(ep_, transport::kRequestAm, header.data(), header.size(),
                                payload.data(), payload.size(), &p);
    for (int i = 0; i < 50; ++i) ucp_worker_progress(rt_->worker());
    if (req != nullptr && !UCS_PTR_IS_ERR(req)) {
      ucp_request_cancel(rt_->worker(), req);
      pending_ = req;
    }
  }
  // Starts a rendezvous send and drives UCX only until `arrived` says the
  // agent has the request: the agent then waits for bytes that never come.
  void SendAndStall(const std::vector<std::byte>& header, const std::vector<std::byte>& payload,
                    const std::function<bool()>& arrived) {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_AM_SEND_FLAG_REPLY | UCP_AM_SEND_FLAG_RNDV;
    void* req = ucp_am_send_nbx(ep_, transport::kRequestAm, header.data(), header.size(),
                                payload.data(), payload.size(), &p);
    if (req != nullptr && !UCS_PTR_IS_ERR(req)) pending_ = req;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!arrived() && std::chrono::steady_clock::now() < deadline) {
      ucp_worker_progress(rt_->worker());
    }
  }
  // Waits for the next reply, or for the connection to break.
  std::optional<Reply> Next(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    rt_->ProgressUntil([&] { return !replies_.empty() || broken_; }, timeout);
    if (replies_.empty()) return std::nullopt;
    Reply r = replies_.front();
    replies_.erase(replies_.begin());
    return r;
  }
  bool WaitBroken(std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
    rt_->ProgressUntil([&] { return broken_; }, timeout);
    return broken_;
  }
  void Close() {
    ucp_request_param_t p{};
    p.op_attr_mask = UCP_OP_ATTR_FIELD_FLAGS;
    p.flags = UCP_EP_CLOSE_FLAG_FORCE;
    void* req = ucp_ep_close_nbx(ep_, &p);
    ep_ = nullptr;
    (void)transport::WaitRequest(*rt_, req, std::chrono::seconds(2), "close");
    if (pending_ != nullptr) {
      rt_->ProgressUntil([&] { return ucp_request_check_status(pending_) != UCS_INPROGRESS; },
                         std::chrono::seconds(2));
      ucp_request_free(pending_);
      pending_ = nullptr;
    }
  }

 private:
  static ucs_status_t OnReply(void* arg, const void* header, size_t length, void*, size_t,
                              const ucp_am_recv_param_t*) {
    auto* self = static_cast<RawClient*>(arg);
    auto r = transport::DecodeReply({static_cast<const std::byte*>(header), length});
    if (r.ok()) self->replies_.push_back(*r);
    return UCS_OK;
  }
  std::unique_ptr<transport::UcxRuntime> rt_;
  ucp_ep_h ep_ = nullptr;
  void* pending_ = nullptr;
  bool broken_ = false;
  std::vector<Reply> replies_;
};

class RemoteServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 * kBlock};
    auto manager = pool::PoolManager::Open(options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    pools_ = std::move(manager).value();
    pool::PoolSpec spec;
    spec.name = "kv";
    spec.block_size = kBlock;
    spec.capacity.dram = 32 * kBlock;
    ASSERT_TRUE(pools_->Create(spec).ok());
    spec.name = "other";
    spec.capacity.dram = 8 * kBlock;
    ASSERT_TRUE(pools_->Create(spec).ok());
    lease_ = Lease(16 * kBlock, {"kv"}, false);
    HandlerOptions handler{.pools = pools_.get(),
                           .leases = &leases_,
                           .node_name = "node-a",
                           .cluster_secret = "cluster-secret"};
    auto server =
        RemoteServer::Start({.listen = "127.0.0.1:0", .max_batch_bytes = 8 * kBlock}, handler);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  pool::CreatedLease Lease(uint64_t quota, std::vector<std::string> pools, bool read_only) {
    pool::LeaseOptions o;
    o.quota_bytes = quota;
    o.pools = std::move(pools);
    o.read_only = read_only;
    return leases_.Create(o).value();
  }

  Result<std::shared_ptr<RemoteConnection>> Connect(const pool::CreatedLease& lease) {
    return RemoteConnection::Connect({.address = server_->address(),
                                      .lease_id = lease.account->id(),
                                      .lease_secret = lease.secret,
                                      .timeout = std::chrono::seconds(5)});
  }

  // Presents lease_ on a raw connection; true when the agent accepted it.
  bool Hello(RawClient& raw) {
    raw.Send(*transport::EncodeRequest(Request{.op = Op::kHello,
                                               .id = 1,
                                               .lease_id = lease_.account->id(),
                                               .lease_secret = lease_.secret}),
             {});
    auto r = raw.Next();
    return r.has_value() && r->status == StatusCode::kOk;
  }

  // Replaces the server by one with these options (limits reported to counters_).
  void Restart(RemoteServerOptions options) {
    server_.reset();
    options.listen = "127.0.0.1:0";
    options.limits = &counters_;
    auto server = RemoteServer::Start(options, {.pools = pools_.get(),
                                                .leases = &leases_,
                                                .node_name = "node-a",
                                                .cluster_secret = "cluster-secret"});
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  static uint32_t Attach(RemoteConnection& c, const std::string& pool) {
    auto r = c.Call(Request{.op = Op::kAttach, .pool_name = pool});
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    return r.ok() ? r->pool : 0;
  }

  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  pool::CreatedLease lease_;
  limits::LimitCounters counters_;
  std::unique_ptr<RemoteServer> server_;
};

TEST_F(RemoteServerTest, PutGetExistsLookupDelete) {
  auto conn = Connect(lease_);
  ASSERT_TRUE(conn.ok()) << conn.status().ToString();
  EXPECT_EQ((*conn)->peer_node(), "node-a");
  uint32_t pool = Attach(**conn, "kv");
  ASSERT_NE(pool, 0u);

  // Three blocks of different sizes, the middle one sent in two pieces.
  auto a = Pattern(kBlock, 1), b = Pattern(64 * 1024, 2), c = Pattern(4096, 3);
  Request put{.op = Op::kPut, .pool = pool};
  put.puts = {{{1, 1}, static_cast<uint32_t>(a.size())},
              {{2, 2}, static_cast<uint32_t>(b.size())},
              {{3, 3}, static_cast<uint32_t>(c.size())}};
  std::vector<Piece> payload = {{a.data(), a.size()},
                                {b.data(), 1000},
                                {b.data() + 1000, b.size() - 1000},
                                {c.data(), c.size()}};
  auto put_reply = (*conn)->Call(put, payload);
  ASSERT_TRUE(put_reply.ok()) << put_reply.status().ToString();
  for (const auto& item : put_reply->items) EXPECT_EQ(item.code, StatusCode::kOk);

  // Get them back, plus a miss, into scattered destinations.
  std::vector<std::byte> out_a(kBlock), out_b1(5000), out_b2(kBlock), out_c(4096), out_miss(4096);
  Request get{.op = Op::kGet, .pool = pool};
  get.gets = {{{1, 1}, kBlock}, {{9, 9}, 4096}, {{2, 2}, 5000 + kBlock}, {{3, 3}, 4096}};
  std::vector<Piece> da = {{out_a.data(), out_a.size()}};
  std::vector<Piece> dm = {{out_miss.data(), out_miss.size()}};
  std::vector<Piece> db = {{out_b1.data(), out_b1.size()}, {out_b2.data(), out_b2.size()}};
  std::vector<Piece> dc = {{out_c.data(), out_c.size()}};
  std::vector<std::span<const Piece>> dests = {da, dm, db, dc};
  auto got = (*conn)->Call(get, {}, dests);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->items.size(), 4u);
  EXPECT_EQ(got->items[0].code, StatusCode::kOk);
  EXPECT_EQ(got->items[1].code, StatusCode::kNotFound);
  EXPECT_EQ(got->items[2].length, b.size());
  EXPECT_EQ(out_a, a);
  EXPECT_EQ(0, std::memcmp(out_b1.data(), b.data(), 5000));
  EXPECT_EQ(0, std::memcmp(out_b2.data(), b.data() + 5000, b.size() - 5000));
  EXPECT_EQ(0, std::memcmp(out_c.data(), c.data(), c.size()));

  Request exists{.op = Op::kExists, .pool = pool, .keys = {{1, 1}, {4, 4}}};
  auto ex = (*conn)->Call(exists);
  ASSERT_TRUE(ex.ok());
  EXPECT_EQ(ex->items[0].code, StatusCode::kOk);
  EXPECT_EQ(ex->items[1].code, StatusCode::kNotFound);

  Request lookup{.op = Op::kLookupPrefix, .pool = pool, .keys = {{1, 1}, {2, 2}, {4, 4}, {3, 3}}};
  EXPECT_EQ((*conn)->Call(lookup)->matched, 2u);

  Request del{.op = Op::kDelete, .pool = pool, .keys = {{1, 1}, {1, 1}}};
  auto deleted = (*conn)->Call(del);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->items[0].code, StatusCode::kOk);
  EXPECT_EQ(deleted->items[1].code, StatusCode::kNotFound);
}

TEST_F(RemoteServerTest, TooSmallDestinationIsAnItemErrorWithTheLength) {
  auto conn = Connect(lease_).value();
  uint32_t pool = Attach(*conn, "kv");
  auto a = Pattern(8192, 4);
  Request put{.op = Op::kPut, .pool = pool, .puts = {{{1, 1}, 8192}}};
  std::vector<Piece> payload = {{a.data(), a.size()}};
  ASSERT_TRUE(conn->Call(put, payload).ok());
  std::vector<std::byte> small(4096, std::byte{0x5a});
  std::vector<Piece> d = {{small.data(), small.size()}};
  std::vector<std::span<const Piece>> dests = {d};
  auto got = conn->Call(Request{.op = Op::kGet, .pool = pool, .gets = {{{1, 1}, 4096}}}, {}, dests);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->items[0].code, StatusCode::kInvalidArgument);
  EXPECT_EQ(got->items[0].length, 8192u);
  EXPECT_EQ(small[0], std::byte{0x5a});  // untouched
}

TEST_F(RemoteServerTest, ManyRequestsInFlightFromManyThreads) {
  // 8 threads x 3 keys: 24 blocks, within the pool's 32 and the lease's quota.
  auto conn = Connect(Lease(32 * kBlock, {"kv"}, false)).value();
  uint32_t pool = Attach(*conn, "kv");
  std::vector<std::thread> threads;
  std::atomic<int> bad{0};
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 20; ++i) {
        auto data = Pattern(256 * 1024, static_cast<uint8_t>(t * 40 + i));
        BlockKey key{static_cast<uint64_t>(t), static_cast<uint64_t>(i % 3)};
        std::vector<Piece> payload = {{data.data(), data.size()}};
        auto put = conn->Call(
            Request{
                .op = Op::kPut, .pool = pool, .puts = {{key, static_cast<uint32_t>(data.size())}}},
            payload);
        if (!put.ok() || put->items[0].code != StatusCode::kOk) {
          bad++;
          continue;
        }
        std::vector<std::byte> out(kBlock);
        std::vector<Piece> d = {{out.data(), out.size()}};
        std::vector<std::span<const Piece>> dests = {d};
        auto got =
            conn->Call(Request{.op = Op::kGet, .pool = pool, .gets = {{key, kBlock}}}, {}, dests);
        if (!got.ok() || got->items[0].length != data.size() ||
            std::memcmp(out.data(), data.data(), data.size()) != 0) {
          bad++;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST_F(RemoteServerTest, PutsAreReceivedStraightIntoPoolSlots) {
  auto conn = Connect(lease_).value();
  uint32_t pool = Attach(*conn, "kv");
  // Three blocks of different lengths in one batch, large enough for UCX's
  // rendezvous; then one of them replaced by a single put.
  const std::vector<uint32_t> lengths = {kBlock, 300000, 4096};
  std::vector<std::vector<std::byte>> blocks;
  std::vector<Piece> payload;
  Request put{.op = Op::kPut, .pool = pool};
  for (size_t i = 0; i < lengths.size(); ++i) {
    blocks.push_back(Pattern(lengths[i], static_cast<uint8_t>(11 * i + 3)));
    payload.push_back({blocks.back().data(), blocks.back().size()});
    put.puts.push_back({{9, i}, lengths[i]});
  }
  auto stored = conn->Call(put, payload);
  ASSERT_TRUE(stored.ok()) << stored.status().ToString();
  for (const auto& item : stored->items) EXPECT_EQ(item.code, StatusCode::kOk);
  blocks[0] = Pattern(kBlock, 200);
  std::vector<Piece> again = {{blocks[0].data(), kBlock}};
  auto replaced =
      conn->Call(Request{.op = Op::kPut, .pool = pool, .puts = {{{9, 0}, kBlock}}}, again);
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_EQ(replaced->items[0].code, StatusCode::kOk);
  EXPECT_EQ(server_->stats().put_blocks_in_place.load(), 4u);
  EXPECT_EQ(server_->stats().put_blocks_buffered.load(), 0u);
  // One block's charge each, the replaced one refunded.
  EXPECT_EQ(lease_.account->used_bytes(), 3 * kBlock);

  for (size_t i = 0; i < lengths.size(); ++i) {
    std::vector<std::byte> out(kBlock);
    std::vector<Piece> d = {{out.data(), out.size()}};
    std::vector<std::span<const Piece>> dests = {d};
    auto got =
        conn->Call(Request{.op = Op::kGet, .pool = pool, .gets = {{{9, i}, kBlock}}}, {}, dests);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    ASSERT_EQ(got->items[0].length, lengths[i]);
    EXPECT_EQ(std::memcmp(out.data(), blocks[i].data(), lengths[i]), 0) << "block " << i;
  }
}

TEST_F(RemoteServerTest, PoolsAdmitOnlyLeasesOfTheirNamespaces) {
  pool::PoolSpec spec{.name = "team", .block_size = kBlock, .capacity = {.dram = 2 * kBlock}};
  spec.allowed_namespaces = {"team-a"};
  ASSERT_TRUE(pools_->Create(spec).ok());
  auto attach = [&](pool::LeaseOptions options) {
    auto lease = leases_.Create(std::move(options)).value();
    auto conn = Connect(lease).value();
    return conn->Call(Request{.op = Op::kAttach, .pool_name = "team"}).status().code();
  };
  EXPECT_EQ(attach({.quota_bytes = kBlock, .namespace_name = "team-a"}), StatusCode::kOk);
  EXPECT_EQ(attach({.quota_bytes = kBlock, .namespace_name = "team-b"}),
            StatusCode::kPermissionDenied);
  EXPECT_EQ(attach({.quota_bytes = kBlock}), StatusCode::kPermissionDenied);
  EXPECT_EQ(attach({.quota_bytes = kBlock, .namespace_pending = true}), StatusCode::kUnavailable);
  // Once bound, the pending lease gets in.
  auto pending = leases_.Create({.quota_bytes = kBlock, .namespace_pending = true}).value();
  ASSERT_TRUE(leases_.Bind(pending.account->id(), "team-a").ok());
  auto conn = Connect(pending).value();
  EXPECT_TRUE(conn->Call(Request{.op = Op::kAttach, .pool_name = "team"}).ok());
}

TEST_F(RemoteServerTest, LeasesAreCheckedBeforeAnyData) {
  pool::CreatedLease wrong = lease_;
  wrong.secret = "not-the-secret";
  auto refused = Connect(wrong);
  EXPECT_EQ(refused.status().code(), StatusCode::kPermissionDenied);
  auto unknown = RemoteConnection::Connect(
      {.address = server_->address(), .lease_id = "nope", .lease_secret = "x"});
  EXPECT_EQ(unknown.status().code(), StatusCode::kNotFound);

  // A lease limited to "kv" cannot attach "other".
  auto conn = Connect(lease_).value();
  auto other = conn->Call(Request{.op = Op::kAttach, .pool_name = "other"});
  EXPECT_EQ(other.status().code(), StatusCode::kPermissionDenied);
  // A handle never attached is refused.
  auto stray = conn->Call(Request{.op = Op::kExists, .pool = 7, .keys = {{1, 1}}});
  EXPECT_EQ(stray.status().code(), StatusCode::kInvalidArgument);

  // A read-only lease reads but cannot write.
  auto ro = Lease(kBlock, {}, true);
  auto ro_conn = Connect(ro).value();
  uint32_t pool = Attach(*ro_conn, "kv");
  auto data = Pattern(4096, 9);
  std::vector<Piece> payload = {{data.data(), data.size()}};
  auto put =
      ro_conn->Call(Request{.op = Op::kPut, .pool = pool, .puts = {{{1, 1}, 4096}}}, payload);
  EXPECT_EQ(put.status().code(), StatusCode::kPermissionDenied);

  // The cluster secret admits peers, to cluster pools only.
  auto peer = RemoteConnection::Connect(
      {.address = server_->address(), .lease_id = "@peer", .lease_secret = "cluster-secret"});
  ASSERT_TRUE(peer.ok()) << peer.status().ToString();
  EXPECT_EQ((*peer)->Call(Request{.op = Op::kAttach, .pool_name = "kv"}).status().code(),
            StatusCode::kPermissionDenied);
  auto bad_peer = RemoteConnection::Connect(
      {.address = server_->address(), .lease_id = "@peer", .lease_secret = "guess"});
  EXPECT_EQ(bad_peer.status().code(), StatusCode::kPermissionDenied);
}

TEST_F(RemoteServerTest, QuotaHoldsAsOnTheLocalPath) {
  auto small = Lease(2 * kBlock, {"kv"}, false);
  auto conn = Connect(small).value();
  uint32_t pool = Attach(*conn, "kv");
  auto data = Pattern(kBlock, 1);
  std::vector<Piece> payload = {
      {data.data(), data.size()}, {data.data(), data.size()}, {data.data(), data.size()}};
  auto put = conn->Call(Request{.op = Op::kPut,
                                .pool = pool,
                                .puts = {{{1, 1}, kBlock}, {{2, 2}, kBlock}, {{3, 3}, kBlock}}},
                        payload);
  ASSERT_TRUE(put.ok());
  EXPECT_EQ(put->items[0].code, StatusCode::kOk);
  EXPECT_EQ(put->items[1].code, StatusCode::kOk);
  EXPECT_EQ(put->items[2].code, StatusCode::kResourceExhausted);
  // A batch over the quota cannot be reserved whole: it was buffered and
  // answered item by item.
  EXPECT_EQ(server_->stats().put_blocks_buffered.load(), 3u);
}

TEST_F(RemoteServerTest, BadFramesCloseOnlyTheirConnection) {
  auto good = Connect(lease_).value();
  uint32_t pool = Attach(*good, "kv");

  {  // garbage header
    RawClient raw(server_->address());
    raw.Send(std::vector<std::byte>(40, std::byte{0x41}), {});
    auto r = raw.Next();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, StatusCode::kInvalidArgument);
    EXPECT_NE(r->message.find("magic"), std::string::npos);
    EXPECT_TRUE(raw.WaitBroken());
  }
  {  // data before HELLO
    RawClient raw(server_->address());
    auto header =
        transport::EncodeRequest(Request{.op = Op::kExists, .id = 3, .pool = 1, .keys = {{1, 1}}});
    raw.Send(*header, {});
    auto r = raw.Next();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, StatusCode::kPermissionDenied);
    EXPECT_TRUE(raw.WaitBroken());
  }
  {  // a payload that does not match its items, and an oversized one
    RawClient raw(server_->address());
    ASSERT_TRUE(Hello(raw));
    auto header = transport::EncodeRequest(
        Request{.op = Op::kPut, .id = 2, .pool = 1, .puts = {{{1, 1}, 10}}});
    raw.Send(*header, std::vector<std::byte>(20));
    auto r = raw.Next();
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, StatusCode::kInvalidArgument);
    EXPECT_TRUE(raw.WaitBroken());
  }
  {
    RawClient raw(server_->address());
    ASSERT_TRUE(Hello(raw));
    std::vector<std::byte> big(9 * kBlock);
    Request put{.op = Op::kPut, .id = 2, .pool = 1};
    for (int i = 0; i < 9; ++i) put.puts.push_back({{1, static_cast<uint64_t>(i)}, kBlock});
    raw.Send(*transport::EncodeRequest(put), big, true);
    auto r = raw.Next();
    ASSERT_TRUE(r.has_value());
    EXPECT_NE(r->message.find("over the limit"), std::string::npos);
  }
  const uint64_t charged = lease_.account->used_bytes();
  {  // a client that vanishes in the middle of a large PUT
    RawClient raw(server_->address());
    ASSERT_TRUE(Hello(raw));
    std::vector<std::byte> big(8 * kBlock);
    Request put{.op = Op::kPut, .id = 2, .pool = 1};
    for (int i = 0; i < 8; ++i) put.puts.push_back({{2, static_cast<uint64_t>(i)}, kBlock});
    raw.SendNoWait(*transport::EncodeRequest(put), big);
    raw.Close();
  }
  {  // a client that vanishes after the agent reserved slots for its blocks
    RawClient raw(server_->address());
    ASSERT_TRUE(Hello(raw));
    raw.Send(*transport::EncodeRequest(Request{.op = Op::kAttach, .id = 2, .pool_name = "kv"}), {});
    auto attached = raw.Next();
    ASSERT_TRUE(attached.has_value() && attached->status == StatusCode::kOk);
    std::vector<std::byte> big(4 * kBlock);
    Request put{.op = Op::kPut, .id = 3, .pool = attached->pool};
    for (int i = 0; i < 4; ++i) put.puts.push_back({{3, static_cast<uint64_t>(i)}, kBlock});
    const uint64_t before = server_->stats().put_blocks_in_place.load();
    raw.SendAndStall(*transport::EncodeRequest(put), big,
                     [&] { return server_->stats().put_blocks_in_place.load() != before; });
    EXPECT_EQ(server_->stats().put_blocks_in_place.load(), before + 4);
    EXPECT_EQ(lease_.account->used_bytes(), charged + 4 * kBlock);  // reserved and charged
    raw.Close();
  }
  // Slots reserved for the vanished clients' blocks go back, with their charge.
  for (int i = 0; i < 500 && lease_.account->used_bytes() != charged; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(lease_.account->used_bytes(), charged);
  // The well-behaved connection was never disturbed.
  auto data = Pattern(4096, 7);
  std::vector<Piece> payload = {{data.data(), data.size()}};
  auto put = good->Call(Request{.op = Op::kPut, .pool = pool, .puts = {{{5, 5}, 4096}}}, payload);
  ASSERT_TRUE(put.ok()) << put.status().ToString();
  EXPECT_EQ(put->items[0].code, StatusCode::kOk);
  EXPECT_GE(server_->stats().protocol_errors.load(), 3u);
}

TEST_F(RemoteServerTest, ServerGoneGivesUnavailable) {
  auto conn = Connect(lease_).value();
  uint32_t pool = Attach(*conn, "kv");
  server_.reset();
  auto r = conn->Call(Request{.op = Op::kExists, .pool = pool, .keys = {{1, 1}}});
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(conn->connected());
  auto none = RemoteConnection::Connect({.address = "127.0.0.1:1",
                                         .lease_id = "x",
                                         .lease_secret = "y",
                                         .timeout = std::chrono::seconds(2)});
  EXPECT_EQ(none.status().code(), StatusCode::kUnavailable);
}

TEST_F(RemoteServerTest, SilentConnectionsAreClosedAtTheHelloDeadline) {
  Restart({.max_batch_bytes = 8 * kBlock, .hello_timeout = std::chrono::milliseconds(200)});
  std::vector<std::unique_ptr<RawClient>> silent;
  for (int i = 0; i < 4; ++i) silent.push_back(std::make_unique<RawClient>(server_->address()));
  for (auto& raw : silent) {
    auto r = raw->Next(std::chrono::seconds(3));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(r->status, StatusCode::kFailedPrecondition) << r->message;
    EXPECT_TRUE(raw->WaitBroken(std::chrono::seconds(3)));
  }
  EXPECT_EQ(counters_.count(limits::Limit::kRemoteHelloTimeout), 4u);
  // A client that says HELLO at once is served, and stays after the deadline.
  auto conn = Connect(lease_).value();
  uint32_t pool = Attach(*conn, "kv");
  std::this_thread::sleep_for(std::chrono::milliseconds(400));
  auto found = conn->Call(Request{.op = Op::kExists, .pool = pool, .keys = {{1, 1}}});
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(found->status, StatusCode::kOk);
}

TEST_F(RemoteServerTest, ConnectionsPerAddressAreBounded) {
  Restart({.max_batch_bytes = 8 * kBlock, .max_connections_per_peer = 2});
  auto a = Connect(lease_);
  auto b = Connect(lease_);
  ASSERT_TRUE(a.ok() && b.ok());
  auto c = Connect(lease_);
  EXPECT_FALSE(c.ok());
  EXPECT_GE(counters_.count(limits::Limit::kRemotePeerConnections), 1u);
  // The two admitted connections keep working.
  EXPECT_NE(Attach(**a, "kv"), 0u);
  EXPECT_NE(Attach(**b, "kv"), 0u);
}

TEST_F(RemoteServerTest, PutOverAUsedUpQuotaIsRefusedBeforeItsPayload) {
  Restart({.max_batch_bytes = 8 * kBlock});
  auto small = Lease(kBlock, {"kv"}, false);
  auto conn = Connect(small).value();
  uint32_t pool = Attach(*conn, "kv");
  auto data = Pattern(kBlock, 3);
  std::vector<Piece> one = {{data.data(), data.size()}};
  auto first = conn->Call(Request{.op = Op::kPut, .pool = pool, .puts = {{{1, 1}, kBlock}}}, one);
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->items[0].code, StatusCode::kOk);
  const uint64_t buffered = server_->stats().put_blocks_buffered.load();
  const uint64_t in_place = server_->stats().put_blocks_in_place.load();
  for (uint64_t k = 2; k < 6; ++k) {
    auto over = conn->Call(Request{.op = Op::kPut, .pool = pool, .puts = {{{k, k}, kBlock}}}, one);
    ASSERT_FALSE(over.ok());
    EXPECT_EQ(over.status().code(), StatusCode::kResourceExhausted) << over.status().ToString();
  }
  EXPECT_EQ(counters_.count(limits::Limit::kRemoteQuota), 4u);
  // Nothing was buffered or reserved for them, and the connection is alive.
  EXPECT_EQ(server_->stats().put_blocks_buffered.load(), buffered);
  EXPECT_EQ(server_->stats().put_blocks_in_place.load(), in_place);
  auto found = conn->Call(Request{.op = Op::kExists, .pool = pool, .keys = {{1, 1}}});
  ASSERT_TRUE(found.ok());
  EXPECT_EQ(found->items[0].code, StatusCode::kOk);
}

}  // namespace
}  // namespace tokenmem::remote
