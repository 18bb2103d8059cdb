// AgentHttp: the agent's HTTP endpoints on one HttpServer.
//
//   GET /metrics    Prometheus text format 0.0.4: AgentMetrics' registry
//                   and the PoolCollector's store metrics.
//   GET /healthz    200 "ok": the process is alive and serving HTTP.
//   GET /readyz     200 "ready", or 503 with one line per problem
//                   (status_page.h says what is checked).
//   GET /v1/status  JSON: agent, tiers, pools, leases, peers.
// Everything else is 404; other methods on these paths 405. Nothing here
// changes state, and nothing shows a secret.
//
// Logs one line when readiness changes (with the reasons), not per request.
//
// Thread-safe: requests are served concurrently; SetStopping and Stop may
// be called from any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "http/agent_metrics.h"
#include "http/http_server.h"
#include "http/pool_collector.h"
#include "http/probe_server.h"
#include "http/remote_collector.h"
#include "http/status_page.h"

namespace tokenmem::http {

struct AgentHttpOptions {
  std::string listen;  // "host:port"; port 0 picks one
  // "host:port" of a port answering only /healthz and /readyz (ProbeServer),
  // which slow clients of `listen` cannot starve; empty: none.
  std::string probe_listen;
  AgentFacts facts;
  const pool::PoolManager* pools = nullptr;  // must outlive the AgentHttp
  const pool::LeaseTable* leases = nullptr;  // must outlive the AgentHttp
  const AgentMetrics* metrics = nullptr;     // must outlive the AgentHttp
  // Connections on the local data socket; empty: not reported. Called from
  // the server's threads.
  std::function<size_t()> local_clients;
  // The remote data path's and the cluster's counters; empty: remote.listen
  // is off and their families are not exported.
  std::function<RemoteSnapshot()> remote;
};

class AgentHttp {
 public:
  // Errors as HttpServer::Start; kInvalidArgument when a pointer is null.
  static Result<std::unique_ptr<AgentHttp>> Start(AgentHttpOptions options);
  ~AgentHttp();  // Stop()

  // From now on /readyz answers 503 ("the agent is shutting down").
  void SetStopping() { stopping_.store(true); }
  void Stop();

  int port() const { return server_->port(); }
  const std::string& address() const { return server_->address(); }
  // The probe port; 0 without probe_listen.
  int probe_port() const { return probes_ ? probes_->port() : 0; }

  // What the endpoints answer, without HTTP (for tests and tools).
  HttpResponse Metrics() const;
  HttpResponse Ready();
  HttpResponse Status();
  // What /readyz would report now; empty when ready. Thread-safe.
  std::vector<std::string> Problems() { return CheckReadiness(); }

 private:
  explicit AgentHttp(AgentHttpOptions options);
  std::vector<std::string> CheckReadiness();

  AgentHttpOptions options_;
  PoolCollector collector_;
  std::unique_ptr<RemoteCollector> remote_collector_;  // with options_.remote
  std::atomic<bool> stopping_{false};
  std::mutex ready_mu_;
  bool was_ready_ = false;               // guarded by ready_mu_
  bool checked_ = false;                 // guarded by ready_mu_
  std::unique_ptr<ProbeServer> probes_;  // with options_.probe_listen
  std::unique_ptr<HttpServer> server_;   // last: stopped first, while the rest lives
};

}  // namespace tokenmem::http
