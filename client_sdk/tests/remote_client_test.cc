// tokenmem::Client / Pool over the remote path, against the agent's own
// remote server (agent/remote) run in this process on 127.0.0.1, with
// pools in DRAM only.
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "fake_agent.h"
#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "remote/remote_server.h"
#include "tokenmem/client.h"
#include "tokenmem/tokenmem.h"

namespace tokenmem {
namespace {

constexpr uint64_t kSmallBlock = 4096;
constexpr uint64_t kBigBlock = 1 << 20;

BlockKey K(uint64_t i) { return BlockKey{0x5eed0000 + i, i * 0x9e3779b97f4a7c15ull}; }

// Bytes that differ per key and per position.
std::vector<std::byte> Pattern(uint64_t seed, size_t n) {
  std::vector<std::byte> out(n);
  uint64_t x = seed * 0x2545f4914f6cdd1dull + 1;
  for (size_t i = 0; i < n; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    out[i] = static_cast<std::byte>(x);
  }
  return out;
}

std::span<const std::byte> Bytes(const std::vector<std::byte>& v) { return {v.data(), v.size()}; }

class RemoteClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 256ull << 20};
    auto manager = pool::PoolManager::Open(options);
    ASSERT_TRUE(manager.ok()) << manager.status().ToString();
    pools_ = std::move(manager).value();
    ASSERT_TRUE(pools_->Create(Spec("small", kSmallBlock, 48ull << 20)).ok());
    ASSERT_TRUE(pools_->Create(Spec("big", kBigBlock, 80ull << 20)).ok());
    ASSERT_TRUE(pools_->Create(Spec("tiny", kSmallBlock, 64 * kSmallBlock)).ok());
    lease_ = MakeLease(1ull << 30, false);
    StartServer(48ull << 20);
  }

  static pool::PoolSpec Spec(const std::string& name, uint64_t block, uint64_t dram) {
    pool::PoolSpec spec;
    spec.name = name;
    spec.block_size = block;
    spec.capacity = {.dram = dram};
    return spec;
  }

  pool::CreatedLease MakeLease(uint64_t quota, bool read_only) {
    pool::LeaseOptions options;
    options.quota_bytes = quota;
    options.read_only = read_only;
    auto lease = leases_.Create(options);
    EXPECT_TRUE(lease.ok()) << lease.status().ToString();
    return std::move(lease).value();
  }

  void StartServer(uint64_t max_batch_bytes) {
    remote::RemoteServerOptions options;
    options.listen = "127.0.0.1:0";
    options.max_batch_bytes = max_batch_bytes;
    remote::HandlerOptions handler;
    handler.pools = pools_.get();
    handler.leases = &leases_;
    handler.node_name = "node-b";
    auto server = remote::RemoteServer::Start(options, handler);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  ClientOptions Options(const pool::CreatedLease& lease) const {
    ClientOptions options;
    options.agent_address = server_->address();
    options.lease_id = lease.account->id();
    options.lease_secret = lease.secret;
    options.timeout = std::chrono::seconds(5);
    return options;
  }

  std::unique_ptr<Client> Connect(const pool::CreatedLease& lease) {
    auto client = Client::Connect(Options(lease));
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? std::move(client).value() : nullptr;
  }

  std::shared_ptr<Pool> Attach(Client& client, const std::string& name) {
    auto pool = client.Attach(name);
    EXPECT_TRUE(pool.ok()) << pool.status().ToString();
    return pool.ok() ? std::move(pool).value() : nullptr;
  }

  // Members are destroyed in reverse: the server goes before the pools.
  pool::LeaseTable leases_;
  std::unique_ptr<pool::PoolManager> pools_;
  pool::CreatedLease lease_;
  std::unique_ptr<remote::RemoteServer> server_;
};

