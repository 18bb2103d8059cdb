// Recency order of the blocks of one tier: the eviction policy's state.
//
// Front = most recently used. Pinned blocks are kept out of the list, so
// they are never victims. Not thread-safe: the pool's lock guards it.
#pragma once

#include <list>

#include "tokenmem/common/block_key.h"

namespace tokenmem::pool {

class LruList {
 public:
  using Handle = std::list<BlockKey>::iterator;

  Handle Insert(const BlockKey& key) {
    order_.push_front(key);
    return order_.begin();
  }
  // Inserts as least recently used: recovered blocks enter oldest first.
  Handle InsertCold(const BlockKey& key) {
    order_.push_back(key);
    return std::prev(order_.end());
  }
  void Touch(Handle h) { order_.splice(order_.begin(), order_, h); }
  void Erase(Handle h) { order_.erase(h); }
  bool empty() const { return order_.empty(); }

  // Most recent first; victims are taken from the back.
  std::list<BlockKey>& list() { return order_; }

 private:
  std::list<BlockKey> order_;
};

}  // namespace tokenmem::pool
