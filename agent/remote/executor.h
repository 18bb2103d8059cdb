// A fixed set of threads running submitted tasks in order of submission,
// with a bounded queue: a task beyond it is refused, not queued, so a
// flood of requests cannot grow the agent's memory without bound.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace tokenmem::remote {

class Executor {
 public:
  // `max_queued`: tasks waiting (not running) at most; 0 = unbounded.
  Executor(unsigned threads, const std::string& name, size_t max_queued = 0);
  ~Executor();  // Stop()
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  enum class Submitted { kQueued, kFull, kStopped };
  // kFull when max_queued tasks wait already, kStopped after Stop(); the
  // task is dropped in both cases.
  Submitted Submit(std::function<void()> task);
  // Runs what was submitted, then joins the threads.
  void Stop();

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  size_t max_queued_;
  std::vector<std::thread> threads_;
};

}  // namespace tokenmem::remote
