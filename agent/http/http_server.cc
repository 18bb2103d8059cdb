#include "http/http_server.h"

#include <httplib.h>
#include <sys/socket.h>

#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <exception>

#include "tokenmem/common/log.h"

namespace tokenmem::http {
namespace {

constexpr char kLog[] = "http";
constexpr size_t kMaxRequestBody = 4096;

struct ListenAddress {
  std::string host;  // without brackets
  int port = 0;
};

Result<ListenAddress> ParseListen(const std::string& text) {
  auto bad = [&](const std::string& why) {
    return InvalidArgument("http listen address '" + text + "': " + why);
  };
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos) return bad("expected host:port");
  std::string host = text.substr(0, colon);
  const std::string port = text.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find_first_of("[]:") != std::string::npos) {
    return bad("an IPv6 address goes in brackets, as in [::1]:9464");
  }
  if (host.empty()) return bad("empty host");
  int value = -1;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 0 ||
      value > 65535) {
    return bad("the port must be a number in 0..65535");
  }
  return ListenAddress{std::move(host), value};
}

std::string JoinHostPort(const std::string& host, int port) {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

// httplib matches routes as regular expressions; ours are exact paths.
std::string ExactPattern(const std::string& path) {
  std::string out;
  for (char c : path) {
    if (c != '\0' && std::strchr(".^$|()[]{}*+?\\", c) != nullptr) out += '\\';
    out += c;
  }
  return out;
}

void Answer(const HttpResponse& from, httplib::Response& to) {
  to.status = from.status;
  to.set_content(from.body, from.content_type.c_str());
}

}  // namespace

Result<std::unique_ptr<HttpServer>> HttpServer::Start(HttpServerOptions options) {
  TM_ASSIGN_OR_RETURN(ListenAddress listen, ParseListen(options.listen));
  if (options.routes.empty()) return InvalidArgument("http server: no routes");
  const int workers = options.worker_threads < 1 ? 1 : options.worker_threads;

  std::unique_ptr<HttpServer> self(new HttpServer());
  self->server_ = std::make_unique<httplib::Server>();
  httplib::Server& server = *self->server_;
  server.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  server.set_payload_max_length(kMaxRequestBody);
  server.set_read_timeout(std::chrono::seconds(5));
  server.set_write_timeout(std::chrono::seconds(5));
  // Short keep-alive so that Stop never waits long on idle connections.
  server.set_keep_alive_timeout(1);
  server.set_keep_alive_max_count(100);
  // SO_REUSEADDR only: httplib's default adds SO_REUSEPORT, which would let
  // a second agent bind the same port and share the scrapes.
  server.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  for (auto& [route, handler] : options.routes) {
    const std::string path = ExactPattern(route);
    server.Get(path, [handler](const httplib::Request&, httplib::Response& res) {
      Answer(handler(), res);
    });
    auto refuse = [](const httplib::Request& req, httplib::Response& res) {
      res.set_header("Allow", "GET, HEAD");
      Answer({.status = 405, .body = "method " + req.method + " not allowed; use GET\n"}, res);
    };
    server.Post(path, refuse);
    server.Put(path, refuse);
    server.Patch(path, refuse);
    server.Delete(path, refuse);
    server.Options(path, refuse);
  }
  server.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
    if (res.status == 404) {
      Answer({.status = 404, .body = "no such path: " + req.path + "\n"}, res);
    } else if (res.body.empty()) {
      Answer({.status = res.status, .body = "HTTP error " + std::to_string(res.status) + "\n"},
             res);
    }
  });
  server.set_exception_handler(
      [](const httplib::Request& req, httplib::Response& res, std::exception_ptr error) {
        std::string what = "unknown error";
        try {
          if (error) std::rethrow_exception(error);
        } catch (const std::exception& e) {
          what = e.what();
        } catch (...) {
        }
        TM_LOG(ERROR, kLog) << req.method << " " << req.path << " failed: " << what;
        Answer({.status = 500, .body = "internal error\n"}, res);
      });

  errno = 0;
  if (listen.port == 0) {
    self->port_ = server.bind_to_any_port(listen.host);
  } else if (server.bind_to_port(listen.host, listen.port)) {
    self->port_ = listen.port;
  } else {
    self->port_ = -1;
  }
  if (self->port_ <= 0) {
    const int err = errno;
    return IoError("cannot listen on " + options.listen + " for HTTP" +
                   (err != 0 ? std::string(": ") + std::strerror(err) : std::string()) +
                   " (port in use, or not an address of this host)");
  }
  self->address_ = JoinHostPort(listen.host, self->port_);
  self->thread_ = std::thread([&server] { server.listen_after_bind(); });
  // Stop() only works once the accept loop runs; wait for it so that a
  // Stop right after Start cannot miss it.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!server.is_running()) {
    if (std::chrono::steady_clock::now() > deadline) {
      self->Stop();
      return IoError("HTTP server on " + self->address_ + " did not start");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  TM_LOG(INFO, kLog) << "serving on " << self->address_;
  return self;
}

void HttpServer::Stop() {
  if (stopped_) return;
  stopped_ = true;
  if (server_) server_->stop();
  if (thread_.joinable()) thread_.join();
  if (!address_.empty()) {
    TM_LOG(INFO, kLog) << "stopped serving on " << address_;
  }
}

HttpServer::~HttpServer() { Stop(); }

}  // namespace tokenmem::http
