#include "http/http_server.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <stdexcept>

namespace tokenmem::http {
namespace {

HttpServerOptions Routes() {
  HttpServerOptions o;
  o.listen = "127.0.0.1:0";
  o.routes["/hello"] = [] { return HttpResponse{.body = "hi\n"}; };
  o.routes["/json"] = [] {
    return HttpResponse{.status = 503, .content_type = "application/json", .body = "{}"};
  };
  o.routes["/v1/a.b"] = [] { return HttpResponse{.body = "dot\n"}; };
  o.routes["/boom"] = []() -> HttpResponse { throw std::runtime_error("kaboom"); };
  return o;
}

TEST(HttpServerTest, ServesRoutesAndRefusesTheRest) {
  auto server = HttpServer::Start(Routes());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_GT((*server)->port(), 0);
  EXPECT_EQ((*server)->address(), "127.0.0.1:" + std::to_string((*server)->port()));

  httplib::Client client("127.0.0.1", (*server)->port());
  auto res = client.Get("/hello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_EQ(res->body, "hi\n");
  EXPECT_EQ(res->get_header_value("Content-Type"), "text/plain; charset=utf-8");

  res = client.Get("/json");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 503);
  EXPECT_EQ(res->body, "{}");
  EXPECT_EQ(res->get_header_value("Content-Type"), "application/json");

  res = client.Head("/hello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
  EXPECT_TRUE(res->body.empty());

  res = client.Get("/v1/a.b");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);

  for (const char* path :
       {"/", "/hello/", "/hello?x=1/..", "/../etc/passwd", "/HELLO", "/v1/aXb", "/hell."}) {
    res = client.Get(path);
    ASSERT_TRUE(res) << path;
    if (std::string(path) == "/hello?x=1/..") {
      EXPECT_EQ(res->status, 200) << path;  // a query string does not change the path
    } else {
      EXPECT_EQ(res->status, 404) << path;
      EXPECT_NE(res->body.find("no such path"), std::string::npos) << res->body;
    }
  }

  res = client.Post("/hello", "x", "text/plain");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);
  EXPECT_EQ(res->get_header_value("Allow"), "GET, HEAD");
  res = client.Delete("/hello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 405);

  res = client.Get("/boom");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 500);
  EXPECT_EQ(res->body.find("kaboom"), std::string::npos);  // details go to the log only

  // Still serving after all that.
  res = client.Get("/hello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerTest, RefusesBadAddressesAndBusyPorts) {
  for (const char* bad : {"", "9464", "::1:9464", "host:65536", "host:x", ":9464"}) {
    HttpServerOptions o = Routes();
    o.listen = bad;
    auto server = HttpServer::Start(o);
    EXPECT_EQ(server.status().code(), StatusCode::kInvalidArgument) << bad;
  }
  HttpServerOptions none;
  none.listen = "127.0.0.1:0";
  EXPECT_EQ(HttpServer::Start(none).status().code(), StatusCode::kInvalidArgument);

  auto first = HttpServer::Start(Routes());
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  HttpServerOptions o = Routes();
  o.listen = "127.0.0.1:" + std::to_string((*first)->port());
  auto second = HttpServer::Start(o);
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
  EXPECT_NE(second.status().message().find(o.listen), std::string::npos)
      << second.status().ToString();
}

TEST(HttpServerTest, ListensOnIpv6LoopbackWhenThereIsOne) {
  HttpServerOptions o = Routes();
  o.listen = "[::1]:0";
  auto server = HttpServer::Start(o);
  if (!server.ok()) GTEST_SKIP() << "no IPv6 loopback: " << server.status().ToString();
  EXPECT_EQ((*server)->address(), "[::1]:" + std::to_string((*server)->port()));
  httplib::Client client("::1", (*server)->port());
  auto res = client.Get("/hello");
  ASSERT_TRUE(res);
  EXPECT_EQ(res->status, 200);
}

TEST(HttpServerTest, StopsPromptlyWithAnIdleKeepAliveConnection) {
  auto server = HttpServer::Start(Routes());
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  const int port = (*server)->port();
  httplib::Client client("127.0.0.1", port);
  client.set_keep_alive(true);
  ASSERT_TRUE(client.Get("/hello"));

  const auto started = std::chrono::steady_clock::now();
  (*server)->Stop();
  (*server)->Stop();  // idempotent
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(3));

  httplib::Client after("127.0.0.1", port);
  after.set_connection_timeout(std::chrono::milliseconds(300));
  EXPECT_FALSE(after.Get("/hello"));
}

TEST(HttpServerTest, StopRightAfterStartDoesNotHang) {
  for (int i = 0; i < 20; ++i) {
    auto server = HttpServer::Start(Routes());
    ASSERT_TRUE(server.ok()) << server.status().ToString();
  }
}

}  // namespace
}  // namespace tokenmem::http
