#include "remote/executor.h"

#include <pthread.h>

namespace tokenmem::remote {

Executor::Executor(unsigned threads, const std::string& name, size_t max_queued)
    : max_queued_(max_queued) {
  for (unsigned i = 0; i < std::max(1u, threads); ++i) {
    threads_.emplace_back([this] { Run(); });
    std::string thread_name = (name + "-" + std::to_string(i)).substr(0, 15);
    pthread_setname_np(threads_.back().native_handle(), thread_name.c_str());
  }
}

Executor::~Executor() { Stop(); }

Executor::Submitted Executor::Submit(std::function<void()> task) {
  {
    std::lock_guard lock(mu_);
    if (stopping_) return Submitted::kStopped;
    if (max_queued_ != 0 && tasks_.size() >= max_queued_) return Submitted::kFull;
    tasks_.push_back(std::move(task));
  }
  cv_.notify_one();
  return Submitted::kQueued;
}

void Executor::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

void Executor::Run() {
  while (true) {
    std::function<void()> task;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
      if (tasks_.empty()) return;  // stopping, and nothing left
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace tokenmem::remote