TEST_F(RemoteClientTest, PutGetRoundTripOf64KiBAnd1MiBBlocks) {
  auto client = Connect(lease_);
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->remote());
  EXPECT_TRUE(client->connected());
  auto pool = Attach(*client, "big");
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->remote());
  EXPECT_EQ(pool->block_size(), kBigBlock);
  EXPECT_FALSE(pool->read_only());
  EXPECT_EQ(client->Attach("big").value(), pool);  // the same Pool while it lives

  for (size_t size : {size_t{64} << 10, size_t{1} << 20}) {
    const auto data = Pattern(size, size);
    ASSERT_TRUE(pool->Put(K(size), Bytes(data)).ok());
    std::vector<std::byte> out(kBigBlock, std::byte{0xee});
    auto n = pool->Get(K(size), out);
    ASSERT_TRUE(n.ok()) << n.status().ToString();
    ASSERT_EQ(*n, size);
    EXPECT_EQ(std::memcmp(out.data(), data.data(), size), 0);
    if (size < out.size()) {
      EXPECT_EQ(out[size], std::byte{0xee});  // the rest is untouched
    }
  }
  // Replacing a block.
  const auto again = Pattern(99, 1000);
  ASSERT_TRUE(pool->Put(K(1 << 20), Bytes(again)).ok());
  std::vector<std::byte> out(kBigBlock);
  ASSERT_EQ(pool->Get(K(1 << 20), out).value(), 1000u);
  EXPECT_EQ(std::memcmp(out.data(), again.data(), 1000), 0);
}

