#include "local/local_server.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <map>
#include <mutex>

#include "local/message_io.h"
#include "tokenmem/common/crc32c.h"
#include "tokenmem/common/testing/temp_dir.h"
#include "tokenmem/layout/shm_index.h"

namespace tokenmem::local {
namespace {

namespace L = layout;

// A bare protocol client, so the test sees exactly what travels.
class RawClient {
 public:
  explicit RawClient(const std::filesystem::path& path) {
    fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
  }
  ~RawClient() { ::close(fd_); }
  bool connected() const { return connected_; }
  int fd() const { return fd_; }

  // Sends and returns the reply's payload and fds.
  std::vector<std::byte> Call(uint16_t type, const std::vector<std::byte>& payload,
                              std::vector<int>* fds = nullptr) {
    EXPECT_TRUE(SendMessage(fd_, type, ++request_, payload).ok());
    std::vector<std::byte> buffer(sizeof(L::MessageHeader) + L::kMaxMessageBytes);
    iovec iov{buffer.data(), buffer.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 256)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    if (n <= 0) return {};
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        if (fds) {
          fds->push_back(fd);
        } else {
          ::close(fd);
        }
      }
    }
    L::MessageHeader h;
    std::memcpy(&h, buffer.data(), sizeof(h));
    EXPECT_EQ(h.type, type | L::kReply);
    EXPECT_EQ(h.request_id, request_);
    return {buffer.begin() + sizeof(h), buffer.begin() + n};
  }

 private:
  int fd_;
  bool connected_ = false;
  uint32_t request_ = 0;
};

template <typename T>
std::vector<std::byte> Bytes(const T& v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  return {p, p + sizeof(T)};
}

template <typename T>
T Read(const std::vector<std::byte>& b, size_t offset = 0) {
  T v{};
  if (b.size() >= offset + sizeof(T)) std::memcpy(&v, b.data() + offset, sizeof(T));
  return v;
}

int32_t Code(const std::vector<std::byte>& reply) {
  return reply.empty() ? -1 : Read<int32_t>(reply);
}

class LocalServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 << 20};
    auto pools = pool::PoolManager::Open(options);
    ASSERT_TRUE(pools.ok());
    pools_ = std::move(pools).value();
    ASSERT_TRUE(
        pools_->Create({.name = "a", .block_size = 4096, .capacity = {.dram = 64 * 4096}}).ok());
    ASSERT_TRUE(
        pools_->Create({.name = "b", .block_size = 4096, .capacity = {.dram = 64 * 4096}}).ok());
    auto server = LocalServer::Start(dir_ / "data.sock", 0660, pools_.get(), &leases_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
  }

  std::pair<std::string, std::string> Lease(pool::LeaseOptions options) {
    auto lease = leases_.Create(std::move(options));
    EXPECT_TRUE(lease.ok());
    return {lease->account->id(), lease->secret};
  }

  int32_t Hello(RawClient& c, const std::string& id, const std::string& secret) {
    L::HelloRequest req{};
    id.copy(req.lease_id, sizeof(req.lease_id));
    secret.copy(req.secret, sizeof(req.secret));
    return Code(c.Call(L::kHello, Bytes(req)));
  }

  std::vector<std::byte> Attach(RawClient& c, const std::string& pool, std::vector<int>* fds) {
    L::AttachRequest req{};
    pool.copy(req.pool, sizeof(req.pool));
    return c.Call(L::kAttach, Bytes(req), fds);
  }

  testing::TempDir dir_;
  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  std::unique_ptr<LocalServer> server_;
};

TEST_F(LocalServerTest, WrongSecretIsRefusedAndTheConnectionClosed) {
  auto [id, secret] = Lease({.quota_bytes = 1 << 20});
  RawClient c(dir_ / "data.sock");
  ASSERT_TRUE(c.connected());
  EXPECT_EQ(Hello(c, id, "0000"), static_cast<int32_t>(StatusCode::kPermissionDenied));
  char byte;
  EXPECT_EQ(::recv(c.fd(), &byte, 1, 0), 0);  // closed by the agent
}

