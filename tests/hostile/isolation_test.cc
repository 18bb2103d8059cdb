// A tenant is not an admin: hostile clients against a real agent process.
//
// - A read-only lease that reopens its segment descriptors through
//   /proc/self/fd with O_RDWR cannot write a byte (the agent seals every
//   pool segment and the index F_SEAL_FUTURE_WRITE).
// - A writer holds no writable mapping of the pool: it writes into its own
//   staging segment, and what it does there after (or while) committing
//   never changes a committed block.
// - Deleting a pool under an attached client frees the agent's memory and
//   the client reports the deletion and drops its mappings.
// - Releasing a lease under an attached client (local and remote) fails the
//   client's next call with a clear error.
//
// The hostile clients speak the local protocol themselves (RawClient) so
// they can keep and abuse the descriptors the agent sends.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "agent_fixture.h"
#include "tokenmem/client.h"
#include "tokenmem/common/crc32c.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem::testing {
namespace {

namespace L = layout;
constexpr uint64_t kBlock = 64 * 1024;

std::string DataSocket(const AgentProcess& agent) {
  return (agent.dir() / "agent-data.sock").string();
}

std::pair<std::string, std::string> Split(const std::string& lease) {
  auto colon = lease.find(':');
  return {lease.substr(0, colon), lease.substr(colon + 1)};
}

std::vector<std::byte> Filled(uint8_t value, size_t n = kBlock) {
  return std::vector<std::byte>(n, std::byte{value});
}

// A client that speaks the local protocol by hand and keeps every
// descriptor the agent sends.
class RawClient {
 public:
  struct Reply {
    std::vector<std::byte> payload;
    std::vector<int> fds;  // owned by the RawClient
  };

  explicit RawClient(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~RawClient() {
    for (int fd : fds_) ::close(fd);
    if (fd_ >= 0) ::close(fd_);
  }
  bool connected() const { return fd_ >= 0; }

  template <typename T>
  static void Append(std::vector<std::byte>* out, const T& v) {
    const auto* p = reinterpret_cast<const std::byte*>(&v);
    out->insert(out->end(), p, p + sizeof(T));
  }

  // Sends one request; the reply (its code must be 0) or nothing.
  std::optional<Reply> Call(uint16_t type, const std::vector<std::byte>& payload) {
    L::MessageHeader h{L::kProtocolMagic, L::kProtocolVersion, type, next_id_++,
                       static_cast<uint32_t>(payload.size())};
    std::vector<std::byte> out;
    Append(&out, h);
    out.insert(out.end(), payload.begin(), payload.end());
    if (::send(fd_, out.data(), out.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(out.size())) {
      return std::nullopt;
    }
    std::vector<std::byte> in(L::kMaxMessageBytes + sizeof(L::MessageHeader));
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * L::kMaxFdsPerMessage)];
    iovec iov{in.data(), in.size()};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(fd_, &msg, MSG_CMSG_CLOEXEC);
    if (n < static_cast<ssize_t>(sizeof(L::MessageHeader) + sizeof(int32_t))) return std::nullopt;
    Reply reply;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        reply.fds.push_back(fd);
        fds_.push_back(fd);
      }
    }
    reply.payload.assign(in.begin() + sizeof(L::MessageHeader), in.begin() + n);
    int32_t code;
    std::memcpy(&code, reply.payload.data(), sizeof(code));
    last_code_ = code;
    if (code != 0) return std::nullopt;
    return reply;
  }

  bool Hello(const std::string& lease) {
    auto [id, secret] = Split(lease);
    L::HelloRequest req{};
    id.copy(req.lease_id, sizeof(req.lease_id) - 1);
    secret.copy(req.secret, sizeof(req.secret) - 1);
    std::vector<std::byte> p;
    Append(&p, req);
    return Call(L::kHello, p).has_value();
  }

  std::optional<Reply> Attach(const std::string& pool) {
    L::AttachRequest req{};
    pool.copy(req.pool, sizeof(req.pool) - 1);
    std::vector<std::byte> p;
    Append(&p, req);
    return Call(L::kAttach, p);
  }

  int32_t last_code() const { return last_code_; }

 private:
  int fd_ = -1;
  uint32_t next_id_ = 1;
  int32_t last_code_ = 0;
  std::vector<int> fds_;
};

