// The local shared-memory path under churn: writer and reader clients (SDK
// sessions over the real data socket) against a pool far smaller than the
// data, so blocks are demoted, promoted, dropped and their slots reused all
// the time. Every payload verifies itself: a get must return exactly the
// bytes that were put or a miss, never torn or stale bytes.
//
// Built twice: normally, and with ThreadSanitizer (local_stress_tsan_test),
// where the agent's pools, index and data server and the SDK all run in this
// one process, so the tool sees both sides of every race.
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <random>
#include <thread>
#include <vector>

#include "local/local_server.h"
#include "pool/mover.h"
#include "pool/pool_manager.h"
#include "tokenmem/client.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem {
namespace {

constexpr uint64_t kBlock = 16 * 1024;
constexpr int kWriters = 3;
constexpr int kReaders = 3;

#if defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

int Scale() {
  const char* s = std::getenv("TOKENMEM_STRESS_SCALE");
  int v = s ? std::atoi(s) : 0;
  return v > 0 ? v : 1;
}

BlockKey KeyOf(uint64_t writer, uint64_t seq) { return {0x5757000000000000ull | writer, seq}; }

// A block's bytes are a function of its key alone.
std::vector<std::byte> PayloadOf(const BlockKey& key) {
  std::mt19937_64 rng(key.hi * 1000003 + key.lo);
  std::vector<std::byte> data(1 + rng() % kBlock);
  for (auto& b : data) b = static_cast<std::byte>(rng());
  return data;
}

struct Counters {
  std::atomic<uint64_t> hits{0};
  std::atomic<uint64_t> misses{0};
  std::atomic<uint64_t> wrong{0};
  std::atomic<uint64_t> errors{0};
};

class LocalStressTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 * kBlock, .nvme = 256 * kBlock};
    options.nvme_root = dir_ / "nvme";
    options.nvme_segment_bytes = 1 << 20;
    std::filesystem::create_directories(options.nvme_root);
    auto pools = pool::PoolManager::Open(options);
    ASSERT_TRUE(pools.ok()) << pools.status().ToString();
    pools_ = std::move(pools).value();
    auto created = pools_->Create({.name = "churn",
                                   .block_size = kBlock,
                                   .capacity = {.dram = 32 * kBlock, .nvme = 128 * kBlock}});
    ASSERT_TRUE(created.ok()) << created.status().ToString();
    pool_ = *created;
    auto server = local::LocalServer::Start(dir_ / "data.sock", 0600, pools_.get(), &leases_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(server).value();
    mover_ = std::make_unique<pool::Mover>(pools_.get(), std::chrono::milliseconds(1));
    auto lease = leases_.Create({.quota_bytes = 1ull << 40});
    ASSERT_TRUE(lease.ok());
    lease_id_ = lease->account->id();
    secret_ = lease->secret;
    lease_ = lease->account;
  }

  void TearDown() override {
    mover_.reset();
    if (server_) server_->Shutdown();
  }

  std::shared_ptr<Pool> Attach() {
    auto client = Client::Connect((dir_ / "data.sock").string(), lease_id_, secret_);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    if (!client.ok()) return nullptr;
    auto pool = (*client)->Attach("churn");
    EXPECT_TRUE(pool.ok()) << pool.status().ToString();
    return pool.ok() ? *pool : nullptr;
  }

  // Reads random keys among those written so far and checks every byte.
  void ReadLoop(Pool& pool, const std::atomic<uint64_t>* written, std::atomic<bool>& stop,
                Counters& c, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<std::byte> out(kBlock);
    std::vector<std::byte> a(kBlock / 3), b(kBlock / 3), rest(kBlock);
    while (!stop.load(std::memory_order_relaxed)) {
      const uint64_t w = rng() % kWriters;
      const uint64_t n = written[w].load(std::memory_order_acquire);
      if (n == 0) continue;
      // Mostly recent keys (likely in memory), some old ones (NVMe or gone).
      const uint64_t seq = rng() % 4 ? n - 1 - rng() % std::min<uint64_t>(n, 48) : rng() % n;
      const BlockKey key = KeyOf(w, seq);
      const auto want = PayloadOf(key);
      if (rng() % 2) {
        auto got = pool.Get(key, out);
        if (got.ok()) {
          const bool same =
              *got == want.size() && std::equal(want.begin(), want.end(), out.begin());
          (same ? c.hits : c.wrong).fetch_add(1);
        } else if (got.status().IsNotFound()) {
          c.misses.fetch_add(1);
        } else {
          if (c.errors.fetch_add(1) == 0)
            std::printf("first read error: %s\n", got.status().ToString().c_str());
        }
      } else {
        // Scatter: three pieces per block.
        IoVec pieces[3] = {{a.data(), a.size()}, {b.data(), b.size()}, {rest.data(), rest.size()}};
        BlockIo io{key, pieces};
        IoResult result;
        Status s = pool.GetMany({&io, 1}, {&result, 1});
        if (!s.ok()) {
          c.errors.fetch_add(1);
        } else if (result.code == StatusCode::kOk) {
          std::vector<std::byte> joined(a);
          joined.insert(joined.end(), b.begin(), b.end());
          joined.insert(joined.end(), rest.begin(), rest.end());
          joined.resize(result.length);
          (joined == want ? c.hits : c.wrong).fetch_add(1);
        } else if (result.code == StatusCode::kNotFound) {
          c.misses.fetch_add(1);
        } else {
          if (c.errors.fetch_add(1) == 0)
            std::printf("first read error: code %d\n", static_cast<int>(result.code));
        }
      }
    }
  }

  testing::TempDir dir_;
  std::unique_ptr<pool::PoolManager> pools_;
  std::shared_ptr<pool::Pool> pool_;
  pool::LeaseTable leases_;
  std::unique_ptr<local::LocalServer> server_;
  std::unique_ptr<pool::Mover> mover_;
  std::string lease_id_;
  std::string secret_;
  std::shared_ptr<pool::LeaseAccount> lease_;
};

