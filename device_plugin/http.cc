#include "http.h"

#include <httplib.h>
#include <sys/socket.h>

#include <charconv>

#include "tokenmem/common/log.h"

namespace tokenmem::device_plugin {
namespace {

constexpr char kLog[] = "http";

}  // namespace

Result<std::unique_ptr<HttpEndpoint>> HttpEndpoint::Start(const std::string& listen,
                                                          HttpRoutes routes) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgument("http listen address '" + listen + "': expected host:port");
  }
  std::string host = listen.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  const std::string port_text = listen.substr(colon + 1);
  auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
      port < 0 || port > 65535) {
    return InvalidArgument("http listen address '" + listen + "': bad port");
  }

  std::unique_ptr<HttpEndpoint> self(new HttpEndpoint());
  self->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *self->server_;
  server.new_task_queue = [] { return new httplib::ThreadPool(2); };
  server.set_payload_max_length(4096);
  server.set_read_timeout(std::chrono::seconds(5));
  server.set_write_timeout(std::chrono::seconds(5));
  server.set_keep_alive_timeout(1);
  // SO_REUSEADDR only: httplib's default also sets SO_REUSEPORT, which would
  // let a second plugin bind the same port.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });
  for (auto& [path, handler] : routes) {
    auto serve = [handler](const httplib::Request&, httplib::Response& res) {
      HttpReply reply = handler();
      res.status = reply.status;
      res.set_content(reply.body, reply.content_type.c_str());
    };
    server.Get(path, serve);
    auto refuse = [](const httplib::Request&, httplib::Response& res) {
      res.status = 405;
      res.set_header("Allow", "GET, HEAD");
      res.set_content("method not allowed\n", "text/plain; charset=utf-8");
    };
    server.Post(path, refuse);
    server.Put(path, refuse);
    server.Delete(path, refuse);
    server.Patch(path, refuse);
  }
  if (port == 0) {
    self->port_ = server.bind_to_any_port(host);
    if (self->port_ < 0) return IoError("cannot bind http listener on " + listen);
  } else {
    if (!server.bind_to_port(host, port)) return IoError("cannot bind http listener on " + listen);
    self->port_ = port;
  }
  self->thread_ = std::thread([&server] { server.listen_after_bind(); });
  // httplib's stop() does nothing before the loop runs, so a Stop() right
  // after Start() would leave the thread listening: wait for the loop.
  for (int i = 0; i < 2000 && !server.is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  TM_LOG(Info, kLog) << "serving /metrics, /healthz and /readyz on " << host << ":" << self->port_;
  return self;
}

HttpEndpoint::~HttpEndpoint() { Stop(); }

void HttpEndpoint::Stop() {
  if (!server_) return;
  server_->stop();
  if (thread_.joinable()) thread_.join();
  server_.reset();
}

}  // namespace tokenmem::device_plugin