// Every way to write through `fd` after reopening it read-write: none may
// work. Returns a description of the first that did, or "".
std::string TryToWrite(int fd) {
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const int rw = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
  std::string broke;
  const int target = rw >= 0 ? rw : fd;  // the reopen itself is allowed; writing is what counts
  void* w = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED, target, 0);
  if (w != MAP_FAILED) {
    static_cast<volatile char*>(w)[0] = 0x5A;
    ::munmap(w, 4096);
    broke = "mmap(PROT_WRITE, MAP_SHARED)";
  }
  void* r = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, target, 0);
  if (broke.empty() && r != MAP_FAILED && ::mprotect(r, 4096, PROT_READ | PROT_WRITE) == 0) {
    broke = "mprotect(PROT_WRITE)";
  }
  if (r != MAP_FAILED) ::munmap(r, 4096);
  const char junk[16] = "overwritten!!!!";
  if (broke.empty() && ::pwrite(target, junk, sizeof(junk), 0) > 0) broke = "pwrite";
  if (broke.empty() && ::write(target, junk, sizeof(junk)) > 0) broke = "write";
  if (broke.empty() && ::ftruncate(target, 0) == 0) broke = "ftruncate";
  if (broke.empty() &&
      ::fallocate(target, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096) == 0) {
    broke = "fallocate(PUNCH_HOLE)";
  }
  if (rw >= 0) ::close(rw);
  return broke;
}

// The fd numbers of this process's... no: of `pid`'s descriptors whose link
// names contains `needle`.
size_t CountFds(pid_t pid, const std::string& needle) {
  size_t n = 0;
  std::error_code ec;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
    std::error_code lec;
    auto target = std::filesystem::read_symlink(e.path(), lec);
    if (!lec && target.string().find(needle) != std::string::npos) ++n;
  }
  return n;
}

// Lines of /proc/<pid>/maps that name `needle`.
size_t CountMappings(pid_t pid, const std::string& needle) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  size_t n = 0;
  for (std::string line; std::getline(maps, line);) {
    if (line.find(needle) != std::string::npos) ++n;
  }
  return n;
}

template <typename F>
bool WaitFor(F&& done, std::chrono::milliseconds timeout = std::chrono::seconds(5)) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

grpc::Status DeletePool(AgentProcess& agent, const std::string& name) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::DeletePoolRequest req;
  req.set_name(name);
  v1::DeletePoolReply reply;
  return agent.stub().DeletePool(&ctx, req, &reply);
}

grpc::Status ReleaseLease(AgentProcess& agent, const std::string& lease) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::ReleaseLeaseRequest req;
  req.set_id(Split(lease).first);
  v1::ReleaseLeaseReply reply;
  return agent.stub().ReleaseLease(&ctx, req, &reply);
}

std::unique_ptr<Client> Connect(AgentProcess& agent, const std::string& lease) {
  auto [id, secret] = Split(lease);
  auto client = Client::Connect(DataSocket(agent), id, secret);
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(client).value() : nullptr;
}

class IsolationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(agent_.Start().ok()) << agent_.LogTail();
    auto writer = agent_.CreateLease(1ull << 30, {"shared"});
    auto reader = agent_.CreateLease(1ull << 30, {"shared"}, /*read_only=*/true);
    auto other = agent_.CreateLease(1ull << 30, {"shared"});
    ASSERT_TRUE(writer.ok() && reader.ok() && other.ok());
    writer_lease_ = *writer;
    reader_lease_ = *reader;
    other_lease_ = *other;
    writer_ = Connect(agent_, writer_lease_);
    ASSERT_NE(writer_, nullptr);
    auto pool = writer_->Attach("shared");
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    ASSERT_TRUE((*pool)->Put(kVictim, Filled(0xA1)).ok());
    writer_pool_ = *pool;
  }

  // The block a victim lease wrote reads back exactly, through a fresh
  // client of a third lease.
  void ExpectVictimIntact() {
    auto client = Connect(agent_, other_lease_);
    ASSERT_NE(client, nullptr);
    auto pool = client->Attach("shared");
    ASSERT_TRUE(pool.ok()) << pool.status().ToString();
    std::vector<std::byte> out(kBlock);
    auto got = (*pool)->Get(kVictim, out);
    ASSERT_TRUE(got.ok()) << got.status().ToString();
    EXPECT_EQ(*got, kBlock);
    EXPECT_EQ(out, Filled(0xA1));
  }

  static constexpr BlockKey kVictim{0xF00D, 1};
  AgentProcess agent_{{.pools = {{.name = "shared", .block_size = "64KiB", .dram = "8MiB"}}}};
  std::string writer_lease_, reader_lease_, other_lease_;
  std::unique_ptr<Client> writer_;
  std::shared_ptr<Pool> writer_pool_;
};

TEST_F(IsolationTest, ReadOnlyLeaseCannotWriteThroughReopenedDescriptors) {
  RawClient hostile(DataSocket(agent_));
  ASSERT_TRUE(hostile.connected());
  ASSERT_TRUE(hostile.Hello(reader_lease_));
  auto attached = hostile.Attach("shared");
  ASSERT_TRUE(attached.has_value()) << "code " << hostile.last_code();
  L::AttachReply head;
  std::memcpy(&head, attached->payload.data(), sizeof(head));
  EXPECT_NE(head.flags & L::kAttachReadOnly, 0u);
  EXPECT_EQ(head.flags & L::kAttachStaging, 0u);  // no staging for a reader
  ASSERT_EQ(attached->fds.size(), 2u + head.segment_count);
  ASSERT_GE(head.segment_count, 1u);
  // fds[1] is the client area (statistics and eviction hints, writable by
  // design); every other descriptor must refuse writers.
  for (size_t i = 0; i < attached->fds.size(); ++i) {
    if (i == 1) continue;
    EXPECT_EQ(TryToWrite(attached->fds[i]), "") << "descriptor " << i << " was writable";
  }
  ExpectVictimIntact();
}

