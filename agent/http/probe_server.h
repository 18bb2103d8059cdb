// ProbeServer: the kubelet's /healthz and /readyz on a port of their own
// (http.probe_listen), so that slow clients of the main HTTP port cannot
// starve the liveness probe and get the agent restarted.
//
// The main server (cpp-httplib) hands each connection to one of a few
// worker threads for as long as the client takes; a handful of clients that
// trickle their request in hold every worker. This server never blocks on a
// client: one thread polls every connection (non-blocking sockets), each
// connection has a deadline from its accept (read_timeout) and carries one
// request: GET or HEAD of a registered path, answered with
// "Connection: close". Beyond max_connections the oldest connection is
// closed to make room, so a flood of idle connections delays a probe by at
// most one poll round.
//
// Behaviour: a registered path answers its handler's response; another path
// is 404; another method is 405; a request head over 4 KiB is 431; a
// connection that has sent no complete head by its deadline is closed
// without an answer.
//
// Thread-safety: handlers run on the server's one thread. Start, port and
// Stop may be called from any one thread; Stop joins the thread.
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "http/http_server.h"
#include "tokenmem/common/status.h"

namespace tokenmem::http {

struct ProbeServerOptions {
  // "host:port"; IPv6 hosts in brackets; port 0 picks a free port.
  std::string listen;
  std::map<std::string, HttpHandler> routes;  // exact path -> handler
  // From accept to the end of the answer; the kubelet's probes finish in
  // well under a millisecond on loopback.
  std::chrono::milliseconds read_timeout{1000};
  size_t max_connections = 64;
};

class ProbeServer {
 public:
  // kInvalidArgument for a malformed address or no routes; kIoError when
  // the address cannot be bound; the message names the address.
  static Result<std::unique_ptr<ProbeServer>> Start(ProbeServerOptions options);
  ~ProbeServer();  // Stop()
  ProbeServer(const ProbeServer&) = delete;
  ProbeServer& operator=(const ProbeServer&) = delete;

  int port() const { return port_; }
  const std::string& address() const { return address_; }
  // Connections closed at their deadline or to make room (for tests).
  uint64_t cut_connections() const { return cut_.load(std::memory_order_relaxed); }

  // Stops accepting, closes every connection, joins the thread. Idempotent.
  void Stop();

 private:
  explicit ProbeServer(ProbeServerOptions options) : options_(std::move(options)) {}
  void Run();

  ProbeServerOptions options_;
  int listen_fd_ = -1;
  int wake_fd_ = -1;  // eventfd: Stop wakes the poll
  int port_ = 0;
  std::string address_;
  std::atomic<uint64_t> cut_{0};
  std::thread thread_;
  bool stopped_ = false;
};

}  // namespace tokenmem::http
