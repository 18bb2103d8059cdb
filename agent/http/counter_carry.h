// CounterCarry: keeps each pool's exported counters monotonic when the pool
// object behind a name changes (deleted and created again, or reopened).
//
// A pool counts from zero when it is created; Prometheus counters must
// never go down while a series lives. CounterCarry remembers, per pool
// name, what earlier pool objects of that name had counted (the carry) and
// exports carry + current. A name is carried over when:
//   - the caller says the object changed (Update with same_object = false),
//   - any counter went down (an object we could not tell apart), or
//   - the name was missing from a scrape (Absent): its last values move into
//     the carry, so a later pool of that name goes on from there.
// What a pool counts between the last scrape and its deletion is lost (no
// one saw it); counters stay monotonic regardless.
//
// Not thread-safe: the caller serialises (one scrape at a time).
#pragma once

#include <cstddef>
#include <map>
#include <string>

#include "pool/pool_stats.h"

namespace tokenmem::http {

// a += b, field by field, over every counter of PoolCounters.
void AddCounters(pool::PoolCounters* a, const pool::PoolCounters& b);
// True when some counter of `now` is below the same counter of `before`.
bool AnyCounterDecreased(const pool::PoolCounters& before, const pool::PoolCounters& now);

class CounterCarry {
 public:
  // At most this many names are remembered; beyond it, names absent the
  // longest are forgotten first (their series would restart at zero).
  explicit CounterCarry(size_t max_names = 4096) : max_names_(max_names) {}

  // The counters to export for `name` given its current object's counters.
  pool::PoolCounters Update(const std::string& name, bool same_object,
                            const pool::PoolCounters& now);

  // `name` has no pool this scrape.
  void Absent(const std::string& name);

  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    pool::PoolCounters carry;
    pool::PoolCounters last;    // the current object's counters at the last Update
    uint64_t absent_since = 0;  // Absent()'s tick when absent, else 0
  };
  void Trim();

  size_t max_names_;
  uint64_t tick_ = 0;
  std::map<std::string, Entry> entries_;
};

}  // namespace tokenmem::http
