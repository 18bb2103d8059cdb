#include "http.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include "metrics.h"

namespace tokenmem::device_plugin {
namespace {

TEST(DevicePluginHttpTest, ServesRoutesRefusesOthers) {
  HttpRoutes routes;
  routes["/healthz"] = [] { return HttpReply{200, "text/plain", "ok\n"}; };
  routes["/readyz"] = [] { return HttpReply{503, "text/plain", "not ready\n"}; };
  auto server = HttpEndpoint::Start("127.0.0.1:0", routes);
  ASSERT_TRUE(server.ok()) << server.status().ToString();
  ASSERT_GT((*server)->port(), 0);
  httplib::Client client("127.0.0.1", (*server)->port());
  auto ok = client.Get("/healthz");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body, "ok\n");
  auto not_ready = client.Get("/readyz");
  ASSERT_TRUE(not_ready);
  EXPECT_EQ(not_ready->status, 503);
  auto missing = client.Get("/nope");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  auto post = client.Post("/healthz", "x", "text/plain");
  ASSERT_TRUE(post);
  EXPECT_EQ(post->status, 405);
  (*server)->Stop();
}

TEST(DevicePluginHttpTest, BadListenAddresses) {
  EXPECT_EQ(HttpEndpoint::Start("nohost", {}).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(HttpEndpoint::Start("127.0.0.1:99999", {}).status().code(),
            StatusCode::kInvalidArgument);
  auto first = HttpEndpoint::Start("127.0.0.1:0", {{"/", [] { return HttpReply{}; }}});
  ASSERT_TRUE(first.ok());
  auto second = HttpEndpoint::Start("127.0.0.1:" + std::to_string((*first)->port()),
                                    {{"/", [] { return HttpReply{}; }}});
  EXPECT_EQ(second.status().code(), StatusCode::kIoError);
}

TEST(DevicePluginMetricsTest, RendersCountersAndGauges) {
  PluginMetrics metrics;
  metrics.AllocationSucceeded();
  metrics.AllocationSucceeded();
  metrics.AllocationFailed();
  metrics.LeaseReclaimed();
  metrics.LeaseBound();
  metrics.LeaseBound();
  metrics.Registered();
  metrics.RegistrationFailed();
  const std::string text = metrics.Render({5, 2, true, true});
  for (const char* line : {
           "tokenmem_device_plugin_devices{health=\"healthy\"} 5",
           "tokenmem_device_plugin_devices{health=\"unhealthy\"} 2",
           "tokenmem_device_plugin_agent_up 1",
           "tokenmem_device_plugin_registered 1",
           "tokenmem_device_plugin_allocations_total 2",
           "tokenmem_device_plugin_allocation_failures_total 1",
           "tokenmem_device_plugin_leases_reclaimed_total 1",
           "tokenmem_device_plugin_leases_bound_total 2",
           "tokenmem_device_plugin_registrations_total 1",
           "tokenmem_device_plugin_registration_failures_total 1",
       }) {
    EXPECT_NE(text.find(line), std::string::npos) << line << "\n" << text;
  }
  EXPECT_NE(metrics.Render({0, 0, false, false}).find("tokenmem_device_plugin_agent_up 0"),
            std::string::npos);
}

}  // namespace
}  // namespace tokenmem::device_plugin