TEST_F(RemoteClientTest, ScatterGatherBatchesOfMoreThan4096ItemsAreSplit) {
  auto client = Connect(lease_);
  ASSERT_NE(client, nullptr);
  auto pool = Attach(*client, "small");
  ASSERT_NE(pool, nullptr);
  constexpr size_t kItems = 5000;
  // Each block is three pieces of one source buffer, of uneven sizes.
  const auto source = Pattern(7, kItems * kSmallBlock);
  std::vector<IoVec> put_pieces(kItems * 3);
  std::vector<BlockIo> puts(kItems);
  for (size_t i = 0; i < kItems; ++i) {
    auto* base = const_cast<std::byte*>(source.data()) + i * kSmallBlock;
    put_pieces[3 * i] = {base, 1000};
    put_pieces[3 * i + 1] = {base + 1000, 2000};
    put_pieces[3 * i + 2] = {base + 3000, kSmallBlock - 3000};
    puts[i] = {K(i), std::span<const IoVec>(&put_pieces[3 * i], 3)};
  }
  std::vector<IoResult> put_results(kItems);
  Status s = pool->PutMany(puts, put_results);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const IoResult& r : put_results) {
    ASSERT_EQ(r.code, StatusCode::kOk);
    ASSERT_EQ(r.length, kSmallBlock);
  }

  // Read back with a different split, and two keys that were never put.
  std::vector<std::byte> dest(kItems * kSmallBlock + 2 * kSmallBlock, std::byte{0});
  std::vector<IoVec> get_pieces(2 * (kItems + 2));
  std::vector<BlockIo> gets(kItems + 2);
  for (size_t i = 0; i < kItems + 2; ++i) {
    std::byte* base = dest.data() + i * kSmallBlock;
    get_pieces[2 * i] = {base, 100};
    get_pieces[2 * i + 1] = {base + 100, kSmallBlock - 100};
    gets[i] = {i < kItems ? K(i) : K(1'000'000 + i), std::span<const IoVec>(&get_pieces[2 * i], 2)};
  }
  std::vector<IoResult> get_results(gets.size());
  s = pool->GetMany(gets, get_results);
  ASSERT_TRUE(s.ok()) << s.ToString();  // misses are answers, not failures
  for (size_t i = 0; i < kItems; ++i) {
    ASSERT_EQ(get_results[i].code, StatusCode::kOk) << i;
    ASSERT_EQ(get_results[i].length, kSmallBlock);
  }
  EXPECT_EQ(get_results[kItems].code, StatusCode::kNotFound);
  EXPECT_EQ(get_results[kItems + 1].code, StatusCode::kNotFound);
  EXPECT_EQ(std::memcmp(dest.data(), source.data(), source.size()), 0);

  // A chain longer than one request's keys.
  std::vector<BlockKey> chain;
  for (size_t i = 0; i < kItems; ++i) chain.push_back(K(i));
  EXPECT_EQ(pool->LookupPrefix(chain), kItems);
  chain.push_back(K(999'999));
  chain.push_back(K(0));
  EXPECT_EQ(pool->LookupPrefix(chain), kItems);
  chain.erase(chain.begin() + 4500);
  chain.insert(chain.begin() + 4500, K(999'998));
  EXPECT_EQ(pool->LookupPrefix(chain), 4500u);

  std::vector<StatusCode> codes(kItems);
  s = pool->RemoveMany(std::span<const BlockKey>(chain.data(), kItems), codes);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(codes[0], StatusCode::kOk);
  EXPECT_EQ(codes[4500], StatusCode::kNotFound);  // K(999'998) was never put
  EXPECT_EQ(codes[kItems - 1], StatusCode::kOk);
  EXPECT_FALSE(pool->Contains(K(0)));
}

TEST_F(RemoteClientTest, PutBatchesAreSplitByBytes) {
  // The agent refuses payloads over 33 MiB: 40 MiB must go in two requests.
  server_.reset();
  StartServer(33ull << 20);
  auto client = Connect(lease_);
  ASSERT_NE(client, nullptr);
  auto pool = Attach(*client, "big");
  ASSERT_NE(pool, nullptr);
  constexpr size_t kItems = 40;
  const auto source = Pattern(11, kItems * kBigBlock);
  std::vector<IoVec> pieces(kItems);
  std::vector<BlockIo> items(kItems);
  for (size_t i = 0; i < kItems; ++i) {
    pieces[i] = {const_cast<std::byte*>(source.data()) + i * kBigBlock, kBigBlock};
    items[i] = {K(i), std::span<const IoVec>(&pieces[i], 1)};
  }
  std::vector<IoResult> results(kItems);
  Status s = pool->PutMany(items, results);
  ASSERT_TRUE(s.ok()) << s.ToString();
  ASSERT_TRUE(client->connected());

  std::vector<std::byte> dest(kItems * kBigBlock);
  for (size_t i = 0; i < kItems; ++i) pieces[i].data = dest.data() + i * kBigBlock;
  s = pool->GetMany(items, results);
  ASSERT_TRUE(s.ok()) << s.ToString();
  for (const IoResult& r : results) EXPECT_EQ(r.length, kBigBlock);
  EXPECT_EQ(std::memcmp(dest.data(), source.data(), dest.size()), 0);
}

TEST_F(RemoteClientTest, MissesAndTooSmallDestinations) {
  auto client = Connect(lease_);
  ASSERT_NE(client, nullptr);
  auto pool = Attach(*client, "small");
  ASSERT_NE(pool, nullptr);
  std::vector<std::byte> out(kSmallBlock);
  EXPECT_EQ(pool->Get(K(1), out).status().code(), StatusCode::kNotFound);

  const auto data = Pattern(3, 3000);
  ASSERT_TRUE(pool->Put(K(2), Bytes(data)).ok());
  std::vector<std::byte> small(1000, std::byte{0x11});
  auto n = pool->Get(K(2), small);
  EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);

  // Two pieces of 1000 bytes: too small, the length needed comes back and
  // nothing is written; the items around it are served.
  ASSERT_TRUE(pool->Put(K(3), Bytes(Pattern(4, 500))).ok());
  std::vector<std::byte> a(1000, std::byte{0x11}), b(1000, std::byte{0x11}), c(kSmallBlock);
  const IoVec two[] = {{a.data(), a.size()}, {b.data(), b.size()}};
  const IoVec one[] = {{c.data(), c.size()}};
  const BlockIo items[] = {{K(1), one}, {K(2), two}, {K(3), one}};
  IoResult results[3];
  Status s = pool->GetMany(items, results);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("3000"), std::string::npos) << s.ToString();
  EXPECT_EQ(results[0].code, StatusCode::kNotFound);
  EXPECT_EQ(results[1].code, StatusCode::kInvalidArgument);
  EXPECT_EQ(results[1].length, 3000u);
  EXPECT_EQ(results[2].code, StatusCode::kOk);
  EXPECT_EQ(results[2].length, 500u);
  EXPECT_EQ(a, std::vector<std::byte>(1000, std::byte{0x11}));
  EXPECT_EQ(b, std::vector<std::byte>(1000, std::byte{0x11}));

  // Larger than the block size: refused here, nothing sent.
  const auto big = Pattern(5, kSmallBlock + 1);
  EXPECT_EQ(pool->Put(K(4), Bytes(big)).code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(pool->Contains(K(4)));
  // Mismatched result spans.
  IoResult too_few[1];
  EXPECT_EQ(pool->GetMany(items, too_few).code(), StatusCode::kInvalidArgument);
}

TEST_F(RemoteClientTest, ContainsLookupPrefixRemoveAndPinRefused) {
  auto client = Connect(lease_);
  ASSERT_NE(client, nullptr);
  auto pool = Attach(*client, "small");
  ASSERT_NE(pool, nullptr);
  std::vector<BlockKey> chain;
  for (uint64_t i = 0; i < 8; ++i) {
    chain.push_back(K(100 + i));
    if (i != 5) {
      ASSERT_TRUE(pool->Put(K(100 + i), Bytes(Pattern(i, 64))).ok());
    }
  }
  EXPECT_EQ(pool->LookupPrefix(chain), 5u);
  EXPECT_EQ(pool->LookupPrefix({}), 0u);
  EXPECT_TRUE(pool->Contains(K(100)));
  EXPECT_FALSE(pool->Contains(K(105)));

  EXPECT_TRUE(pool->Remove(K(100)).ok());
  EXPECT_FALSE(pool->Contains(K(100)));
  EXPECT_EQ(pool->Remove(K(100)).code(), StatusCode::kNotFound);
  StatusCode codes[2];
  const BlockKey keys[] = {K(101), K(105)};
  EXPECT_TRUE(pool->RemoveMany(keys, codes).ok());
  EXPECT_EQ(codes[0], StatusCode::kOk);
  EXPECT_EQ(codes[1], StatusCode::kNotFound);

  Status pin = pool->Pin(K(102));
  EXPECT_EQ(pin.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(pin.message().find("remote"), std::string::npos);
  EXPECT_EQ(pool->Unpin(K(102)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->PinMany(keys, codes).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(codes[0], StatusCode::kFailedPrecondition);
  EXPECT_EQ(pool->UnpinMany(keys, codes).code(), StatusCode::kFailedPrecondition);
}

TEST_F(RemoteClientTest, ReadOnlyLeaseReadsButIsRefusedWrites) {
  auto writer = Connect(lease_);
  ASSERT_NE(writer, nullptr);
  ASSERT_TRUE(Attach(*writer, "small")->Put(K(1), Bytes(Pattern(1, 100))).ok());

  auto reader = Connect(MakeLease(1 << 20, true));
  ASSERT_NE(reader, nullptr);
  auto pool = Attach(*reader, "small");
  ASSERT_NE(pool, nullptr);
  EXPECT_TRUE(pool->read_only());
  std::vector<std::byte> out(kSmallBlock);
  EXPECT_EQ(pool->Get(K(1), out).value(), 100u);
  EXPECT_EQ(pool->Put(K(2), Bytes(Pattern(2, 100))).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(pool->Remove(K(1)).code(), StatusCode::kPermissionDenied);
  StatusCode code;
  const BlockKey key = K(1);
  EXPECT_EQ(pool->RemoveMany({&key, 1}, {&code, 1}).code(), StatusCode::kPermissionDenied);
  EXPECT_EQ(code, StatusCode::kPermissionDenied);
  EXPECT_TRUE(pool->Contains(K(1)));
}

TEST_F(RemoteClientTest, AttachWaitsForTheLeasesNamespaceToBeBound) {
  pool::PoolSpec spec = Spec("team", kSmallBlock, 16 * kSmallBlock);
  spec.allowed_namespaces = {"team-a"};
  ASSERT_TRUE(pools_->Create(spec).ok());
  auto pending = leases_.Create({.quota_bytes = 1 << 20, .namespace_pending = true}).value();
  auto client = Connect(pending);
  ASSERT_NE(client, nullptr);
  std::thread binder([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    EXPECT_TRUE(leases_.Bind(pending.account->id(), "team-a").ok());
  });
  const auto started = std::chrono::steady_clock::now();
  auto pool = client->Attach("team");
  binder.join();
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(250));
  EXPECT_TRUE((*pool)->Put(K(1), Bytes(Pattern(1, 100))).ok());

  // Another namespace is refused at once; a lease still pending at the
  // timeout gets kUnavailable.
  auto other =
      Connect(leases_.Create({.quota_bytes = 1 << 20, .namespace_name = "team-b"}).value());
  EXPECT_EQ(other->Attach("team").status().code(), StatusCode::kPermissionDenied);
  auto waiting = leases_.Create({.quota_bytes = 1 << 20, .namespace_pending = true}).value();
  ClientOptions options = Options(waiting);
  options.timeout = std::chrono::milliseconds(400);
  auto impatient = Client::Connect(options).value();
  EXPECT_EQ(impatient->Attach("team").status().code(), StatusCode::kUnavailable);
}

TEST_F(RemoteClientTest, ConnectRefusals) {
  ClientOptions options = Options(lease_);
  options.lease_secret = "not-the-secret";
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kPermissionDenied);
  options = Options(lease_);
  options.lease_id = "no-such-lease";
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kNotFound);
  options = Options(lease_);
  options.agent_address.clear();
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kInvalidArgument);
  options = Options(lease_);
  options.lease_secret.clear();
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kInvalidArgument);
  options = Options(lease_);
  options.agent_address = "not an address";
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kInvalidArgument);

  auto client = Connect(lease_);
  ASSERT_NE(client, nullptr);
  EXPECT_EQ(client->Attach("no-such-pool").status().code(), StatusCode::kNotFound);
}