TEST_F(IsolationTest, WriterCannotOverwriteAnotherLeasesBlock) {
  RawClient hostile(DataSocket(agent_));
  ASSERT_TRUE(hostile.connected());
  ASSERT_TRUE(hostile.Hello(other_lease_));
  auto attached = hostile.Attach("shared");
  ASSERT_TRUE(attached.has_value()) << "code " << hostile.last_code();
  L::AttachReply head;
  std::memcpy(&head, attached->payload.data(), sizeof(head));
  ASSERT_NE(head.flags & L::kAttachStaging, 0u);
  ASSERT_EQ(attached->fds.size(), 3u + head.segment_count);
  // The pool's segments and index: no way in, however reopened.
  for (size_t i = 0; i + 1 < attached->fds.size(); ++i) {
    if (i == 1) continue;
    EXPECT_EQ(TryToWrite(attached->fds[i]), "") << "descriptor " << i << " was writable";
  }

  // Its own staging segment is writable; a block it commits is copied out
  // of it, so scribbling over the slot after COMMIT changes nothing.
  L::StagingInfo staging;
  std::memcpy(&staging,
              attached->payload.data() + sizeof(head) + head.segment_count * sizeof(L::SegmentInfo),
              sizeof(staging));
  const int staging_fd = attached->fds.back();
  auto* slots = static_cast<std::byte*>(
      ::mmap(nullptr, staging.bytes, PROT_READ | PROT_WRITE, MAP_SHARED, staging_fd, 0));
  ASSERT_NE(slots, MAP_FAILED);
  std::vector<std::byte> p;
  RawClient::Append(&p, L::ReserveRequest{head.pool_id, 1});
  auto reserved = hostile.Call(L::kReserve, p);
  ASSERT_TRUE(reserved.has_value()) << "code " << hostile.last_code();
  L::SlotGrant grant;
  std::memcpy(&grant, reserved->payload.data() + sizeof(L::ReserveReply), sizeof(grant));
  ASSERT_EQ(grant.tier, L::kStagingTier);
  std::byte* slot = slots + uint64_t{grant.slot} * staging.slot_bytes;
  const auto mine = Filled(0xB2);
  std::memcpy(slot, mine.data(), mine.size());
  const BlockKey own{0xBAD, 2};
  p.clear();
  RawClient::Append(&p, L::CommitRequest{head.pool_id, 1});
  RawClient::Append(&p, L::CommitItem{grant.reservation, own.hi, own.lo,
                                      static_cast<uint32_t>(kBlock), Crc32c(mine)});
  auto committed = hostile.Call(L::kCommit, p);
  ASSERT_TRUE(committed.has_value());
  int32_t item_code;
  std::memcpy(&item_code, committed->payload.data() + sizeof(L::BatchReply), sizeof(item_code));
  EXPECT_EQ(item_code, 0);
  std::memset(slot, 0xEE, kBlock);  // after the commit: must not show

  // A commit whose checksum does not match what the slot held when the
  // agent copied it is refused (CORRUPTION), not stored.
  reserved = hostile.Call(L::kReserve, [&] {
    std::vector<std::byte> r;
    RawClient::Append(&r, L::ReserveRequest{head.pool_id, 1});
    return r;
  }());
  ASSERT_TRUE(reserved.has_value());
  std::memcpy(&grant, reserved->payload.data() + sizeof(L::ReserveReply), sizeof(grant));
  slot = slots + uint64_t{grant.slot} * staging.slot_bytes;
  std::memset(slot, 0xCC, kBlock);
  p.clear();
  RawClient::Append(&p, L::CommitRequest{head.pool_id, 1});
  RawClient::Append(&p, L::CommitItem{grant.reservation, kVictim.hi, kVictim.lo,
                                      static_cast<uint32_t>(kBlock), Crc32c(mine)});
  committed = hostile.Call(L::kCommit, p);
  ASSERT_TRUE(committed.has_value());
  std::memcpy(&item_code, committed->payload.data() + sizeof(L::BatchReply), sizeof(item_code));
  EXPECT_EQ(item_code, static_cast<int32_t>(StatusCode::kCorruption));
  ::munmap(slots, staging.bytes);

  ExpectVictimIntact();
  std::vector<std::byte> out(kBlock);
  auto got = writer_pool_->Get(own, out);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(out, mine);
}

TEST_F(IsolationTest, DeletedPoolFreesItsMemoryAndTheClientSaysSo) {
  // The agent's descriptors and this process's mappings of the pool.
  const std::string needle = "tokenmem:shared:";
  ASSERT_GT(CountFds(agent_.pid(), needle), 0u);
  ASSERT_GT(CountMappings(::getpid(), needle), 0u);

  ASSERT_TRUE(DeletePool(agent_, "shared").ok());
  // The agent lets go at once although a client is attached. (The
  // connection's staging segment, "tokenmem:staging:<n>:shared", is freed
  // at the connection's next request; checked below.)
  EXPECT_TRUE(WaitFor([&] { return CountFds(agent_.pid(), needle) == 0; }))
      << CountFds(agent_.pid(), needle) << " descriptors of the deleted pool remain";
  EXPECT_TRUE(WaitFor([&] { return CountMappings(agent_.pid(), needle) == 0; }));

  std::vector<std::byte> out(kBlock);
  auto got = writer_pool_->Get(kVictim, out);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kFailedPrecondition) << got.status().ToString();
  EXPECT_NE(got.status().message().find("deleted"), std::string::npos) << got.status().ToString();
  // ...and dropped its mappings, so no process holds the memory now, and
  // told the agent, which freed the connection's staging segment.
  EXPECT_EQ(CountMappings(::getpid(), needle), 0u);
  EXPECT_TRUE(WaitFor([&] { return CountFds(agent_.pid(), ":shared") == 0; }))
      << CountFds(agent_.pid(), ":shared") << " staging descriptors remain";
  Status put = writer_pool_->Put({1, 2}, Filled(0x01));
  EXPECT_EQ(put.code(), StatusCode::kFailedPrecondition) << put.ToString();

  // A pool of that name again: attaching gets the new one.
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(5));
  v1::CreatePoolRequest create;
  create.mutable_spec()->set_name("shared");
  v1::PoolInfo info;
  if (agent_.stub().CreatePool(&ctx, create, &info).ok()) {
    auto again = writer_->Attach("shared");
    ASSERT_TRUE(again.ok()) << again.status().ToString();
    EXPECT_NE(again->get(), writer_pool_.get());
  }
}

