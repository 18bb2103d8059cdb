#include "http/probe_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "http/http_server.h"

namespace tokenmem::http {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

int Connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  return fd;
}

bool SendAll(int fd, const std::string& text) {
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::send(fd, text.data() + done, text.size() - done, MSG_NOSIGNAL);
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Everything the server sends until it closes, or nullopt at the deadline.
std::optional<std::string> ReadAll(int fd, milliseconds within) {
  const auto deadline = Clock::now() + within;
  std::string out;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return std::nullopt;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) continue;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n <= 0) return out;
    out.append(buf, static_cast<size_t>(n));
  }
}

// One request on a fresh connection; the whole answer, or nullopt.
std::optional<std::string> Request(int port, const std::string& request, milliseconds within) {
  int fd = Connect(port);
  std::optional<std::string> answer;
  if (SendAll(fd, request)) answer = ReadAll(fd, within);
  ::close(fd);
  return answer;
}

std::unique_ptr<ProbeServer> StartProbes(milliseconds timeout = milliseconds(1000),
                                         size_t max_connections = 64) {
  ProbeServerOptions o;
  o.listen = "127.0.0.1:0";
  o.routes["/healthz"] = [] { return HttpResponse{.body = "ok\n"}; };
  o.routes["/readyz"] = [] { return HttpResponse{.status = 503, .body = "not yet\n"}; };
  o.read_timeout = timeout;
  o.max_connections = max_connections;
  auto started = ProbeServer::Start(std::move(o));
  EXPECT_TRUE(started.ok()) << started.status().ToString();
  return started.ok() ? std::move(started).value() : nullptr;
}

TEST(ProbeServerTest, AnswersTheProbesAndNothingElse) {
  auto probes = StartProbes();
  ASSERT_NE(probes, nullptr);
  auto ok = Request(probes->port(), "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", milliseconds(2000));
  ASSERT_TRUE(ok.has_value());
  EXPECT_EQ(ok->rfind("HTTP/1.1 200 OK\r\n", 0), 0u) << *ok;
  EXPECT_NE(ok->find("Connection: close"), std::string::npos);
  EXPECT_EQ(ok->substr(ok->size() - 3), "ok\n");

  auto ready = Request(probes->port(), "GET /readyz?verbose HTTP/1.1\r\n\r\n", milliseconds(2000));
  ASSERT_TRUE(ready.has_value());
  EXPECT_EQ(ready->rfind("HTTP/1.1 503", 0), 0u) << *ready;

  auto head = Request(probes->port(), "HEAD /healthz HTTP/1.1\r\n\r\n", milliseconds(2000));
  ASSERT_TRUE(head.has_value());
  EXPECT_EQ(head->substr(head->size() - 4), "\r\n\r\n") << "HEAD carries no body";

  auto metrics = Request(probes->port(), "GET /metrics HTTP/1.1\r\n\r\n", milliseconds(2000));
  ASSERT_TRUE(metrics.has_value());
  EXPECT_EQ(metrics->rfind("HTTP/1.1 404", 0), 0u);
  auto post = Request(probes->port(), "POST /healthz HTTP/1.1\r\n\r\n", milliseconds(2000));
  ASSERT_TRUE(post.has_value());
  EXPECT_EQ(post->rfind("HTTP/1.1 405", 0), 0u);
  EXPECT_NE(post->find("Allow: GET, HEAD"), std::string::npos);
  auto huge = Request(probes->port(), "GET /healthz HTTP/1.1\r\nX: " + std::string(8000, 'a'),
                      milliseconds(2000));
  ASSERT_TRUE(huge.has_value());
  EXPECT_EQ(huge->rfind("HTTP/1.1 431", 0), 0u);
}

TEST(ProbeServerTest, AConnectionThatSendsNothingIsCutAtItsDeadline) {
  auto probes = StartProbes(milliseconds(200));
  ASSERT_NE(probes, nullptr);
  int fd = Connect(probes->port());
  auto answer = ReadAll(fd, milliseconds(3000));
  ::close(fd);
  ASSERT_TRUE(answer.has_value()) << "not closed at the deadline";
  EXPECT_TRUE(answer->empty());
  EXPECT_EQ(probes->cut_connections(), 1u);
}

TEST(ProbeServerTest, AFloodOfIdleConnectionsDoesNotStarveTheProbe) {
  auto probes = StartProbes(milliseconds(5000), 16);
  ASSERT_NE(probes, nullptr);
  std::vector<int> idle;
  for (int i = 0; i < 100; ++i) {
    idle.push_back(Connect(probes->port()));
    SendAll(idle.back(), "GET /healthz HTTP/1.1\r\n");  // never finished
  }
  const auto started = Clock::now();
  auto ok = Request(probes->port(), "GET /healthz HTTP/1.1\r\n\r\n", milliseconds(1000));
  ASSERT_TRUE(ok.has_value()) << "the probe was starved";
  EXPECT_EQ(ok->rfind("HTTP/1.1 200", 0), 0u);
  EXPECT_LT(Clock::now() - started, milliseconds(1000));
  EXPECT_GE(probes->cut_connections(), 84u) << "the oldest idle connections make room";
  for (int fd : idle) ::close(fd);
}

// The reason for the probe port: clients that trickle their requests into
// the main HTTP port hold its few workers, while the probe port answers.
TEST(ProbeServerTest, SlowClientsOfTheMainPortDoNotStarveTheProbePort) {
  HttpServerOptions main;
  main.listen = "127.0.0.1:0";
  main.routes["/healthz"] = [] { return HttpResponse{.body = "ok\n"}; };
  auto server = HttpServer::Start(std::move(main));
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  auto probes = StartProbes();
  ASSERT_NE(probes, nullptr);

  constexpr int kSlowClients = 12;  // three times the main server's workers
  std::vector<int> slow;
  for (int i = 0; i < kSlowClients; ++i) {
    slow.push_back(Connect((*server)->port()));
    ASSERT_TRUE(SendAll(slow.back(), "GET /healthz HTTP/1.1\r\nHost: x\r\n"));  // no end
  }
  for (int round = 0; round < 5; ++round) {
    const auto started = Clock::now();
    auto ok = Request(probes->port(), "GET /healthz HTTP/1.1\r\n\r\n", milliseconds(500));
    ASSERT_TRUE(ok.has_value()) << "round " << round << ": no answer within 500 ms";
    EXPECT_EQ(ok->rfind("HTTP/1.1 200", 0), 0u);
    EXPECT_LT(Clock::now() - started, milliseconds(500));
  }
  // What the probes would have met on the main port (not asserted: how long
  // cpp-httplib keeps a worker on a slow client is its own business).
  const auto started = Clock::now();
  auto main_answer = Request((*server)->port(), "GET /healthz HTTP/1.1\r\n\r\n", milliseconds(500));
  std::cout << "main port /healthz with " << kSlowClients
            << " slow clients: " << (main_answer ? "answered" : "no answer") << " after "
            << std::chrono::duration_cast<milliseconds>(Clock::now() - started).count() << " ms\n";
  for (int fd : slow) ::close(fd);
}

TEST(ProbeServerTest, BadAddressesAreRefused) {
  ProbeServerOptions o;
  o.listen = "nonsense";
  o.routes["/healthz"] = [] { return HttpResponse{}; };
  EXPECT_EQ(ProbeServer::Start(o).status().code(), StatusCode::kInvalidArgument);
  o.listen = "127.0.0.1:0";
  o.routes.clear();
  EXPECT_EQ(ProbeServer::Start(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::http
