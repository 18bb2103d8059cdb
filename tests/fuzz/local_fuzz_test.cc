// The local data socket against hostile clients: mutated messages of every
// type (headers that lie about size, type or version; payloads flipped,
// cut, grown; counts far past what follows) sent to a real LocalServer by
// clients holding a real lease. Each message must get a reply or the end
// of the connection, never a hang; the agent must keep serving: a
// well-behaved client reads back a block stored before the run, now and
// then during it and at the end.
//
// Deterministic (fixed seed); TOKENMEM_FUZZ_SECONDS (default 6) bounds it,
// TOKENMEM_FUZZ_SEED changes it.
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "local/local_server.h"
#include "tokenmem/client.h"
#include "tokenmem/common/testing/temp_dir.h"
#include "tokenmem/layout/local_protocol.h"

namespace tokenmem::local {
namespace {

namespace L = layout;

template <typename T>
std::vector<std::byte> Bytes(const T& v) {
  const auto* p = reinterpret_cast<const std::byte*>(&v);
  return {p, p + sizeof(T)};
}

void Append(std::vector<std::byte>* out, const std::vector<std::byte>& more) {
  out->insert(out->end(), more.begin(), more.end());
}

enum class Outcome { kReply, kClosed, kHang };

// One connection that speaks the protocol with whatever bytes it is given.
class Conn {
 public:
  explicit Conn(const std::filesystem::path& path) {
    fd_ = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    ok_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  }
  ~Conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return ok_; }

  // Sends header + payload as one message, waits up to 5 s for an answer.
  Outcome Send(const L::MessageHeader& header, const std::vector<std::byte>& payload,
               int32_t* code = nullptr) {
    std::vector<std::byte> msg = Bytes(header);
    Append(&msg, payload);
    if (::send(fd_, msg.data(), msg.size(), MSG_NOSIGNAL) < 0) return Outcome::kClosed;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 5000) <= 0) return Outcome::kHang;
    std::vector<std::byte> buffer(sizeof(L::MessageHeader) + L::kMaxMessageBytes);
    iovec iov{buffer.data(), buffer.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 256)];
    msghdr m{};
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    m.msg_control = control;
    m.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(fd_, &m, MSG_CMSG_CLOEXEC);
    for (cmsghdr* c = CMSG_FIRSTHDR(&m); c != nullptr; c = CMSG_NXTHDR(&m, c)) {
      const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
        ::close(fd);  // a fuzzing client must not run out of descriptors
      }
    }
    if (n <= 0) return Outcome::kClosed;
    if (code != nullptr && static_cast<size_t>(n) >= sizeof(L::MessageHeader) + 4) {
      std::memcpy(code, buffer.data() + sizeof(L::MessageHeader), 4);
    }
    return Outcome::kReply;
  }

  Outcome Call(uint16_t type, const std::vector<std::byte>& payload, int32_t* code = nullptr) {
    const L::MessageHeader h{L::kProtocolMagic, L::kProtocolVersion, type, ++id_,
                             static_cast<uint32_t>(payload.size())};
    return Send(h, payload, code);
  }

 private:
  int fd_ = -1;
  bool ok_ = false;
  uint32_t id_ = 0;
};

struct Seed {
  uint16_t type;
  std::vector<std::byte> payload;
};

