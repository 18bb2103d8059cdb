// Reconciler: makes this node's pools match the TokenMemoryPool objects and
// reports the node in its TokenMemoryNode status.
//
// One thread lists the pools, then watches from the list's resourceVersion;
// a 410 Gone lists again at once; an unreachable API server is retried with
// exponential backoff while existing pools stay as they are. Every event
// reconciles the whole set: missing pools are created, a pool whose spec
// changed is deleted and created again (its blocks are dropped, which the
// condition says), and a pool created from an object that is gone is
// deleted. Only pools this reconciler created are ever changed or deleted
// (the set is kept in `managed_state_file`, so it survives restarts); pools
// from the config file are left alone. Each object gets a Ready condition
// (True/False, reason, message) through the status subresource, written
// only when it changes. A second thread writes the TokenMemoryNode status
// every `node_status_interval`.
//
// Thread-safe: Start/Stop from one thread; the queries from any.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "k8s/kube_client.h"
#include "pool/pool_manager.h"

namespace tokenmem::k8s {

struct ReconcilerOptions {
  std::string node_name;  // names the TokenMemoryNode and the conditions' messages
  std::string agent_version;
  std::filesystem::path managed_state_file;  // empty: the set lives in memory only
  std::chrono::milliseconds backoff_initial{500};
  std::chrono::milliseconds backoff_max{30000};
  std::chrono::milliseconds node_status_interval{10000};
  // Health for the node status: "Ready" when it returns no problem lines.
  std::function<std::vector<std::string>()> problems;
};

class Reconciler {
 public:
  // Neither pointer is owned; both must outlive the reconciler.
  Reconciler(KubeClient* client, pool::PoolManager* pools, ReconcilerOptions options);
  ~Reconciler();
  Reconciler(const Reconciler&) = delete;
  Reconciler& operator=(const Reconciler&) = delete;

  // Loads the managed set and starts both threads. Never waits for the API
  // server. kIoError when the state file exists but cannot be read.
  Status Start();
  // Stops both threads (returns within the client's watch idle timeout).
  void Stop();

  // One full list-and-reconcile pass on the calling thread (no watch).
  Status SyncOnce();
  // Writes the TokenMemoryNode status once (creates the object if absent).
  Status ReportNode();

  std::set<std::string> ManagedPools() const;
  uint64_t lists() const { return lists_.load(); }        // successful lists
  uint64_t failures() const { return failures_.load(); }  // failed list/watch rounds
  uint64_t gone_relists() const { return gone_relists_.load(); }

 private:
  Status ListAndWatch();
  void Loop();
  void NodeLoop();
  void ReconcileAll();  // mu_ held
  // What the object's Ready condition should say after making its pool right.
  struct Verdict {
    bool ready;
    std::string reason;
    std::string message;
    // Nothing changed: a Ready condition with this status and generation
    // stands as it is (keeps "Replaced" from being overwritten).
    bool steady = false;
  };
  Verdict ReconcileOne(const nlohmann::json& object);  // mu_ held
  void WriteCondition(const nlohmann::json& object, const Verdict& verdict);
  Status LoadManaged();
  void SaveManaged();                             // mu_ held
  bool WaitFor(std::chrono::milliseconds delay);  // false when stopping

  KubeClient* client_;
  pool::PoolManager* pools_;
  ReconcilerOptions options_;

  mutable std::mutex mu_;                          // guards desired_, managed_, resource_version_
  std::map<std::string, nlohmann::json> desired_;  // objects by name
  std::set<std::string> managed_;
  std::string resource_version_;

  std::mutex stop_mu_;
  std::condition_variable stop_cv_;
  bool stopping_ = false;
  std::thread loop_;
  std::thread node_loop_;
  std::atomic<uint64_t> lists_{0};
  std::atomic<uint64_t> failures_{0};
  std::atomic<uint64_t> gone_relists_{0};
};

}  // namespace tokenmem::k8s