TEST_F(LocalServerTest, RequestsBeforeHelloAndMalformedOnesEndTheSession) {
  RawClient c(dir_ / "data.sock");
  L::AttachRequest req{};
  EXPECT_EQ(Code(c.Call(L::kAttach, Bytes(req))),
            static_cast<int32_t>(StatusCode::kFailedPrecondition));
  auto [id, secret] = Lease({.quota_bytes = 1 << 20});
  RawClient d(dir_ / "data.sock");
  ASSERT_EQ(Hello(d, id, secret), 0);
  EXPECT_EQ(Code(d.Call(999, {})), static_cast<int32_t>(StatusCode::kInvalidArgument));
  // Others are unaffected.
  RawClient e(dir_ / "data.sock");
  EXPECT_EQ(Hello(e, id, secret), 0);
}

TEST_F(LocalServerTest, AttachReserveWriteCommitAndReadInPlace) {
  auto [id, secret] = Lease({.quota_bytes = 1 << 20});
  RawClient c(dir_ / "data.sock");
  ASSERT_EQ(Hello(c, id, secret), 0);
  std::vector<int> fds;
  auto attach = Attach(c, "a", &fds);
  ASSERT_EQ(Code(attach), 0);
  auto reply = Read<L::AttachReply>(attach);
  // Index, client area, the segments and (a writer's) staging segment.
  ASSERT_NE(reply.flags & L::kAttachStaging, 0u);
  ASSERT_EQ(fds.size(), 3u + reply.segment_count);
  const auto staging = Read<L::StagingInfo>(
      attach, sizeof(L::AttachReply) + reply.segment_count * sizeof(L::SegmentInfo));
  auto* stage = static_cast<std::byte*>(
      ::mmap(nullptr, staging.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds.back(), 0));
  ASSERT_NE(stage, MAP_FAILED);
  void* index = ::mmap(nullptr, reply.index_bytes, PROT_READ, MAP_SHARED, fds[0], 0);
  ASSERT_NE(index, MAP_FAILED);
  // The index is read-only for clients.
  EXPECT_EQ(::mmap(nullptr, reply.index_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0),
            MAP_FAILED);

  L::ReserveRequest reserve{reply.pool_id, 2};
  auto granted = c.Call(L::kReserve, Bytes(reserve));
  ASSERT_EQ(Code(granted), 0);
  ASSERT_EQ(Read<L::ReserveReply>(granted).count, 2u);
  auto g0 = Read<L::SlotGrant>(granted, sizeof(L::ReserveReply));
  auto g1 = Read<L::SlotGrant>(granted, sizeof(L::ReserveReply) + sizeof(L::SlotGrant));
  EXPECT_EQ(leases_.List()[0]->used_bytes(), 2u * 4096);

  // Segments may have appeared after attach: ask for them.
  L::SegmentsRequest segs{reply.pool_id, 0, 0, 0};
  std::vector<int> seg_fds;
  auto segments = c.Call(L::kSegments, Bytes(segs), &seg_fds);
  ASSERT_EQ(Code(segments), 0);
  ASSERT_GE(seg_fds.size(), 1u);
  auto info = Read<L::SegmentInfo>(segments, sizeof(L::SegmentsReply));
  // The pool's segments are sealed: only the agent writes them.
  EXPECT_EQ(::mmap(nullptr, info.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, seg_fds[0], 0),
            MAP_FAILED);
  auto* seg =
      static_cast<std::byte*>(::mmap(nullptr, info.bytes, PROT_READ, MAP_SHARED, seg_fds[0], 0));
  ASSERT_NE(seg, MAP_FAILED);
  const auto* header = static_cast<const L::IndexHeader*>(index);
  const uint64_t slot_bytes = header->tiers[0].slot_bytes;
  std::string data = "hello from the client";
  EXPECT_EQ(g0.tier, L::kStagingTier);  // grants name staging slots
  std::memcpy(stage + g0.slot * staging.slot_bytes, data.data(), data.size());

  std::vector<std::byte> commit = Bytes(L::CommitRequest{reply.pool_id, 2});
  auto good = Bytes(L::CommitItem{g0.reservation, 7, 8, static_cast<uint32_t>(data.size()),
                                  Crc32c(std::as_bytes(std::span(data)))});
  auto bad = Bytes(L::CommitItem{g1.reservation, 7, 9, 10, 12345});
  commit.insert(commit.end(), good.begin(), good.end());
  commit.insert(commit.end(), bad.begin(), bad.end());
  auto committed = c.Call(L::kCommit, commit);
  ASSERT_EQ(Code(committed), 0);
  EXPECT_EQ(Read<int32_t>(committed, sizeof(L::BatchReply)), 0);
  EXPECT_EQ(Read<int32_t>(committed, sizeof(L::BatchReply) + 4),
            static_cast<int32_t>(StatusCode::kCorruption));
  EXPECT_EQ(leases_.List()[0]->used_bytes(), 4096u);  // the failed item was refunded

  L::EntryView v{};
  ASSERT_EQ(L::FindEntry(index, 7, 8, &v), L::FindResult::kFound);
  std::string back(v.length, '\0');
  L::CopyFromSlot(back.data(), seg + v.slot * slot_bytes, v.length);
  EXPECT_TRUE(L::StillValid(index, v));
  EXPECT_EQ(back, data);
  EXPECT_EQ(L::FindEntry(index, 7, 9, &v), L::FindResult::kMissing);
  ::munmap(seg, info.bytes);
  ::munmap(stage, staging.bytes);
  ::munmap(index, reply.index_bytes);
  for (int fd : fds) ::close(fd);
  for (int fd : seg_fds) ::close(fd);
}

