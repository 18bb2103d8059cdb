// The lease file is written outside the table's lock: concurrent changes
// leave the file equal to the table, and Login never waits for the disk.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "pool/lease_file.h"
#include "pool/lease_table.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::pool {
namespace {

std::set<std::string> TableIds(const LeaseTable& table) {
  std::set<std::string> ids;
  for (const auto& lease : table.List()) ids.insert(lease->id());
  return ids;
}

std::set<std::string> FileIds(const std::filesystem::path& file) {
  auto stored = ReadLeaseFile(file);
  EXPECT_TRUE(stored.ok()) << stored.status().ToString();
  std::set<std::string> ids;
  if (stored.ok()) {
    for (const auto& l : *stored) ids.insert(l.id);
  }
  return ids;
}

TEST(LeaseFileWriteTest, ConcurrentCreatesAndReleasesLeaveTheFileEqualToTheTable) {
  testing::TempDir dir;
  const auto file = dir / "leases";
  LeaseTable table;
  std::atomic<uint64_t> writes{0};
  ASSERT_TRUE(table
                  .PersistTo(file,
                             [&](const std::filesystem::path& path,
                                 const std::vector<StoredLease>& leases) {
                               writes.fetch_add(1);
                               std::this_thread::yield();  // let the others pile up
                               return WriteLeaseFile(path, leases);
                             })
                  .ok());
  constexpr int kThreads = 6;
  constexpr int kRounds = 25;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&table, t] {
      std::vector<std::string> mine;
      for (int i = 0; i < kRounds; ++i) {
        auto lease = table.Create({.quota_bytes = 4096});
        ASSERT_TRUE(lease.ok()) << lease.status().ToString();
        mine.push_back(lease->account->id());
        // Release every other one, so creates and releases interleave.
        if ((i + t) % 2 == 0) {
          ASSERT_TRUE(table.Release(mine.front()).ok());
          mine.erase(mine.begin());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(FileIds(file), TableIds(table));
  EXPECT_GT(table.size(), 0u);
  // Each change wrote the file or found a newer snapshot written already.
  EXPECT_LE(writes.load(), 1u + 2u * kThreads * kRounds);

  LeaseTable reloaded;
  ASSERT_TRUE(reloaded.PersistTo(file).ok());
  EXPECT_EQ(TableIds(reloaded), TableIds(table));
}

// A writer that blocks until the test lets it go.
class Gate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    entered_ = true;
    cv_.notify_all();
    cv_.wait(lock, [&] { return open_; });
  }
  void AwaitEntered() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return entered_; });
  }
  void Open() {
    std::lock_guard lock(mu_);
    open_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool entered_ = false;
  bool open_ = false;
};

TEST(LeaseFileWriteTest, LoginDoesNotWaitForASlowWrite) {
  testing::TempDir dir;
  const auto file = dir / "leases";
  LeaseTable table;
  Gate gate;
  std::atomic<bool> slow{false};
  ASSERT_TRUE(table
                  .PersistTo(file,
                             [&](const std::filesystem::path& path,
                                 const std::vector<StoredLease>& leases) {
                               if (slow.load()) gate.Wait();
                               return WriteLeaseFile(path, leases);
                             })
                  .ok());
  auto existing = table.Create({.quota_bytes = 4096});
  ASSERT_TRUE(existing.ok());

  slow = true;
  auto creating = std::async(std::launch::async, [&] { return table.Create({.quota_bytes = 1}); });
  gate.AwaitEntered();  // the create is inside its write now

  // On another thread, so that a regression (Login behind the write) fails
  // here instead of hanging the test.
  auto logging_in = std::async(std::launch::async, [&] {
    Status login = table.Login(existing->account->id(), existing->secret).status();
    if (!login.ok()) return login;
    return table.Authenticate(existing->account->id(), existing->secret, "any", /*write=*/true)
        .status();
  });
  const bool answered =
      logging_in.wait_for(std::chrono::milliseconds(500)) == std::future_status::ready;
  EXPECT_TRUE(answered) << "Login waited for the lease file write";
  EXPECT_EQ(creating.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout)
      << "the create answered before its lease was on disk";
  gate.Open();
  Status login = logging_in.get();
  EXPECT_TRUE(login.ok()) << login.ToString();
  auto created = creating.get();
  ASSERT_TRUE(created.ok()) << created.status().ToString();
  EXPECT_EQ(FileIds(file), TableIds(table));
}

TEST(LeaseFileWriteTest, AFailedWriteRefusesTheCreateAndTheNextWriteCatchesUp) {
  testing::TempDir dir;
  const auto file = dir / "leases";
  LeaseTable table;
  std::atomic<bool> fail{false};
  ASSERT_TRUE(table
                  .PersistTo(file,
                             [&](const std::filesystem::path& path,
                                 const std::vector<StoredLease>& leases) {
                               if (fail.load()) return IoError("disk full (test)");
                               return WriteLeaseFile(path, leases);
                             })
                  .ok());
  fail = true;
  auto refused = table.Create({.quota_bytes = 4096});
  EXPECT_FALSE(refused.ok());
  EXPECT_EQ(table.size(), 0u);
  fail = false;
  auto kept = table.Create({.quota_bytes = 4096});
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(FileIds(file), TableIds(table));
}

}  // namespace
}  // namespace tokenmem::pool
