// PoolCollector: the agent's store metrics, read at scrape time from the
// pools' snapshots and the lease table (nothing is counted twice and
// nothing on the data path pays for metrics).
//
// Labels are bounded: `pool` (pool names, which operators create), `tier`
// (dram, cxl, nvme) and a few fixed words. Never a key, a lease id or
// secret, a client address. Counters stay monotonic when a pool is deleted
// and created again under the same name (counter_carry.h). A pool's
// per-tier series exist for the tiers it reserves capacity in.
//
// docs/observability.md lists every family with its labels and meaning.
//
// Thread-safe: Collect may be called from several threads; scrapes are
// serialised inside.
#pragma once

#include <prometheus/collectable.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http/counter_carry.h"
#include "pool/lease_table.h"
#include "pool/pool_manager.h"

namespace tokenmem::http {

struct CollectorOptions {
  std::string version;
  std::string node_name;
  std::chrono::system_clock::time_point started = std::chrono::system_clock::now();
  // Connections on the local data socket (client processes on this node);
  // empty: tokenmem_local_clients is not exported.
  std::function<size_t()> local_clients;
};

class PoolCollector final : public prometheus::Collectable {
 public:
  // `pools` and `leases` must outlive the collector.
  PoolCollector(const pool::PoolManager* pools, const pool::LeaseTable* leases,
                CollectorOptions options);

  std::vector<prometheus::MetricFamily> Collect() const override;

 private:
  const pool::PoolManager* pools_;
  const pool::LeaseTable* leases_;
  CollectorOptions options_;

  mutable std::mutex mu_;  // one scrape at a time; guards the members below
  mutable CounterCarry carry_;
  mutable std::map<std::string, std::weak_ptr<pool::Pool>> seen_;  // pool objects by name
};

}  // namespace tokenmem::http
