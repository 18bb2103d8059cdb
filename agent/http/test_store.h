// Test helpers for agent/http: a real PoolManager and LeaseTable in a
// temporary directory, some traffic, and ways to read a scrape back.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::http::testing {

inline constexpr uint64_t kBlock = 4096;

class TestStore {
 public:
  TestStore() {
    pool::PoolManagerOptions options;
    options.tier_capacity = {.dram = 64 * kBlock, .nvme = 256 * kBlock};
    options.nvme_root = dir_.path();
    options.nvme_segment_bytes = 1 << 20;
    auto manager = pool::PoolManager::Open(options);
    EXPECT_TRUE(manager.ok()) << manager.status().ToString();
    if (manager.ok()) pools = std::move(manager).value();
    auto created = leases.Create({.quota_bytes = 1 << 30, .owner = "test-owner"});
    EXPECT_TRUE(created.ok()) << created.status().ToString();
    lease = created->account;
    secret = created->secret;
  }

  std::shared_ptr<pool::Pool> CreatePool(const std::string& name, uint64_t dram_blocks = 4,
                                         uint64_t nvme_blocks = 32) {
    pool::PoolSpec spec;
    spec.name = name;
    spec.block_size = kBlock;
    spec.capacity = {.dram = dram_blocks * kBlock, .nvme = nvme_blocks * kBlock};
    auto p = pools->Create(spec);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : nullptr;
  }

  static BlockKey Key(uint64_t i) { return BlockKey{i + 1, ~i}; }

  // `n` puts (keys 0..n-1), a get of each (hits; with more blocks than the
  // DRAM share, some come from NVMe), one get of an absent key (a miss), and
  // a prefix lookup of keys 0..n.
  void Traffic(pool::Pool& p, uint64_t n) {
    std::vector<std::byte> data(kBlock, std::byte{7});
    for (uint64_t i = 0; i < n; ++i) {
      auto put = p.Put(Key(i), data, lease);
      EXPECT_TRUE(put.ok()) << put.status().ToString();
    }
    std::vector<std::byte> out(kBlock);
    for (uint64_t i = 0; i < n; ++i) EXPECT_TRUE(p.Get(Key(i), out).ok()) << i;
    EXPECT_TRUE(p.Get(Key(1000), out).status().IsNotFound());
    std::vector<BlockKey> chain;
    for (uint64_t i = 0; i <= n; ++i) chain.push_back(Key(i));
    p.LookupPrefix(chain, nullptr);
  }

  tokenmem::testing::TempDir dir_;
  std::unique_ptr<pool::PoolManager> pools;
  pool::LeaseTable leases;
  std::shared_ptr<pool::LeaseAccount> lease;
  std::string secret;
};

// One sample of a text exposition: "name{labels} value".
struct Sample {
  std::string name;
  std::map<std::string, std::string> labels;
  double value = 0;
};

// Parses the samples of a Prometheus text exposition (comments skipped).
// Label values in this project never hold quotes, commas or backslashes.
inline std::vector<Sample> ParseSamples(const std::string& text) {
  std::vector<Sample> out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string line = text.substr(pos, end - pos);
    pos = end + 1;
    if (line.empty() || line[0] == '#') continue;
    Sample s;
    size_t name_end = line.find_first_of("{ ");
    s.name = line.substr(0, name_end);
    size_t rest = name_end;
    if (line[name_end] == '{') {
      size_t close = line.find('}', name_end);
      std::string labels = line.substr(name_end + 1, close - name_end - 1);
      size_t at = 0;
      while (at < labels.size()) {
        size_t eq = labels.find('=', at);
        size_t q1 = labels.find('"', eq);
        size_t q2 = labels.find('"', q1 + 1);
        s.labels[labels.substr(at, eq - at)] = labels.substr(q1 + 1, q2 - q1 - 1);
        at = q2 + 1;
        if (at < labels.size() && labels[at] == ',') ++at;
      }
      rest = close + 1;
    }
    s.value = std::stod(line.substr(rest + 1));
    out.push_back(std::move(s));
  }
  return out;
}

// The value of the one sample named `name` whose labels include `labels`.
inline std::optional<double> Find(const std::vector<Sample>& samples, const std::string& name,
                                  const std::map<std::string, std::string>& labels = {}) {
  std::optional<double> found;
  for (const auto& s : samples) {
    if (s.name != name) continue;
    bool match = true;
    for (const auto& [k, v] : labels) {
      auto it = s.labels.find(k);
      match = match && it != s.labels.end() && it->second == v;
    }
    if (!match) continue;
    EXPECT_FALSE(found.has_value()) << "two samples of " << name << " match";
    found = s.value;
  }
  return found;
}

}  // namespace tokenmem::http::testing
