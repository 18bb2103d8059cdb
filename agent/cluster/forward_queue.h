// ForwardQueue: puts to a `scope: cluster` pool that this agent stored
// locally and must also hand to the key's owner, sent in the background.
//
// Bounded and lossy by design: TryPush never blocks the put that calls it;
// when `capacity_blocks` items are waiting, the item is dropped and counted
// (the block is still stored locally, so only the owner's copy is lost). One
// worker thread drains the queue in order, grouping consecutive items for
// the same owner and pool into batches of up to kMaxBatch, and hands each
// batch to the Sender. A failed batch is counted and not retried (the cache
// may drop data; the next put of the key forwards it again).
//
// Memory bound: capacity_blocks waiting items plus one batch in flight, each
// holding its block's bytes.
//
// Thread-safety: TryPush and counters() may be called from any thread.
// Stop() (and the destructor) must not be called from the Sender.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"

namespace tokenmem::cluster {

struct ForwardItem {
  std::string pool;
  BlockKey key;
  std::vector<std::byte> data;
  std::string owner_address;  // the owner's remote address (Member::address)
};

// Sends a batch of items, all for `owner_address` and `pool`, in the order
// they were pushed. May move the items' data out. OK: every item was
// delivered; an error: none is counted as sent. Called on the worker thread
// only, one batch at a time; it should bound its own time, since Stop waits
// for the batch in flight.
using Sender = std::function<Status(const std::string& owner_address, const std::string& pool,
                                    std::span<ForwardItem> items)>;

struct ForwardQueueCounters {
  uint64_t enqueued = 0;  // items accepted by TryPush
  uint64_t sent = 0;      // items in batches the Sender accepted
  uint64_t dropped = 0;   // items refused (queue full or stopped) or discarded by Stop
  uint64_t failed = 0;    // items in batches the Sender failed
  uint64_t batches = 0;   // Sender calls
  uint64_t queued = 0;    // items waiting now (not counting the batch in flight)
};

class ForwardQueue {
 public:
  static constexpr size_t kMaxBatch = 64;

  // Starts the worker. capacity_blocks 0 is taken as 1.
  ForwardQueue(size_t capacity_blocks, Sender sender);
  ~ForwardQueue();  // Stop()s

  ForwardQueue(const ForwardQueue&) = delete;
  ForwardQueue& operator=(const ForwardQueue&) = delete;

  // Queues `item` and returns true; returns false and counts a drop when
  // capacity_blocks items are waiting or the queue is stopped. Never blocks
  // on the Sender.
  bool TryPush(ForwardItem item);

  // Discards what is still waiting (counted as dropped: at shutdown a slow
  // or dead owner must not hold the agent up), waits for the batch in
  // flight, and joins the worker. Later TryPush calls return false.
  // Idempotent.
  void Stop();

  ForwardQueueCounters counters() const;

 private:
  void Run();

  const size_t capacity_;
  const Sender sender_;

  mutable std::mutex mu_;
  std::condition_variable wake_;
  std::deque<ForwardItem> queue_;
  bool stopping_ = false;
  ForwardQueueCounters counters_;

  std::mutex stop_mu_;
  std::thread worker_;
};

}  // namespace tokenmem::cluster