class LocalFuzz : public ::testing::Test {
 protected:
  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 << 20};
    auto pools = pool::PoolManager::Open(options);
    ASSERT_TRUE(pools.ok()) << pools.status().ToString();
    pools_ = std::move(pools).value();
    ASSERT_TRUE(
        pools_->Create({.name = "a", .block_size = 4096, .capacity = {.dram = 256 * 4096}}).ok());
    // The other lease's pool: the fuzzing lease may not use it (it may
    // legitimately remove or evict anything in "a").
    ASSERT_TRUE(
        pools_->Create({.name = "v", .block_size = 4096, .capacity = {.dram = 16 * 4096}}).ok());
    auto server = LocalServer::Start(dir_ / "data.sock", 0660, pools_.get(), &leases_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    auto lease = leases_.Create({.quota_bytes = 1 << 20, .pools = {"a"}});
    ASSERT_TRUE(lease.ok());
    id_ = lease->account->id();
    secret_ = lease->secret;
    auto victim = leases_.Create({.quota_bytes = 1 << 20, .pools = {"v"}});
    ASSERT_TRUE(victim.ok());
    victim_ = victim->account->id() + ":" + victim->secret;
    ASSERT_EQ(WellBehavedPutOrGet(true), "");
  }

  std::vector<std::byte> Hello() const {
    L::HelloRequest req{};
    id_.copy(req.lease_id, sizeof(req.lease_id));
    secret_.copy(req.secret, sizeof(req.secret));
    return Bytes(req);
  }

  // A client of another lease: puts (first) or reads back its block; what
  // went wrong, or "" when it went well.
  std::string WellBehavedPutOrGet(bool put) {
    ClientOptions o;
    o.socket_path = (dir_ / "data.sock").string();
    const auto colon = victim_.find(':');
    o.lease_id = victim_.substr(0, colon);
    o.lease_secret = victim_.substr(colon + 1);
    auto client = Client::Connect(o);
    if (!client.ok()) return "connect: " + client.status().ToString();
    auto pool = (*client)->Attach("v");
    if (!pool.ok()) return "attach: " + pool.status().ToString();
    const std::string data(3000, 'v');
    if (put) {
      Status s = (*pool)->Put(BlockKey{77, 77}, std::as_bytes(std::span(data)));
      return s.ok() ? "" : "put: " + s.ToString();
    }
    std::string out(4096, '\0');
    auto n = (*pool)->Get(BlockKey{77, 77}, std::as_writable_bytes(std::span(out)));
    if (!n.ok()) return "get: " + n.status().ToString();
    return out.substr(0, *n) == data ? "" : "get: other bytes";
  }

  std::vector<Seed> Seeds() const {
    std::vector<Seed> s;
    L::AttachRequest attach{};
    std::string("a").copy(attach.pool, sizeof(attach.pool));
    s.push_back({L::kHello, Hello()});
    s.push_back({L::kAttach, Bytes(attach)});
    s.push_back({L::kSegments, Bytes(L::SegmentsRequest{1, 0, 0, 0})});
    s.push_back({L::kReserve, Bytes(L::ReserveRequest{1, 2})});
    std::vector<std::byte> commit = Bytes(L::CommitRequest{1, 1});
    Append(&commit, Bytes(L::CommitItem{1, 5, 6, 100, 0}));
    s.push_back({L::kCommit, commit});
    std::vector<std::byte> abort = Bytes(L::AbortRequest{1, 1});
    Append(&abort, Bytes(uint64_t{1}));
    s.push_back({L::kAbort, abort});
    for (uint16_t type : {L::kFetch, L::kRemove, L::kPin, L::kUnpin, L::kLookup}) {
      std::vector<std::byte> keys = Bytes(L::KeysRequest{1, 2});
      Append(&keys, Bytes(L::Key{77, 77}));
      Append(&keys, Bytes(L::Key{5, 6}));
      s.push_back({type, keys});
    }
    return s;
  }

  testing::TempDir dir_;
  std::unique_ptr<pool::PoolManager> pools_;
  pool::LeaseTable leases_;
  std::unique_ptr<LocalServer> server_;
  std::string id_, secret_, victim_;
};

