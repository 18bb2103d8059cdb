#include "cluster/forward_queue.h"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace tokenmem::cluster {
namespace {

using namespace std::chrono_literals;

ForwardItem Item(const std::string& owner, const std::string& pool, uint64_t n) {
  return ForwardItem{pool, BlockKey{0, n}, std::vector<std::byte>(8, std::byte(n & 0xff)), owner};
}

// Records every batch; can be held (blocked) and made to fail.
class FakeSender {
 public:
  struct Batch {
    std::string owner;
    std::string pool;
    std::vector<uint64_t> keys;
  };

  Sender sender() {
    return [this](const std::string& owner, const std::string& pool,
                  std::span<ForwardItem> items) -> Status {
      std::unique_lock lock(mu_);
      ++entered_;
      changed_.notify_all();
      changed_.wait(lock, [&] { return !held_; });
      Batch b{owner, pool, {}};
      for (ForwardItem& item : items) {
        EXPECT_EQ(item.owner_address, owner);
        EXPECT_EQ(item.pool, pool);
        EXPECT_EQ(item.data.size(), 8u);
        b.keys.push_back(item.key.lo);
      }
      batches_.push_back(std::move(b));
      changed_.notify_all();
      return fail_ ? Unavailable("owner unreachable") : Status::Ok();
    };
  }
  void Hold(bool held) {
    std::lock_guard lock(mu_);
    held_ = held;
    changed_.notify_all();
  }
  void Fail(bool fail) {
    std::lock_guard lock(mu_);
    fail_ = fail;
  }
  // Waits until the sender was entered `n` times in all.
  bool WaitEntered(int n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 1s, [&] { return entered_ >= n; });
  }
  // Waits until `n` keys were handed over in all.
  bool WaitKeys(size_t n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, 1s, [&] {
      size_t total = 0;
      for (const Batch& b : batches_) total += b.keys.size();
      return total >= n;
    });
  }
  std::vector<Batch> batches() {
    std::lock_guard lock(mu_);
    return batches_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  bool held_ = false;
  bool fail_ = false;
  int entered_ = 0;
  std::vector<Batch> batches_;
};

TEST(ForwardQueueTest, SendsInOrderGroupingConsecutiveItemsByOwnerAndPool) {
  FakeSender fake;
  fake.Hold(true);
  ForwardQueue q(1000, fake.sender());
  // The first item is taken at once and held in the sender; the rest queue up behind it.
  ASSERT_TRUE(q.TryPush(Item("b:1", "p", 0)));
  ASSERT_TRUE(fake.WaitEntered(1));
  uint64_t n = 1;
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(q.TryPush(Item("b:1", "p", n++)));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(q.TryPush(Item("c:1", "p", n++)));
  ASSERT_TRUE(q.TryPush(Item("c:1", "q", n++)));
  for (int i = 0; i < 150; ++i) ASSERT_TRUE(q.TryPush(Item("b:1", "p", n++)));
  fake.Hold(false);
  ASSERT_TRUE(fake.WaitKeys(n));

  auto batches = fake.batches();
  ASSERT_EQ(batches.size(), 7u);
  std::vector<std::tuple<std::string, std::string, size_t>> shape;
  for (const auto& b : batches) shape.emplace_back(b.owner, b.pool, b.keys.size());
  EXPECT_EQ(shape, (std::vector<std::tuple<std::string, std::string, size_t>>{{"b:1", "p", 1},
                                                                              {"b:1", "p", 3},
                                                                              {"c:1", "p", 2},
                                                                              {"c:1", "q", 1},
                                                                              {"b:1", "p", 64},
                                                                              {"b:1", "p", 64},
                                                                              {"b:1", "p", 22}}));
  uint64_t expect = 0;
  for (const auto& b : batches) {
    for (uint64_t k : b.keys) EXPECT_EQ(k, expect++);
  }
  q.Stop();
  auto c = q.counters();
  EXPECT_EQ(c.enqueued, n);
  EXPECT_EQ(c.sent, n);
  EXPECT_EQ(c.batches, 7u);
  EXPECT_EQ(c.dropped, 0u);
  EXPECT_EQ(c.failed, 0u);
  EXPECT_EQ(c.queued, 0u);
}

