#include "http/agent_metrics.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <cmath>
#include <span>

#include "control/control_service.h"
#include "control/proto_convert.h"
#include "http/test_store.h"
#include "nvme/nvme_store.h"

namespace tokenmem::http {
namespace {

using namespace std::chrono_literals;
using testing::Find;
using testing::ParseSamples;

TEST(AgentMetricsTest, ControlSeriesExistFromTheStart) {
  AgentMetrics m;
  auto s = ParseSamples(m.Serialize({}));
  for (std::string_view op : kOperations) {
    const std::map<std::string, std::string> labels = {{"operation", std::string(op)},
                                                       {"path", "control"}};
    EXPECT_EQ(Find(s, "tokenmem_operation_duration_seconds_count", labels), 0) << op;
    EXPECT_EQ(Find(s, "tokenmem_operation_errors_total", labels), 0) << op;
  }
  EXPECT_FALSE(Find(s, "tokenmem_operation_duration_seconds_count",
                    {{"operation", "get"}, {"path", "local"}}));
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_duration_seconds_count", {{"operation", "read"}}), 0);
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_duration_seconds_count", {{"operation", "write"}}), 0);
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_bytes_total", {{"operation", "write"}}), 0);
}

TEST(AgentMetricsTest, CountsLimitRejectionsPerLimit) {
  AgentMetrics m;
  auto before = ParseSamples(m.Serialize({}));
  for (size_t i = 0; i < limits::kLimitCount; ++i) {
    const std::string name(limits::LimitName(static_cast<limits::Limit>(i)));
    EXPECT_EQ(Find(before, "tokenmem_limit_rejections_total", {{"limit", name}}), 0) << name;
  }
  limits::Note(&m, limits::Limit::kPins);
  limits::Note(&m, limits::Limit::kPins);
  limits::Note(&m, limits::Limit::kHttpDeadline);
  auto after = ParseSamples(m.Serialize({}));
  EXPECT_EQ(Find(after, "tokenmem_limit_rejections_total", {{"limit", "pins"}}), 2);
  EXPECT_EQ(Find(after, "tokenmem_limit_rejections_total", {{"limit", "http_deadline"}}), 1);
  EXPECT_EQ(Find(after, "tokenmem_limit_rejections_total", {{"limit", "local_connections"}}), 0);
}

TEST(AgentMetricsTest, ObservesOperationsIntoBuckets) {
  AgentMetrics m;
  m.ObserveOperation(DataPath::kControl, "get", 30us, true);
  m.ObserveOperation(DataPath::kControl, "get", 3ms, false);
  m.ObserveOperation(DataPath::kLocal, "put", 1us, true);
  m.ObserveOperation(DataPath::kControl, "no-such-op", 1ms, true);
  auto recorder = m.OperationRecorder(DataPath::kRemote);
  recorder("lookup_prefix", 2s, true);

  auto s = ParseSamples(m.Serialize({}));
  const std::map<std::string, std::string> get = {{"operation", "get"}, {"path", "control"}};
  EXPECT_EQ(Find(s, "tokenmem_operation_duration_seconds_count", get), 2);
  EXPECT_NEAR(*Find(s, "tokenmem_operation_duration_seconds_sum", get), 0.00303, 1e-9);
  auto le = [&](const char* bound) {
    auto labels = get;
    labels["le"] = bound;
    return *Find(s, "tokenmem_operation_duration_seconds_bucket", labels);
  };
  EXPECT_EQ(le("2.5e-05"), 0);
  EXPECT_EQ(le("5e-05"), 1);
  EXPECT_EQ(le("0.0025"), 1);
  EXPECT_EQ(le("0.005"), 2);
  EXPECT_EQ(le("+Inf"), 2);
  EXPECT_EQ(Find(s, "tokenmem_operation_errors_total", get), 1);
  EXPECT_EQ(Find(s, "tokenmem_operation_duration_seconds_count",
                 {{"operation", "put"}, {"path", "local"}}),
            1);
  EXPECT_EQ(Find(s, "tokenmem_operation_duration_seconds_count",
                 {{"operation", "other"}, {"path", "control"}}),
            1);
  EXPECT_EQ(Find(s, "tokenmem_operation_duration_seconds_count",
                 {{"operation", "lookup_prefix"}, {"path", "remote"}}),
            1);
  EXPECT_EQ(m.Serialize({}).find("no-such-op"), std::string::npos);
}

TEST(AgentMetricsTest, SeesNvmeIoThroughTheProcessWideHook) {
  AgentMetrics m;
  nvme::SetIoObserver(&m);
  tokenmem::testing::TempDir dir;
  {
    auto store = nvme::NvmeStore::Open({.directory = dir / "pool",
                                        .block_size = 4096,
                                        .capacity_bytes = 16 * 4096,
                                        .segment_bytes = 1 << 20},
                                       nullptr);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    auto slot = (*store)->Allocate();
    ASSERT_TRUE(slot.ok());
    std::vector<std::byte> data(100, std::byte{1}), out(4096);
    const BlockKey key{1, 2};
    ASSERT_TRUE((*store)->Write(*slot, key, 1, 0, data).ok());
    ASSERT_TRUE((*store)->Read(*slot, key, out).ok());
    ASSERT_TRUE((*store)->Read(*slot, key, out).ok());
  }
  nvme::ClearIoObserver(&m);
  EXPECT_EQ(nvme::CurrentIoObserver(), nullptr);

  auto s = ParseSamples(m.Serialize({}));
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_duration_seconds_count", {{"operation", "write"}}), 1);
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_duration_seconds_count", {{"operation", "read"}}), 2);
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_bytes_total", {{"operation", "write"}}), 8192);
  // Format 2: a read fetches only the data, rounded up to 4 KiB; a write
  // also writes the slot-table page.
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_bytes_total", {{"operation", "read"}}), 2 * 4096);
  EXPECT_EQ(Find(s, "tokenmem_nvme_io_errors_total", {{"operation", "read"}}), 0);
}

TEST(AgentMetricsTest, ClearingLeavesAnotherObserverInstalled) {
  AgentMetrics a, b;
  nvme::SetIoObserver(&a);
  nvme::SetIoObserver(&b);
  nvme::ClearIoObserver(&a);
  EXPECT_EQ(nvme::CurrentIoObserver(), &b);
  nvme::ClearIoObserver(&b);
  EXPECT_EQ(nvme::CurrentIoObserver(), nullptr);
}

// The control service reports each data call to AgentInfo::observe_operation.
TEST(AgentMetricsTest, ControlServiceCallsAreTimed) {
  testing::TestStore store;
  ASSERT_TRUE(store.CreatePool("p"));
  AgentMetrics m;
  control::AgentInfo info;
  info.observe_operation = m.OperationRecorder(DataPath::kControl);
  control::ControlService service(store.pools.get(), &store.leases, &info, "");

  v1::LeaseCredentials creds;
  creds.set_id(store.lease->id());
  creds.set_secret(store.secret);
  const BlockKey key{5, 6};
  const std::string key_bytes = control::KeyToBytes(key);
  {
    grpc::ServerContext ctx;
    v1::PutRequest req;
    *req.mutable_lease() = creds;
    req.set_pool("p");
    auto* block = req.add_blocks();
    block->set_key(key_bytes);
    block->set_data("hello");
    v1::PutReply reply;
    EXPECT_TRUE(service.Put(&ctx, &req, &reply).ok());
  }
  {
    grpc::ServerContext ctx;
    v1::GetRequest req;
    *req.mutable_lease() = creds;
    req.set_pool("p");
    req.add_keys(key_bytes);
    v1::GetReply reply;
    EXPECT_TRUE(service.Get(&ctx, &req, &reply).ok());
  }
  {
    grpc::ServerContext ctx;
    v1::LookupPrefixRequest req;
    *req.mutable_lease() = creds;
    req.set_pool("absent");
    req.add_keys(key_bytes);
    v1::LookupPrefixReply reply;
    EXPECT_FALSE(service.LookupPrefix(&ctx, &req, &reply).ok());  // no such pool
  }
  {
    grpc::ServerContext ctx;
    v1::StatusRequest req;
    v1::StatusReply reply;
    EXPECT_TRUE(service.GetStatus(&ctx, &req, &reply).ok());  // not a data call
  }
  auto s = ParseSamples(m.Serialize({}));
  auto count = [&](const char* op) {
    return *Find(s, "tokenmem_operation_duration_seconds_count",
                 {{"operation", op}, {"path", "control"}});
  };
  EXPECT_EQ(count("put"), 1);
  EXPECT_EQ(count("get"), 1);
  EXPECT_EQ(count("lookup_prefix"), 1);
  EXPECT_EQ(count("other"), 0);
  EXPECT_EQ(Find(s, "tokenmem_operation_errors_total",
                 {{"operation", "lookup_prefix"}, {"path", "control"}}),
            1);
  EXPECT_EQ(Find(s, "tokenmem_operation_errors_total", {{"operation", "put"}, {"path", "control"}}),
            0);
}

}  // namespace
}  // namespace tokenmem::http
