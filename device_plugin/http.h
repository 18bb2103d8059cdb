// HttpEndpoint: the plugin's small HTTP server (cpp-httplib) for /metrics,
// /healthz and /readyz. GET or HEAD on a route calls its handler; other
// methods get 405, other paths 404. A few worker threads serve it.
//
// Thread-safety: handlers run on the server's threads, several at a time,
// and must be thread-safe. Start/Stop from one owner thread; Stop waits for
// running handlers.
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

namespace tokenmem::device_plugin {

struct HttpReply {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

using HttpRoutes = std::map<std::string, std::function<HttpReply()>>;

class HttpEndpoint {
 public:
  // Binds `listen` ("host:port"; port 0 picks a free one) and serves.
  // kInvalidArgument for a malformed address; kIoError when it cannot bind.
  static Result<std::unique_ptr<HttpEndpoint>> Start(const std::string& listen, HttpRoutes routes);
  ~HttpEndpoint();  // Stop()
  HttpEndpoint(const HttpEndpoint&) = delete;
  HttpEndpoint& operator=(const HttpEndpoint&) = delete;

  int port() const { return port_; }
  void Stop();

 private:
  HttpEndpoint() = default;
  std::unique_ptr<httplib::Server> server_;
  std::thread thread_;
  int port_ = 0;
};

}  // namespace tokenmem::device_plugin
