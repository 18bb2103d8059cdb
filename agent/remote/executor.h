// A fixed set of threads running submitted tasks in order of submission.
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
  Executor(unsigned threads, const std::string& name);
  ~Executor();  // Stop()
  Executor(const Executor&) = delete;
  Executor& operator=(const Executor&) = delete;

  // False (and the task dropped) after Stop().
  bool Submit(std::function<void()> task);
  // Runs what was submitted, then joins the threads.
  void Stop();

 private:
  void Run();
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace tokenmem::remote