TEST(ForwardQueueTest, DropsWhenFullWithoutBlocking) {
  FakeSender fake;
  fake.Hold(true);
  ForwardQueue q(4, fake.sender());
  ASSERT_TRUE(q.TryPush(Item("b:1", "p", 0)));
  ASSERT_TRUE(fake.WaitEntered(1));  // in flight: not in the queue any more
  for (uint64_t i = 1; i <= 4; ++i) EXPECT_TRUE(q.TryPush(Item("b:1", "p", i)));
  auto start = std::chrono::steady_clock::now();
  for (uint64_t i = 5; i < 15; ++i) EXPECT_FALSE(q.TryPush(Item("b:1", "p", i)));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 100ms);
  auto c = q.counters();
  EXPECT_EQ(c.enqueued, 5u);
  EXPECT_EQ(c.dropped, 10u);
  EXPECT_EQ(c.queued, 4u);
  fake.Hold(false);
  ASSERT_TRUE(fake.WaitKeys(5));
  EXPECT_TRUE(q.TryPush(Item("b:1", "p", 99)));  // room again
  ASSERT_TRUE(fake.WaitKeys(6));
  q.Stop();
  c = q.counters();
  EXPECT_EQ(c.sent, 6u);
  EXPECT_EQ(c.dropped, 10u);
}

TEST(ForwardQueueTest, FailedBatchesAreCountedPerItem) {
  FakeSender fake;
  fake.Fail(true);
  fake.Hold(true);
  ForwardQueue q(100, fake.sender());
  ASSERT_TRUE(q.TryPush(Item("b:1", "p", 0)));
  ASSERT_TRUE(fake.WaitEntered(1));
  for (uint64_t i = 1; i <= 5; ++i) ASSERT_TRUE(q.TryPush(Item("b:1", "p", i)));
  fake.Hold(false);
  ASSERT_TRUE(fake.WaitKeys(6));
  q.Stop();
  auto c = q.counters();
  EXPECT_EQ(c.failed, 6u);
  EXPECT_EQ(c.sent, 0u);
  EXPECT_EQ(c.batches, 2u);
}

TEST(ForwardQueueTest, StopDiscardsWhatWaitsAndIsPrompt) {
  FakeSender fake;
  fake.Hold(true);
  auto q = std::make_unique<ForwardQueue>(100, fake.sender());
  ASSERT_TRUE(q->TryPush(Item("b:1", "p", 0)));
  ASSERT_TRUE(fake.WaitEntered(1));
  for (uint64_t i = 1; i <= 10; ++i) ASSERT_TRUE(q->TryPush(Item("b:1", "p", i)));
  // Release the batch in flight shortly after Stop begins: Stop waits for it only.
  std::thread release([&] {
    std::this_thread::sleep_for(20ms);
    fake.Hold(false);
  });
  auto start = std::chrono::steady_clock::now();
  q->Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 500ms);
  release.join();
  auto c = q->counters();
  EXPECT_EQ(c.sent, 1u);
  EXPECT_EQ(c.dropped, 10u);
  EXPECT_EQ(c.queued, 0u);
  EXPECT_FALSE(q->TryPush(Item("b:1", "p", 11)));
  EXPECT_EQ(q->counters().dropped, 11u);
  q->Stop();  // idempotent
  q.reset();
  EXPECT_EQ(fake.batches().size(), 1u);

  // An idle queue stops at once too.
  ForwardQueue idle(8, fake.sender());
  start = std::chrono::steady_clock::now();
  idle.Stop();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 100ms);
}

}  // namespace
}  // namespace tokenmem::cluster