TEST_F(LocalServerTest, ReservationsOfADeadConnectionAreReclaimed) {
  auto [id, secret] = Lease({.quota_bytes = 1 << 20});
  {
    RawClient c(dir_ / "data.sock");
    ASSERT_EQ(Hello(c, id, secret), 0);
    std::vector<int> fds;
    auto attach = Attach(c, "a", &fds);
    for (int fd : fds) ::close(fd);
    L::ReserveRequest reserve{Read<L::AttachReply>(attach).pool_id, 10};
    ASSERT_EQ(Code(c.Call(L::kReserve, Bytes(reserve))), 0);
    EXPECT_EQ(leases_.List()[0]->used_bytes(), 10u * 4096);
  }
  for (int i = 0; i < 200 && leases_.List()[0]->used_bytes() != 0; ++i) ::usleep(10000);
  EXPECT_EQ(leases_.List()[0]->used_bytes(), 0u);
}

TEST_F(LocalServerTest, ReadOnlyLeaseGetsReadOnlySegmentsAndCannotWrite) {
  ASSERT_TRUE(pools_->Find("a").value()->Put({1, 1}, std::vector<std::byte>(10), nullptr).ok());
  auto [id, secret] = Lease({.quota_bytes = 1 << 20, .read_only = true});
  RawClient c(dir_ / "data.sock");
  ASSERT_EQ(Hello(c, id, secret), 0);
  std::vector<int> fds;
  auto attach = Attach(c, "a", &fds);
  ASSERT_EQ(Code(attach), 0);
  auto reply = Read<L::AttachReply>(attach);
  EXPECT_EQ(reply.flags, L::kAttachReadOnly);  // pool a is local
  ASSERT_GE(reply.segment_count, 1u);
  auto info = Read<L::SegmentInfo>(attach, sizeof(L::AttachReply));
  EXPECT_EQ(::mmap(nullptr, info.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds[2], 0), MAP_FAILED);
  void* ro = ::mmap(nullptr, info.bytes, PROT_READ, MAP_SHARED, fds[2], 0);
  EXPECT_NE(ro, MAP_FAILED);
  ::munmap(ro, info.bytes);
  L::ReserveRequest reserve{reply.pool_id, 1};
  EXPECT_EQ(Code(c.Call(L::kReserve, Bytes(reserve))),
            static_cast<int32_t>(StatusCode::kPermissionDenied));
  for (int fd : fds) ::close(fd);
}

TEST_F(LocalServerTest, LeaseLimitedToOnePoolCannotAttachAnother) {
  auto [id, secret] = Lease({.quota_bytes = 1 << 20, .pools = {"a"}});
  RawClient c(dir_ / "data.sock");
  ASSERT_EQ(Hello(c, id, secret), 0);
  std::vector<int> fds;
  EXPECT_EQ(Code(Attach(c, "b", &fds)), static_cast<int32_t>(StatusCode::kPermissionDenied));
  EXPECT_TRUE(fds.empty());
  EXPECT_EQ(Code(Attach(c, "a", &fds)), 0);
  for (int fd : fds) ::close(fd);
}