TEST_F(LocalStressTest, ReadersSeeCommittedBytesOrMissesUnderEvictionChurn) {
  const uint64_t puts_per_writer = (kSanitized ? 300 : 2000) * Scale();
  std::atomic<uint64_t> written[kWriters] = {};
  std::atomic<bool> stop{false};
  Counters c;
  std::atomic<uint64_t> put_errors{0};

  std::vector<std::thread> readers;
  for (int r = 0; r < kReaders; ++r) {
    readers.emplace_back([&, r] {
      auto pool = Attach();
      if (pool) ReadLoop(*pool, written, stop, c, 1000 + r);
    });
  }
  std::vector<std::thread> writers;
  for (int w = 0; w < kWriters; ++w) {
    writers.emplace_back([&, w] {
      auto pool = Attach();
      if (!pool) return;
      std::vector<std::vector<std::byte>> batch;
      for (uint64_t seq = 0; seq < puts_per_writer;) {
        if (seq % 5 == 0) {
          // A batch of 8 through PutMany, each block in two pieces.
          const uint64_t n = std::min<uint64_t>(8, puts_per_writer - seq);
          batch.clear();
          std::vector<IoVec> pieces;
          pieces.reserve(2 * n);
          std::vector<BlockIo> ios;
          for (uint64_t i = 0; i < n; ++i) batch.push_back(PayloadOf(KeyOf(w, seq + i)));
          for (uint64_t i = 0; i < n; ++i) {
            const size_t half = batch[i].size() / 2;
            pieces.push_back({batch[i].data(), half});
            pieces.push_back({batch[i].data() + half, batch[i].size() - half});
          }
          for (uint64_t i = 0; i < n; ++i) ios.push_back({KeyOf(w, seq + i), {&pieces[2 * i], 2}});
          std::vector<IoResult> results(n);
          Status s = pool->PutMany(ios, results);
          for (const auto& r : results) {
            if (!s.ok() || r.code != StatusCode::kOk) put_errors.fetch_add(1);
          }
          seq += n;
        } else {
          if (!pool->Put(KeyOf(w, seq), PayloadOf(KeyOf(w, seq))).ok()) put_errors.fetch_add(1);
          ++seq;
        }
        written[w].store(seq, std::memory_order_release);
      }
    });
  }
  for (auto& t : writers) t.join();
  stop = true;
  for (auto& t : readers) t.join();
  mover_.reset();  // the mover's demotions may drop (and refund) blocks

  auto snap = pool_->Snapshot();
  EXPECT_EQ(c.wrong.load(), 0u) << "a get returned bytes that were never put under its key";
  EXPECT_EQ(c.errors.load(), 0u);
  EXPECT_EQ(put_errors.load(), 0u);
  EXPECT_GT(c.hits.load(), 0u);
  EXPECT_GT(c.misses.load(), 0u) << "the pool never dropped anything: no churn";
  EXPECT_GT(snap.counters.tiers[0].demotions_out, 0u);
  EXPECT_GT(snap.counters.tiers[2].evictions, 0u);
  // Nothing is left reserved: what the lease is charged is what the pool holds.
  uint64_t blocks = 0;
  for (const auto& u : snap.usage) blocks += u.blocks;
  EXPECT_EQ(lease_->used_bytes(), blocks * kBlock);
  std::printf("hits %llu, misses %llu, demotions %llu, promotions %llu, evictions %llu\n",
              static_cast<unsigned long long>(c.hits.load()),
              static_cast<unsigned long long>(c.misses.load()),
              static_cast<unsigned long long>(snap.counters.tiers[0].demotions_out),
              static_cast<unsigned long long>(snap.counters.tiers[0].promotions_in),
              static_cast<unsigned long long>(snap.counters.tiers[2].evictions));
}

#if !defined(__SANITIZE_THREAD__)
// The same check with readers in other processes, which map the pool on
// their own.
TEST_F(LocalStressTest, ReaderProcessesSeeCommittedBytesOrMisses) {
  auto writer_pool = Attach();
  ASSERT_TRUE(writer_pool);
  constexpr int kChildren = 2;
  std::vector<pid_t> children;
  // Shared progress: the children read keys the parent has committed.
  auto* written = static_cast<std::atomic<uint64_t>*>(
      ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(written, MAP_FAILED);
  auto* stop = reinterpret_cast<std::atomic<bool>*>(written + kWriters);
  new (written) std::atomic<uint64_t>[kWriters] {};
  new (stop) std::atomic<bool>(false);
  for (int i = 0; i < kChildren; ++i) {
    pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      auto pool = Attach();
      Counters c;
      if (pool) ReadLoop(*pool, written, *stop, c, 77 + i);
      // Exit code: 0 good, 1 wrong bytes, 2 errors, 3 nothing read.
      ::_exit(!pool ? 2 : c.wrong ? 1 : c.errors ? 2 : c.hits + c.misses == 0 ? 3 : 0);
    }
    children.push_back(pid);
  }
  for (uint64_t seq = 0; seq < 3000 * static_cast<uint64_t>(Scale()); ++seq) {
    const uint64_t w = seq % kWriters;
    const uint64_t n = written[w].load();
    ASSERT_TRUE(writer_pool->Put(KeyOf(w, n), PayloadOf(KeyOf(w, n))).ok());
    written[w].store(n + 1);
  }
  stop->store(true);
  for (pid_t pid : children) {
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "reader process " << pid;
  }
  ::munmap(written, 4096);
}
#endif

}  // namespace
}  // namespace tokenmem
