#include "cluster/forward_queue.h"

#include <algorithm>

#include "tokenmem/common/log.h"

namespace tokenmem::cluster {

ForwardQueue::ForwardQueue(size_t capacity_blocks, Sender sender)
    : capacity_(std::max<size_t>(capacity_blocks, 1)), sender_(std::move(sender)) {
  worker_ = std::thread([this] { Run(); });
}

ForwardQueue::~ForwardQueue() { Stop(); }

bool ForwardQueue::TryPush(ForwardItem item) {
  {
    std::lock_guard lock(mu_);
    if (stopping_ || queue_.size() >= capacity_) {
      ++counters_.dropped;
      return false;
    }
    queue_.push_back(std::move(item));
    ++counters_.enqueued;
  }
  wake_.notify_one();
  return true;
}

void ForwardQueue::Stop() {
  std::lock_guard stop_lock(stop_mu_);
  {
    std::lock_guard lock(mu_);
    if (!stopping_) {
      stopping_ = true;
      counters_.dropped += queue_.size();
      queue_.clear();
    }
  }
  wake_.notify_all();
  if (worker_.joinable()) worker_.join();
}

ForwardQueueCounters ForwardQueue::counters() const {
  std::lock_guard lock(mu_);
  ForwardQueueCounters c = counters_;
  c.queued = queue_.size();
  return c;
}

void ForwardQueue::Run() {
  std::vector<ForwardItem> batch;
  batch.reserve(kMaxBatch);
  for (;;) {
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;
      // Consecutive items for the first item's owner and pool.
      batch.push_back(std::move(queue_.front()));
      queue_.pop_front();
      while (batch.size() < kMaxBatch && !queue_.empty() &&
             queue_.front().owner_address == batch.front().owner_address &&
             queue_.front().pool == batch.front().pool) {
        batch.push_back(std::move(queue_.front()));
        queue_.pop_front();
      }
    }
    const std::string owner = batch.front().owner_address;
    const std::string pool = batch.front().pool;
    Status s = sender_(owner, pool, std::span<ForwardItem>(batch));
    {
      std::lock_guard lock(mu_);
      ++counters_.batches;
      (s.ok() ? counters_.sent : counters_.failed) += batch.size();
    }
    if (!s.ok()) {
      TM_LOG(DEBUG, "cluster") << "forwarding " << batch.size() << " blocks of pool " << pool
                               << " to " << owner << " failed: " << s.ToString();
    }
    batch.clear();
  }
}

}  // namespace tokenmem::cluster