TEST_F(LocalServerTest, PoolsAdmitOnlyLeasesOfTheirNamespaces) {
  ASSERT_TRUE(pools_
                  ->Create({.name = "team",
                            .block_size = 4096,
                            .capacity = {.dram = 8 * 4096},
                            .allowed_namespaces = {"team-a"}})
                  .ok());
  auto attach_code = [&](pool::LeaseOptions options, const std::string& pool) {
    auto [id, secret] = Lease(std::move(options));
    RawClient c(dir_ / "data.sock");
    EXPECT_EQ(Hello(c, id, secret), 0);
    std::vector<int> fds;
    auto reply = Attach(c, pool, &fds);
    for (int fd : fds) ::close(fd);
    return Code(reply);
  };
  EXPECT_EQ(attach_code({.quota_bytes = 4096, .namespace_name = "team-a"}, "team"), 0);
  EXPECT_EQ(attach_code({.quota_bytes = 4096, .namespace_name = "team-b"}, "team"),
            static_cast<int32_t>(StatusCode::kPermissionDenied));
  EXPECT_EQ(attach_code({.quota_bytes = 4096, .namespace_pending = true}, "team"),
            static_cast<int32_t>(StatusCode::kUnavailable));
  EXPECT_EQ(attach_code({.quota_bytes = 4096, .namespace_name = "team-b"}, "a"), 0);  // open pool
}

TEST_F(LocalServerTest, QuotaIsEnforcedOnReserve) {
  auto [id, secret] = Lease({.quota_bytes = 3 * 4096});
  RawClient c(dir_ / "data.sock");
  ASSERT_EQ(Hello(c, id, secret), 0);
  std::vector<int> fds;
  auto attach = Attach(c, "a", &fds);
  for (int fd : fds) ::close(fd);
  L::ReserveRequest reserve{Read<L::AttachReply>(attach).pool_id, 4};
  EXPECT_EQ(Code(c.Call(L::kReserve, Bytes(reserve))),
            static_cast<int32_t>(StatusCode::kResourceExhausted));
  EXPECT_EQ(leases_.List()[0]->used_bytes(), 0u);
}

// Stands in for the cluster router: records what the local path hands it
// and serves "the owner's" blocks, storing a hit in the pool as the router
// does.
class FakeHooks : public remote::ClusterHooks {
 public:
  struct Stored {
    std::string pool;
    BlockKey key;
    std::string bytes;
  };

  void OnStored(const pool::Pool& pool, const BlockKey& key,
                std::span<const std::byte> data) override {
    std::lock_guard lock(mu_);
    stored_.push_back({pool.spec().name, key,
                       std::string(reinterpret_cast<const char*>(data.data()), data.size())});
  }

  void FetchFromOwners(pool::Pool& pool, std::span<OwnerFetch> fetches) override {
    for (OwnerFetch& f : fetches) {
      std::string bytes;
      {
        std::lock_guard lock(mu_);
        asked_.push_back(f.key);
        auto it = owner_.find({f.key.hi, f.key.lo});
        if (it == owner_.end()) {
          f.length = NotFound("the owner does not hold it");
          continue;
        }
        bytes = it->second;
      }
      if (f.out.size() < bytes.size()) {
        f.length = InvalidArgument("buffer too small");
        continue;
      }
      std::memcpy(f.out.data(), bytes.data(), bytes.size());
      (void)pool.Put(f.key, f.out.first(bytes.size()), nullptr);
      f.length = bytes.size();
    }
  }

  void OwnerHolds(const BlockKey& key, std::string bytes) {
    std::lock_guard lock(mu_);
    owner_[{key.hi, key.lo}] = std::move(bytes);
  }
  std::vector<Stored> stored() {
    std::lock_guard lock(mu_);
    return stored_;
  }
  std::vector<BlockKey> asked() {
    std::lock_guard lock(mu_);
    return asked_;
  }

 private:
  std::mutex mu_;
  std::vector<Stored> stored_;
  std::vector<BlockKey> asked_;
  std::map<std::pair<uint64_t, uint64_t>, std::string> owner_;
};

class LocalClusterTest : public LocalServerTest {
 protected:
  void SetUp() override {
    LocalServerTest::SetUp();
    ASSERT_TRUE(pools_
                    ->Create({.name = "c",
                              .block_size = 4096,
                              .capacity = {.dram = 64 * 4096},
                              .scope = pool::PoolScope::kCluster})
                    .ok());
    server_->SetCluster(&hooks_);
  }
  void TearDown() override {
    server_->Shutdown();  // before hooks_ goes
    TearDownStaging();
  }