TEST_F(RemoteClientTest, QuotaExhaustion) {
  auto client = Connect(MakeLease(4 * kSmallBlock, false));
  ASSERT_NE(client, nullptr);
  auto pool = Attach(*client, "small");
  ASSERT_NE(pool, nullptr);
  const auto data = Pattern(1, 100);
  std::vector<IoVec> pieces(6, IoVec{const_cast<std::byte*>(data.data()), data.size()});
  std::vector<BlockIo> items;
  for (size_t i = 0; i < 6; ++i) items.push_back({K(i), std::span<const IoVec>(&pieces[i], 1)});
  std::vector<IoResult> results(6);
  Status s = pool->PutMany(items, results);
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(results[i].code, StatusCode::kOk) << i;
  }
  for (size_t i = 4; i < 6; ++i) {
    EXPECT_EQ(results[i].code, StatusCode::kResourceExhausted) << i;
    EXPECT_EQ(results[i].length, 0u);
  }
  EXPECT_EQ(pool->Put(K(9), Bytes(data)).code(), StatusCode::kResourceExhausted);
}

TEST_F(RemoteClientTest, ManyThreadsShareOneConnection) {
  auto client = Connect(lease_);
  ASSERT_NE(client, nullptr);
  auto pool = Attach(*client, "small");
  ASSERT_NE(pool, nullptr);
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (uint64_t i = 0; i < 50; ++i) {
        const uint64_t id = 10'000 * (t + 1) + i;
        const auto data = Pattern(id, 512 + i);
        if (!pool->Put(K(id), Bytes(data)).ok()) ++failures;
        std::vector<std::byte> out(kSmallBlock);
        auto n = pool->Get(K(id), out);
        if (!n.ok() || *n != data.size() || std::memcmp(out.data(), data.data(), *n) != 0) {
          ++failures;
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
}

TEST_F(RemoteClientTest, UnavailableAfterTheAgentGoes) {
  ClientOptions options = Options(lease_);
  options.timeout = std::chrono::milliseconds(1000);
  auto client = Client::Connect(options);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto pool = Attach(**client, "small");
  ASSERT_NE(pool, nullptr);
  ASSERT_TRUE(pool->Put(K(1), Bytes(Pattern(1, 10))).ok());
  server_.reset();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::byte> out(kSmallBlock);
  EXPECT_EQ(pool->Get(K(1), out).status().code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
  EXPECT_FALSE((*client)->connected());
  // The session stays over.
  EXPECT_EQ(pool->Put(K(2), Bytes(Pattern(2, 10))).code(), StatusCode::kUnavailable);
  EXPECT_FALSE(pool->Contains(K(1)));
  EXPECT_EQ((*client)->Attach("big").status().code(), StatusCode::kUnavailable);
}

TEST_F(RemoteClientTest, UnavailableWhenNoAgentListens) {
  ClientOptions options = Options(lease_);
  server_.reset();
  options.timeout = std::chrono::milliseconds(1000);
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(Client::Connect(options).status().code(), StatusCode::kUnavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(2500));
}

TEST_F(RemoteClientTest, TheCInterfaceConnectsRemotely) {
  tm_client* client = nullptr;
  ASSERT_EQ(tm_client_connect_remote(server_->address().c_str(), lease_.account->id().c_str(),
                                     lease_.secret.c_str(), 5000, &client),
            TM_OK)
      << tm_last_error();
  EXPECT_EQ(tm_client_is_remote(client), 1);
  EXPECT_EQ(tm_client_connected(client), 1);
  tm_pool* pool = nullptr;
  ASSERT_EQ(tm_pool_attach(client, "small", &pool), TM_OK) << tm_last_error();
  const tm_key key{7, 8};
  const char text[] = "over the network";
  ASSERT_EQ(tm_put(pool, &key, text, sizeof(text)), TM_OK) << tm_last_error();
  char out[64] = {};
  size_t len = 0;
  ASSERT_EQ(tm_get(pool, &key, out, sizeof(out), &len), TM_OK) << tm_last_error();
  EXPECT_EQ(len, sizeof(text));
  EXPECT_STREQ(out, text);
  int code = 0;
  EXPECT_EQ(tm_pin(pool, &key, 1, &code), TM_FAILED_PRECONDITION);
  EXPECT_EQ(code, TM_FAILED_PRECONDITION);
  tm_pool_close(pool);
  tm_client_close(client);

  EXPECT_EQ(tm_client_connect_remote(nullptr, "a", "b", 0, &client), TM_INVALID_ARGUMENT);
  EXPECT_EQ(tm_client_connect_remote("", "a", "b", 0, &client), TM_INVALID_ARGUMENT);
  EXPECT_EQ(tm_client_is_remote(nullptr), 0);
}

// FromEnv: the environment picks the path.
class RemoteEnvTest : public RemoteClientTest {
 protected:
  void SetUp() override {
    RemoteClientTest::SetUp();
    Clear();
    ::setenv(kEnvLease, (lease_.account->id() + ":" + lease_.secret).c_str(), 1);
  }
  void TearDown() override { Clear(); }
  static void Clear() {
    for (const char* v : {kEnvAgentSocket, kEnvAgentAddress, kEnvRemoteEndpoints, kEnvLease,
                          kEnvDefaultPool, kEnvQuotaBytes}) {
      ::unsetenv(v);
    }
  }
};

TEST_F(RemoteEnvTest, OnlyTheAddressGivesTheRemotePath) {
  ::setenv(kEnvAgentAddress, server_->address().c_str(), 1);
  ::setenv(kEnvDefaultPool, "small", 1);
  auto options = Client::OptionsFromEnv();
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->agent_address, server_->address());
  EXPECT_TRUE(options->socket_path.empty());
  auto client = Client::FromEnv();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE((*client)->remote());
  auto pool = (*client)->AttachDefault();
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_TRUE((*pool)->remote());
}

TEST_F(RemoteEnvTest, TheDevicePluginsEndpointListIsUsedWithoutAnAddress) {
  const std::string endpoints = server_->address() + ",10.0.0.2:7471";
  ::setenv(kEnvRemoteEndpoints, endpoints.c_str(), 1);
  auto options = Client::OptionsFromEnv();
  ::unsetenv(kEnvRemoteEndpoints);
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  EXPECT_EQ(options->agent_address, server_->address());
}

TEST_F(RemoteEnvTest, AMissingOrDeadSocketFallsBackToTheAddress) {
  ::setenv(kEnvAgentAddress, server_->address().c_str(), 1);
  ::setenv(kEnvAgentSocket, "/nonexistent/tokenmem/data.sock", 1);
  auto client = Client::FromEnv();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE((*client)->remote());

  // A socket file with nobody listening: connecting is refused.
  char dir[] = "/tmp/tokenmem-remote-env-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  const std::string path = std::string(dir) + "/data.sock";
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ::close(fd);  // bound, never listening
  ::setenv(kEnvAgentSocket, path.c_str(), 1);
  client = Client::FromEnv();
  ::unlink(path.c_str());
  ::rmdir(dir);
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_TRUE((*client)->remote());

  // Without an address the local error stands.
  ::unsetenv(kEnvAgentAddress);
  ::setenv(kEnvAgentSocket, "/nonexistent/tokenmem/data.sock", 1);
  EXPECT_EQ(Client::FromEnv().status().code(), StatusCode::kUnavailable);
}

TEST_F(RemoteEnvTest, ALiveLocalSocketIsPreferred) {
  char dir[] = "/tmp/tokenmem-remote-env-XXXXXX";
  ASSERT_NE(::mkdtemp(dir), nullptr);
  testing::FakeAgentOptions fake;
  fake.socket_path = std::string(dir) + "/data.sock";
  auto agent = std::make_unique<testing::FakeAgent>(fake);
  ASSERT_TRUE(agent->Start().ok());
  ::setenv(kEnvAgentSocket, fake.socket_path.c_str(), 1);
  ::setenv(kEnvAgentAddress, server_->address().c_str(), 1);
  // The fake agent's lease; the remote agent does not know it.
  ::setenv(kEnvLease, (fake.lease_id + ":" + fake.lease_secret).c_str(), 1);
  auto client = Client::FromEnv();
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  EXPECT_FALSE((*client)->remote());
  auto pool = (*client)->Attach("p1");
  ASSERT_TRUE(pool.ok()) << pool.status().ToString();
  EXPECT_FALSE((*pool)->remote());
  client->reset();
  pool->reset();
  agent.reset();
  ::rmdir(dir);
}

TEST_F(RemoteEnvTest, NeitherVariableIsAnError) {
  auto options = Client::OptionsFromEnv();
  EXPECT_EQ(options.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(options.status().message().find(kEnvAgentAddress), std::string::npos);
  EXPECT_NE(options.status().message().find(kEnvAgentSocket), std::string::npos);
}

}  // namespace
}  // namespace tokenmem
