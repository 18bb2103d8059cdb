// HttpServer: a small read-only HTTP/1.1 server (cpp-httplib) that maps
// exact paths to handlers. It knows nothing of pools or metrics; the agent's
// endpoints are wired in agent_http.h.
//
// Behaviour: GET and HEAD on a registered path call its handler; any other
// method on a registered path is 405 (with an Allow header); an unknown path
// is 404; a handler that throws becomes 500. Request bodies are refused
// beyond a few KiB. A handful of worker threads serve requests, so a slow
// scrape never starves the health probes for long.
//
// Thread-safety: handlers run on the server's worker threads, several at a
// time, and must be thread-safe. Start, port and Stop may be called from any
// one thread; Stop (and the destructor) waits for running handlers.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "tokenmem/common/status.h"

namespace httplib {
class Server;
}

namespace tokenmem::http {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpHandler = std::function<HttpResponse()>;

struct HttpServerOptions {
  // "host:port"; IPv6 hosts in brackets ("[::1]:9464"); port 0 picks a
  // free port (see port()).
  std::string listen;
  std::map<std::string, HttpHandler> routes;  // exact path -> handler
  int worker_threads = 4;
};

class HttpServer {
 public:
  // Binds and starts serving. kInvalidArgument for a malformed listen
  // address or an empty route table; kIoError when the address cannot be
  // bound (in use, not this host's); the message names the address.
  static Result<std::unique_ptr<HttpServer>> Start(HttpServerOptions options);
  ~HttpServer();  // Stop()
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // The port actually bound.
  int port() const { return port_; }
  // "host:port" as bound, IPv6 hosts in brackets.
  const std::string& address() const { return address_; }

  // Stops accepting, waits for running requests and joins the threads.
  // Idempotent.
  void Stop();

 private:
  HttpServer() = default;

  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
  std::string address_;
  bool stopped_ = false;
};

}  // namespace tokenmem::http