  // A connection with pool `pool` attached; its AttachReply in *reply.
  std::unique_ptr<RawClient> Connect(const std::string& pool, L::AttachReply* reply) {
    auto [id, secret] = Lease({.quota_bytes = 1 << 20});
    auto c = std::make_unique<RawClient>(dir_ / "data.sock");
    EXPECT_EQ(Hello(*c, id, secret), 0);
    std::vector<int> fds;
    auto attach = Attach(*c, pool, &fds);
    EXPECT_EQ(Code(attach), 0);
    *reply = Read<L::AttachReply>(attach);
    if ((reply->flags & L::kAttachStaging) != 0 && !fds.empty()) {
      // Writes go through the connection's staging segment (the last fd).
      const auto info = Read<L::StagingInfo>(
          attach, sizeof(L::AttachReply) + reply->segment_count * sizeof(L::SegmentInfo));
      void* p = ::mmap(nullptr, info.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fds.back(), 0);
      EXPECT_NE(p, MAP_FAILED);
      staging_[c.get()] = {static_cast<std::byte*>(p), info};
    }
    for (int fd : fds) ::close(fd);
    return c;
  }
  void TearDownStaging() {
    for (auto& [client, st] : staging_) ::munmap(st.first, st.second.bytes);
    staging_.clear();
  }

  // Puts `data` under `key` as a client does (reserve, write the slot,
  // commit) and returns the commit's item code; a bad checksum on request.
  int32_t Put(RawClient& c, uint32_t pool_id, const BlockKey& key, const std::string& data,
              bool bad_checksum = false) {
    auto granted = c.Call(L::kReserve, Bytes(L::ReserveRequest{pool_id, 1}));
    if (Code(granted) != 0) return Code(granted);
    auto g = Read<L::SlotGrant>(granted, sizeof(L::ReserveReply));
    auto st = staging_.find(&c);
    EXPECT_NE(st, staging_.end());
    if (st == staging_.end()) return -1;
    std::memcpy(st->second.first + g.slot * st->second.second.slot_bytes, data.data(), data.size());
    std::vector<std::byte> commit = Bytes(L::CommitRequest{pool_id, 1});
    const uint32_t crc = Crc32c(std::as_bytes(std::span(data))) + (bad_checksum ? 1 : 0);
    auto item = Bytes(
        L::CommitItem{g.reservation, key.hi, key.lo, static_cast<uint32_t>(data.size()), crc});
    commit.insert(commit.end(), item.begin(), item.end());
    auto committed = c.Call(L::kCommit, commit);
    EXPECT_EQ(Code(committed), 0);
    return Read<int32_t>(committed, sizeof(L::BatchReply));
  }

  // FETCH of `keys`: the per-key codes.
  std::vector<int32_t> Fetch(RawClient& c, uint32_t pool_id, const std::vector<BlockKey>& keys) {
    std::vector<std::byte> request =
        Bytes(L::KeysRequest{pool_id, static_cast<uint32_t>(keys.size())});
    for (const auto& k : keys) {
      auto b = Bytes(L::Key{k.hi, k.lo});
      request.insert(request.end(), b.begin(), b.end());
    }
    auto reply = c.Call(L::kFetch, request);
    EXPECT_EQ(Code(reply), 0);
    std::vector<int32_t> codes;
    for (size_t i = 0; i < keys.size(); ++i) {
      codes.push_back(Read<int32_t>(reply, sizeof(L::BatchReply) + 4 * i));
    }
    return codes;
  }

  FakeHooks hooks_;
  std::map<const RawClient*, std::pair<std::byte*, L::StagingInfo>> staging_;
};

TEST_F(LocalClusterTest, AttachTellsTheClientWhichPoolsAreClusterPools) {
  L::AttachReply reply{};
  auto c = Connect("c", &reply);
  EXPECT_EQ(reply.flags & ~L::kAttachStaging, L::kAttachClusterScope);
  auto a = Connect("a", &reply);
  EXPECT_EQ(reply.flags & ~L::kAttachStaging, 0u);
}