std::vector<std::byte> Mutate(std::vector<std::byte> s, std::mt19937_64& rng) {
  const int rounds = 1 + static_cast<int>(rng() % 4);
  for (int r = 0; r < rounds; ++r) {
    const size_t at = s.empty() ? 0 : rng() % s.size();
    switch (rng() % 6) {
      case 0:
        if (!s.empty()) s[at] ^= std::byte(1u << (rng() % 8));
        break;
      case 1:
        if (!s.empty()) s[at] = std::byte(rng());
        break;
      case 2:  // a count or length field made huge
        if (s.size() >= at + 4) {
          const uint32_t big = (rng() % 2) ? 0xffffffffu : static_cast<uint32_t>(rng());
          std::memcpy(s.data() + at, &big, 4);
        }
        break;
      case 3:
        s.resize(at);
        break;
      case 4:
        s.insert(s.begin() + static_cast<long>(at), 1 + rng() % 64, std::byte(rng()));
        break;
      case 5:
        s.resize(s.size() + rng() % 4096, std::byte(rng()));
        break;
    }
  }
  return s;
}

TEST_F(LocalFuzz, EveryMessageIsAnsweredOrEndsItsConnectionAndOthersKeepBeingServed) {
  const std::vector<Seed> seeds = Seeds();
  const char* secs = std::getenv("TOKENMEM_FUZZ_SECONDS");
  const char* seed = std::getenv("TOKENMEM_FUZZ_SEED");
  const auto budget = std::chrono::seconds(secs ? std::atoi(secs) : 6);
  std::mt19937_64 rng(seed ? std::strtoull(seed, nullptr, 10) : 20261208);
  std::map<Outcome, size_t> outcomes;
  size_t runs = 0, connections = 0, checks = 0;
  std::unique_ptr<Conn> c;
  const auto start = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() - start < budget) {
    if (c == nullptr) {
      c = std::make_unique<Conn>(dir_ / "data.sock");
      ASSERT_TRUE(c->ok()) << "the agent stopped accepting connections";
      ++connections;
      // Most connections log in and attach first, so mutations reach past HELLO.
      if (rng() % 8 != 0) {
        int32_t code = -1;
        ASSERT_EQ(c->Call(L::kHello, Hello(), &code), Outcome::kReply);
        ASSERT_EQ(code, 0);
        L::AttachRequest attach{};
        std::string("a").copy(attach.pool, sizeof(attach.pool));
        ASSERT_EQ(c->Call(L::kAttach, Bytes(attach)), Outcome::kReply);
      }
    }
    const Seed& base = seeds[rng() % seeds.size()];
    L::MessageHeader h{L::kProtocolMagic, L::kProtocolVersion, base.type,
                       static_cast<uint32_t>(rng()), 0};
    std::vector<std::byte> payload = Mutate(base.payload, rng);
    h.length = static_cast<uint32_t>(payload.size());
    switch (rng() % 20) {  // now and then the header lies
      case 0:
        h.length = static_cast<uint32_t>(rng());
        break;
      case 1:
        h.type = static_cast<uint16_t>(rng());
        break;
      case 2:
        h.magic ^= 1;
        break;
      case 3:
        h.version = static_cast<uint16_t>(rng());
        break;
      default:
        break;
    }
    const Outcome o = c->Send(h, payload);
    ASSERT_NE(o, Outcome::kHang) << "type " << h.type << ", " << payload.size() << " bytes";
    ++outcomes[o];
    ++runs;
    if (o == Outcome::kClosed || rng() % 64 == 0) c.reset();
    if (runs % 500 == 0) {
      ASSERT_EQ(WellBehavedPutOrGet(false), "") << "after " << runs << " messages";
      ++checks;
    }
  }
  c.reset();
  EXPECT_EQ(WellBehavedPutOrGet(false), "");
  std::printf(
      "local fuzz: %zu messages on %zu connections in %lld s (%zu replies, %zu closes), "
      "%zu checks by another lease passed\n",
      runs, connections, static_cast<long long>(budget.count()), outcomes[Outcome::kReply],
      outcomes[Outcome::kClosed], checks + 1);
  EXPECT_GT(runs, 100u);
}

}  // namespace
}  // namespace tokenmem::local
