#include "pool/mover.h"

namespace tokenmem::pool {

Mover::Mover(PoolManager* pools, std::chrono::milliseconds interval)
    : pools_(pools), interval_(interval), thread_([this](std::stop_token st) { Run(st); }) {}

Mover::~Mover() {
  thread_.request_stop();
  cv_.notify_all();
}

void Mover::Wake() {
  {
    std::lock_guard lock(mu_);
    woken_ = true;
  }
  cv_.notify_all();
}

void Mover::Run(std::stop_token stop) {
  while (!stop.stop_requested()) {
    pools_->MaintainAll();
    std::unique_lock lock(mu_);
    cv_.wait_for(lock, stop, interval_, [this] { return woken_; });
    woken_ = false;
  }
}

}  // namespace tokenmem::pool
