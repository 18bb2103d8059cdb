// Test-only stand-in for the Kubernetes API server: the tokenmem.io
// resources in memory, behind cpp-httplib on 127.0.0.1. Lists carry a
// resourceVersion; ?watch=1 streams newline-delimited JSON events
// (chunked) after the given version and ends after `watch_window`; a
// version older than Compact() gets an ERROR event with code 410; PUT
// .../status stores the status; POST creates. Down()/Up() stop and restart
// the listener on the same port. Thread-safe.
#pragma once

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

namespace tokenmem::k8s::testing {

class ApiServerStub {
 public:
  ApiServerStub();
  ~ApiServerStub();

  bool Up();  // listens (port chosen the first time, reused afterwards)
  void Down();
  int port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

  // Creates or replaces a TokenMemoryPool's spec (ADDED / MODIFIED event).
  void ApplyPool(const std::string& name, const nlohmann::json& spec);
  void DeletePool(const std::string& name);  // DELETED event
  // Forgets every event so far: watches from older versions get 410, and
  // open watches end.
  void Compact();

  nlohmann::json Pool(const std::string& name) const;  // null when absent
  nlohmann::json Node(const std::string& name) const;  // null when absent
  // TokenMemoryPool status writes accepted.
  int status_writes() const { return status_writes_.load(); }
  int watches() const { return watches_.load(); }
  // The Authorization header of the latest list ("" when none was sent).
  std::string last_authorization() const;

  std::chrono::milliseconds watch_window{400};

 private:
  struct Event {
    uint64_t rv;
    std::string type;
    nlohmann::json object;
  };
  void Record(const std::string& type, nlohmann::json& object);  // mu_ held
  void Routes();
  void HandleWatch(const httplib::Request& req, httplib::Response& res);

  mutable std::mutex mu_;
  std::condition_variable changed_;
  uint64_t rv_ = 100;
  uint64_t compacted_ = 0;  // versions below this are gone
  uint64_t epoch_ = 0;      // bumped by Compact and Down: open watches end
  bool down_ = true;
  std::map<std::string, nlohmann::json> pools_;
  std::map<std::string, nlohmann::json> nodes_;
  std::vector<Event> events_;
  std::atomic<int> status_writes_{0};
  std::atomic<int> watches_{0};
  std::string last_authorization_;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tokenmem::k8s::testing
