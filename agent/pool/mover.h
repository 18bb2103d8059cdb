// Mover: the background thread that runs PoolManager::MaintainAll() on a
// fixed interval (watermarks, TTL sweeps, NVMe tombstones), so that puts
// rarely wait for eviction I/O. Stops promptly when destroyed.
#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "pool/pool_manager.h"

namespace tokenmem::pool {

class Mover {
 public:
  Mover(PoolManager* pools, std::chrono::milliseconds interval);
  ~Mover();  // stops and joins
  Mover(const Mover&) = delete;
  Mover& operator=(const Mover&) = delete;

  // Runs a pass now instead of at the next tick.
  void Wake();

 private:
  void Run(std::stop_token stop);

  PoolManager* pools_;
  std::chrono::milliseconds interval_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  bool woken_ = false;
  std::jthread thread_;  // last: started after the members it uses
};

}  // namespace tokenmem::pool