TEST_F(LocalClusterTest, WithoutHooksAClusterPoolBehavesAsALocalOne) {
  server_->SetCluster(nullptr);
  L::AttachReply reply{};
  auto c = Connect("c", &reply);
  EXPECT_EQ(reply.flags & ~L::kAttachStaging, L::kAttachClusterScope);  // whatever runs now
  hooks_.OwnerHolds({4, 1}, "elsewhere");
  ASSERT_EQ(Put(*c, reply.pool_id, {4, 2}, "here"), 0);
  EXPECT_EQ(Fetch(*c, reply.pool_id, {{4, 1}}),
            (std::vector<int32_t>{static_cast<int32_t>(StatusCode::kNotFound)}));
  EXPECT_TRUE(hooks_.stored().empty());
  EXPECT_TRUE(hooks_.asked().empty());
  // Installed later, the hooks serve the session that is already open.
  server_->SetCluster(&hooks_);
  EXPECT_EQ(Fetch(*c, reply.pool_id, {{4, 1}}), (std::vector<int32_t>{0}));
  ASSERT_EQ(Put(*c, reply.pool_id, {4, 3}, "forwarded"), 0);
  ASSERT_EQ(hooks_.stored().size(), 1u);
  EXPECT_EQ(hooks_.stored()[0].bytes, "forwarded");
}

TEST_F(LocalClusterTest, CommitInAClusterPoolHandsTheExactBytesToTheHooks) {
  L::AttachReply reply{};
  auto c = Connect("c", &reply);
  std::string data(3000, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7 + i / 251);
  ASSERT_EQ(Put(*c, reply.pool_id, {5, 6}, data), 0);
  // A commit that fails (bad checksum) is not forwarded.
  EXPECT_EQ(Put(*c, reply.pool_id, {5, 7}, "torn", true),
            static_cast<int32_t>(StatusCode::kCorruption));
  auto stored = hooks_.stored();
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0].pool, "c");
  EXPECT_EQ(stored[0].key, (BlockKey{5, 6}));
  EXPECT_EQ(stored[0].bytes, data);
}

TEST_F(LocalClusterTest, FetchOfAMissingKeyAsksTheOwnerAndTheBlockIsThenInMemory) {
  L::AttachReply reply{};
  auto c = Connect("c", &reply);
  const std::string remote_block = "held by another node";
  hooks_.OwnerHolds({9, 1}, remote_block);
  ASSERT_EQ(Put(*c, reply.pool_id, {9, 2}, "held here"), 0);
  auto codes = Fetch(*c, reply.pool_id, {{9, 1}, {9, 2}, {9, 3}});
  EXPECT_EQ(codes, (std::vector<int32_t>{0, 0, static_cast<int32_t>(StatusCode::kNotFound)}));
  // Only the keys missing here were asked of the owner.
  auto asked = hooks_.asked();
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[0], (BlockKey{9, 1}));
  EXPECT_EQ(asked[1], (BlockKey{9, 3}));
  // The fetched block is in this node's memory now, exact.
  auto pool = pools_->Find("c").value();
  auto tier = pool->Locate({9, 1});
  ASSERT_TRUE(tier.ok());
  EXPECT_EQ(*tier, pool::TierKind::kDram);
  std::vector<std::byte> out(4096);
  auto got = pool->Get({9, 1}, out);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(reinterpret_cast<const char*>(out.data()), got->length), remote_block);
  // A second FETCH is served here.
  EXPECT_EQ(Fetch(*c, reply.pool_id, {{9, 1}}), (std::vector<int32_t>{0}));
  EXPECT_EQ(hooks_.asked().size(), 2u);
}

TEST_F(LocalClusterTest, LocalPoolsNeverCallTheHooks) {
  L::AttachReply reply{};
  auto c = Connect("a", &reply);
  hooks_.OwnerHolds({3, 1}, "elsewhere");
  ASSERT_EQ(Put(*c, reply.pool_id, {3, 2}, "local block"), 0);
  EXPECT_EQ(Fetch(*c, reply.pool_id, {{3, 1}, {3, 2}}),
            (std::vector<int32_t>{static_cast<int32_t>(StatusCode::kNotFound), 0}));
  EXPECT_TRUE(hooks_.stored().empty());
  EXPECT_TRUE(hooks_.asked().empty());
}

}  // namespace
}  // namespace tokenmem::local