TEST_F(IsolationTest, ReleasedLeaseFailsTheNextLocalCall) {
  std::vector<std::byte> out(kBlock);
  ASSERT_TRUE(writer_pool_->Get(kVictim, out).ok());
  ASSERT_TRUE(ReleaseLease(agent_, writer_lease_).ok());
  // A read served from shared memory, without asking the agent.
  auto got = writer_pool_->Get(kVictim, out);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kPermissionDenied) << got.status().ToString();
  EXPECT_NE(got.status().message().find("released"), std::string::npos);
  Status put = writer_pool_->Put({3, 4}, Filled(0x02));
  EXPECT_EQ(put.code(), StatusCode::kPermissionDenied) << put.ToString();

  // A hostile client of the released lease that ignores the state page:
  // the agent refuses its next request.
  RawClient hostile(DataSocket(agent_));
  ASSERT_TRUE(hostile.connected());
  EXPECT_FALSE(hostile.Hello(writer_lease_));
}

TEST(RemoteIsolationTest, ReleasedLeaseAndDeletedPoolFailTheNextRemoteCall) {
  auto port = FreeLoopbackPort();
  ASSERT_TRUE(port.ok());
  const std::string address = "127.0.0.1:" + std::to_string(*port);
  AgentProcess agent({.pools = {{.name = "a", .block_size = "64KiB", .dram = "8MiB"},
                                {.name = "b", .block_size = "64KiB", .dram = "8MiB"}},
                      .extra_yaml = "remote: {listen: \"" + address + "\"}\n"});
  ASSERT_TRUE(agent.Start().ok()) << agent.LogTail();
  auto keep = agent.CreateLease(1ull << 30);
  auto gone = agent.CreateLease(1ull << 30);
  ASSERT_TRUE(keep.ok() && gone.ok());
  auto connect = [&](const std::string& lease) {
    ClientOptions o;
    o.agent_address = address;
    std::tie(o.lease_id, o.lease_secret) = Split(lease);
    return Client::Connect(o);
  };
  auto keeper = connect(*keep);
  auto leaver = connect(*gone);
  ASSERT_TRUE(keeper.ok() && leaver.ok()) << keeper.status().ToString();
  auto pool_a = (*keeper)->Attach("a");
  auto pool_b = (*leaver)->Attach("b");
  ASSERT_TRUE(pool_a.ok() && pool_b.ok());
  ASSERT_TRUE((*pool_a)->remote());
  ASSERT_TRUE((*pool_a)->Put({5, 5}, Filled(0x05)).ok());
  ASSERT_TRUE((*pool_b)->Put({6, 6}, Filled(0x06)).ok());
  std::vector<std::byte> out(kBlock);

  ASSERT_TRUE(ReleaseLease(agent, *gone).ok());
  auto got = (*pool_b)->Get({6, 6}, out);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kPermissionDenied) << got.status().ToString();
  EXPECT_NE(got.status().ToString().find("released"), std::string::npos) << got.status().ToString();

  ASSERT_TRUE(DeletePool(agent, "a").ok());
  EXPECT_TRUE(WaitFor([&] { return CountFds(agent.pid(), "tokenmem:a:") == 0; }));
  got = (*pool_a)->Get({5, 5}, out);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), StatusCode::kFailedPrecondition) << got.status().ToString();
  EXPECT_NE(got.status().ToString().find("deleted"), std::string::npos) << got.status().ToString();
}

}  // namespace
}  // namespace tokenmem::testing
