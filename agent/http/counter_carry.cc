#include "http/counter_carry.h"

#include <algorithm>
#include <vector>

namespace tokenmem::http {
namespace {

// Calls f(a_field, b_field) for every counter of the two PoolCounters. The
// one place that lists PoolCounters' fields: a field added there must be
// added here (and exported in pool_collector.cc).
template <typename A, typename B, typename F>
void ForEachCounter(A& a, B& b, F f) {
  f(a.puts, b.puts);
  f(a.gets, b.gets);
  f(a.misses, b.misses);
  f(a.prefix_lookups, b.prefix_lookups);
  f(a.prefix_keys_matched, b.prefix_keys_matched);
  f(a.expired, b.expired);
  f(a.checksum_failures, b.checksum_failures);
  f(a.quota_rejections, b.quota_rejections);
  f(a.capacity_rejections, b.capacity_rejections);
  f(a.io_errors, b.io_errors);
  for (size_t t = 0; t < a.tiers.size(); ++t) {
    auto& x = a.tiers[t];
    auto& y = b.tiers[t];
    f(x.hits, y.hits);
    f(x.bytes_read, y.bytes_read);
    f(x.bytes_written, y.bytes_written);
    f(x.demotions_out, y.demotions_out);
    f(x.promotions_in, y.promotions_in);
    f(x.bytes_demoted_out, y.bytes_demoted_out);
    f(x.bytes_promoted_in, y.bytes_promoted_in);
    f(x.evictions, y.evictions);
  }
}

}  // namespace

void AddCounters(pool::PoolCounters* a, const pool::PoolCounters& b) {
  ForEachCounter(*a, b, [](uint64_t& x, const uint64_t& y) { x += y; });
}

bool AnyCounterDecreased(const pool::PoolCounters& before, const pool::PoolCounters& now) {
  bool decreased = false;
  ForEachCounter(before, now, [&](const uint64_t& x, const uint64_t& y) { decreased |= y < x; });
  return decreased;
}

pool::PoolCounters CounterCarry::Update(const std::string& name, bool same_object,
                                        const pool::PoolCounters& now) {
  auto [it, inserted] = entries_.try_emplace(name);
  Entry& e = it->second;
  if (!inserted && (!same_object || AnyCounterDecreased(e.last, now))) {
    AddCounters(&e.carry, e.last);
  }
  e.last = now;
  e.absent_since = 0;
  pool::PoolCounters out = e.carry;
  AddCounters(&out, now);
  if (inserted) Trim();
  return out;
}

void CounterCarry::Absent(const std::string& name) {
  auto it = entries_.find(name);
  if (it == entries_.end() || it->second.absent_since != 0) return;
  Entry& e = it->second;
  AddCounters(&e.carry, e.last);
  e.last = {};
  e.absent_since = ++tick_;
}

void CounterCarry::Trim() {
  if (entries_.size() <= max_names_) return;
  std::vector<std::pair<uint64_t, std::string>> absent;
  for (const auto& [name, e] : entries_) {
    if (e.absent_since != 0) absent.emplace_back(e.absent_since, name);
  }
  std::sort(absent.begin(), absent.end());
  for (const auto& [since, name] : absent) {
    if (entries_.size() <= max_names_) break;
    entries_.erase(name);
  }
}

}  // namespace tokenmem::http
