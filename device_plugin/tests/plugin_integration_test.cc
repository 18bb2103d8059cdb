// The device plugin against a kubelet stand-in (Registration, PodResources,
// a DevicePlugin client) and a real tokenmem agent, all on Unix sockets in
// temporary directories.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <thread>

#include "agent_fixture.h"
#include "container_launch.h"
#include "kubelet_standin.h"
#include "lease_owner.h"
#include "plugin.h"
#include "tokenmem/common/testing/temp_dir.h"
#include "wire/channel.h"
#include "wire/lease.h"

namespace tokenmem::device_plugin {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::CountHealth;
using testing::KubeletStandIn;
using testing::WatchRecorder;
using tokenmem::testing::TempDir;

constexpr uint64_t kUnit = uint64_t{1} << 20;
constexpr char kResource[] = "tokenmem.io/memory";

class DevicePluginIntegrationTest : public ::testing::Test {
 public:
  // Agent options for this test; tests that need others override them.
  virtual tokenmem::testing::AgentOptions AgentSetup() {
    tokenmem::testing::AgentOptions options;
    options.pools = {{.name = "kv", .block_size = "64KiB", .dram = "8MiB"}};
    options.separate_data_dir = true;  // as deployed: the data socket alone in its directory
    return options;
  }

  void SetUp() override {
    fs::create_directories(root_.path() / "device-plugins");
    fs::create_directories(root_.path() / "pod-resources");
    // A node with one RDMA NIC, as sysfs and /dev would show it.
    fs::create_directories(root_.path() / "sys/class/infiniband_verbs/uverbs0");
    fs::create_directories(root_.path() / "dev/infiniband");
    std::ofstream(root_.path() / "dev/infiniband/uverbs0");
    std::ofstream(root_.path() / "dev/infiniband/rdma_cm");

    agent_ = std::make_unique<tokenmem::testing::AgentProcess>(AgentSetup());
    Status started = agent_->Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
    expected_devices_ = ExpectedDevices();
    ASSERT_GT(expected_devices_, 0u);

    auto kubelet =
        KubeletStandIn::Start(root_ / "device-plugins", root_ / "pod-resources/kubelet.sock");
    ASSERT_TRUE(kubelet.ok()) << kubelet.status().ToString();
    kubelet_ = std::move(*kubelet);
  }

  void TearDown() override {
    app_.reset();
    kubelet_.reset();
    agent_.reset();
  }

  // DRAM capacity / unit, from the agent itself.
  size_t ExpectedDevices() {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    v1::StatusReply status;
    if (!agent_->stub().GetStatus(&ctx, v1::StatusRequest(), &status).ok()) return 0;
    uint64_t bytes = 0;
    for (const auto& t : status.tiers()) {
      if (t.kind() == v1::TIER_KIND_DRAM || t.kind() == v1::TIER_KIND_CXL) {
        bytes += t.capacity_bytes();
      }
    }
    return bytes / kUnit;
  }

  Config MakeConfig() {
    Config c;
    c.device_plugin_dir = root_ / "device-plugins";
    c.pod_resources_socket = root_ / "pod-resources/kubelet.sock";
    c.agent_socket = agent_->socket_path();
    c.agent_data_socket = agent_->data_socket_path();
    c.container_socket_dir = root_ / "container-run-tokenmem";
    c.unit_bytes = kUnit;
    c.default_pool = "kv";
    c.remote_endpoints = {"127.0.0.1:7070"};
    c.cdi_devices = {"tokenmem.io/memory=node"};
    c.rdma = RdmaMode::kSysfs;
    c.dev_root = root_ / "dev";
    c.sysfs_root = root_ / "sys";
    c.rpc_timeout = 2s;
    c.agent_poll_interval = 50ms;
    c.reclaim_interval = 50ms;
    c.reclaim_grace = 300ms;
    c.register_backoff_initial = 50ms;
    c.register_backoff_max = 200ms;
    c.recheck_interval = 100ms;
    c.http_listen = "127.0.0.1:0";
    return c;
  }

  void StartPlugin(const Config& config) {
    auto app = DevicePluginApp::Start(config);
    ASSERT_TRUE(app.ok()) << app.status().ToString();
    app_ = std::move(*app);
    ASSERT_TRUE(kubelet_->WaitForRegistrations(1, 5s));
    plugin_ = testing::DialPlugin(PluginSocketPath(config), 5s);
    ASSERT_NE(plugin_, nullptr);
  }

  Result<::v1beta1::AllocateResponse> Allocate(const std::vector<std::string>& devices) {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    ::v1beta1::AllocateRequest request;
    auto* c = request.add_container_requests();
    for (const auto& d : devices) c->add_devices_ids(d);
    ::v1beta1::AllocateResponse response;
    grpc::Status s = plugin_->Allocate(&ctx, request, &response);
    if (!s.ok()) {
      return Status(StatusCode::kInternal,
                    std::to_string(static_cast<int>(s.error_code())) + " " + s.error_message());
    }
    return response;
  }

  // Allocate for several containers, with the plugin's gRPC answer as it is.
  grpc::Status AllocateContainers(const std::vector<std::vector<std::string>>& containers) {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    ::v1beta1::AllocateRequest request;
    for (const auto& devices : containers) {
      auto* c = request.add_container_requests();
      for (const auto& d : devices) c->add_devices_ids(d);
    }
    ::v1beta1::AllocateResponse response;
    return plugin_->Allocate(&ctx, request, &response);
  }

  grpc::Status Prefer(const std::vector<std::string>& available, int size,
                      ::v1beta1::PreferredAllocationResponse* response) {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    ::v1beta1::PreferredAllocationRequest request;
    auto* c = request.add_container_requests();
    for (const auto& id : available) c->add_available_device_ids(id);
    c->set_allocation_size(size);
    return plugin_->GetPreferredAllocation(&ctx, request, response);
  }

  std::vector<v1::LeaseInfo> AgentLeases() {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    v1::ListLeasesReply reply;
    EXPECT_TRUE(agent_->stub().ListLeases(&ctx, v1::ListLeasesRequest(), &reply).ok());
    return {reply.leases().begin(), reply.leases().end()};
  }

  bool HasLease(const std::string& id) {
    for (const auto& l : AgentLeases()) {
      if (l.id() == id) return true;
    }
    return false;
  }

  std::string Metrics() {
    httplib::Client http("127.0.0.1", app_->http_port());
    auto res = http.Get("/metrics");
    return res && res->status == 200 ? res->body : "";
  }

  TempDir root_;
  std::unique_ptr<tokenmem::testing::AgentProcess> agent_;
  std::unique_ptr<KubeletStandIn> kubelet_;
  std::unique_ptr<DevicePluginApp> app_;
  std::unique_ptr<::v1beta1::DevicePlugin::Stub> plugin_;
  size_t expected_devices_ = 0;
};

TEST_F(DevicePluginIntegrationTest, RegistersAndListsDevicesWithTopology) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  auto regs = kubelet_->registrations();
  ASSERT_EQ(regs.size(), 1u);
  EXPECT_EQ(regs[0].version(), "v1beta1");
  EXPECT_EQ(regs[0].endpoint(), "tokenmem.sock");
  EXPECT_EQ(regs[0].resource_name(), kResource);
  EXPECT_TRUE(regs[0].options().get_preferred_allocation_available());
  EXPECT_FALSE(regs[0].options().pre_start_required());

  grpc::ClientContext ctx;
  wire::SetTimeout(&ctx, 5s);
  ::v1beta1::DevicePluginOptions options;
  ASSERT_TRUE(plugin_->GetDevicePluginOptions(&ctx, ::v1beta1::Empty(), &options).ok());
  EXPECT_TRUE(options.get_preferred_allocation_available());

  WatchRecorder watch(plugin_.get());
  ASSERT_TRUE(watch.WaitFor([](const auto& l) { return l.devices_size() > 0; }, 5s));
  const auto list = watch.latest();
  ASSERT_EQ(static_cast<size_t>(list.devices_size()), expected_devices_);
  for (int i = 0; i < list.devices_size(); ++i) {
    const auto& d = list.devices(i);
    EXPECT_EQ(d.id(), "tokenmem-n0-" + std::to_string(i));
    EXPECT_EQ(d.health(), "Healthy");
    ASSERT_EQ(d.topology().nodes_size(), 1) << d.id();
    EXPECT_EQ(d.topology().nodes(0).id(), 0);
  }
  httplib::Client http("127.0.0.1", app_->http_port());
  auto healthz = http.Get("/healthz");
  ASSERT_TRUE(healthz);
  EXPECT_EQ(healthz->status, 200);
  auto readyz = http.Get("/readyz");
  ASSERT_TRUE(readyz);
  EXPECT_EQ(readyz->status, 200);
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("tokenmem_device_plugin_devices{health=\"healthy\"} " +
                         std::to_string(expected_devices_)),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tokenmem_device_plugin_registrations_total 1"), std::string::npos);
  EXPECT_NE(metrics.find("tokenmem_device_plugin_agent_up 1"), std::string::npos);
}

TEST_F(DevicePluginIntegrationTest, PreferredAllocationAndAllocate) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    ::v1beta1::PreferredAllocationRequest request;
    auto* c = request.add_container_requests();
    for (int i : {5, 3, 4, 0}) c->add_available_device_ids("tokenmem-n0-" + std::to_string(i));
    c->add_must_include_device_ids("tokenmem-n0-4");
    c->set_allocation_size(2);
    ::v1beta1::PreferredAllocationResponse response;
    ASSERT_TRUE(plugin_->GetPreferredAllocation(&ctx, request, &response).ok());
    ASSERT_EQ(response.container_responses_size(), 1);
    const auto& ids = response.container_responses(0).device_ids();
    EXPECT_EQ(std::vector<std::string>(ids.begin(), ids.end()),
              (std::vector<std::string>{"tokenmem-n0-4", "tokenmem-n0-0"}));
  }

  auto response = Allocate({"tokenmem-n0-0", "tokenmem-n0-1"});
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  ASSERT_EQ(response->container_responses_size(), 1);
  const auto& c = response->container_responses(0);
  const std::string container_dir = root_ / "container-run-tokenmem";
  EXPECT_EQ(c.envs().at("TOKENMEM_AGENT_SOCKET"), container_dir + "/agent-data.sock");
  EXPECT_EQ(c.envs().count("TOKENMEM_CONTROL_SOCKET"), 0u);
  for (const auto& [name, value] : c.envs()) {
    EXPECT_EQ(value.find("agent.sock"), std::string::npos) << name << "=" << value;
  }
  EXPECT_EQ(c.envs().at("TOKENMEM_QUOTA_BYTES"), std::to_string(2 * kUnit));
  EXPECT_EQ(c.envs().at("TOKENMEM_DEFAULT_POOL"), "kv");
  EXPECT_EQ(c.envs().at("TOKENMEM_REMOTE_ENDPOINTS"), "127.0.0.1:7070");
  EXPECT_EQ(c.envs().at("TOKENMEM_NUMA_NODES"), "0");
  auto lease = wire::ParseLease(c.envs().at("TOKENMEM_LEASE"));
  ASSERT_TRUE(lease.ok());
  ASSERT_EQ(c.mounts_size(), 1);
  EXPECT_EQ(c.mounts(0).container_path(), container_dir);
  // Only the data socket's directory, which holds no control socket.
  EXPECT_EQ(c.mounts(0).host_path(), (agent_->dir() / "data").string());
  EXPECT_TRUE(c.mounts(0).read_only());
  EXPECT_FALSE(fs::exists(fs::path(c.mounts(0).host_path()) / "agent.sock"));
  EXPECT_NE(fs::path(c.mounts(0).host_path()), fs::path(agent_->socket_path()).parent_path());
  ASSERT_EQ(c.devices_size(), 2);
  EXPECT_EQ(c.devices(0).container_path(), "/dev/infiniband/uverbs0");
  EXPECT_EQ(c.devices(0).host_path(), (root_ / "dev").string() + "/infiniband/uverbs0");
  EXPECT_EQ(c.devices(1).container_path(), "/dev/infiniband/rdma_cm");
  ASSERT_EQ(c.cdi_devices_size(), 1);
  EXPECT_EQ(c.cdi_devices(0).name(), "tokenmem.io/memory=node");

  // The agent holds the lease, with the devices in its owner.
  bool found = false;
  for (const auto& l : AgentLeases()) {
    if (l.id() != lease->id) continue;
    found = true;
    EXPECT_EQ(l.quota_bytes(), 2 * kUnit);
    auto owner = ParseLeaseOwner(l.owner());
    ASSERT_TRUE(owner.has_value()) << l.owner();
    EXPECT_EQ(owner->devices, (std::vector<std::string>{"tokenmem-n0-0", "tokenmem-n0-1"}));
  }
  EXPECT_TRUE(found);

  auto unknown = Allocate({"tokenmem-n9-0"});
  ASSERT_FALSE(unknown.ok());
  EXPECT_NE(unknown.status().message().find("unknown device tokenmem-n9-0"), std::string::npos);
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_allocations_total 1"), std::string::npos);
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_allocation_failures_total 1"),
            std::string::npos);
}

TEST_F(DevicePluginIntegrationTest, RefusedLeaseFailsAllocateWithTheReason) {
  Config config = MakeConfig();
  config.lease_pools = {"No_Such Pool"};  // the agent refuses such a pool name
  ASSERT_NO_FATAL_FAILURE(StartPlugin(config));
  grpc::ClientContext ctx;
  wire::SetTimeout(&ctx, 5s);
  ::v1beta1::AllocateRequest request;
  request.add_container_requests()->add_devices_ids("tokenmem-n0-0");
  ::v1beta1::AllocateResponse response;
  grpc::Status s = plugin_->Allocate(&ctx, request, &response);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("could not lease 1MiB for 1 device (tokenmem-n0-0)"),
            std::string::npos)
      << s.error_message();
  EXPECT_NE(s.error_message().find("CreateLease: INVALID_ARGUMENT"), std::string::npos)
      << s.error_message();
  EXPECT_TRUE(AgentLeases().empty());
}

// IDs the plugin never advertised: refused before anything is leased, and
// the message names the ID. A valid container in the same request has its
// lease released again.
TEST_F(DevicePluginIntegrationTest, AllocateUnknownDevicesLeasesNothing) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  const std::vector<std::vector<std::vector<std::string>>> requests = {
      {{"tokenmem-n9-99"}},
      {{"not-ours"}},
      {{"tokenmem-n0-0", "not-ours"}},
      {{"tokenmem-n0-0"}, {"tokenmem-n9-99"}},
  };
  const std::vector<std::string> named = {"tokenmem-n9-99", "not-ours", "not-ours",
                                          "tokenmem-n9-99"};
  for (size_t i = 0; i < requests.size(); ++i) {
    grpc::Status s = AllocateContainers(requests[i]);
    ASSERT_FALSE(s.ok()) << "request " << i;
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << s.error_message();
    EXPECT_NE(s.error_message().find("tokenmem.io/memory: unknown device " + named[i]),
              std::string::npos)
        << s.error_message();
    EXPECT_TRUE(AgentLeases().empty()) << "request " << i;
  }
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("tokenmem_device_plugin_allocation_failures_total " +
                         std::to_string(requests.size())),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tokenmem_device_plugin_allocations_total 0"), std::string::npos)
      << metrics;
  // The plugin still allocates what exists.
  auto fine = Allocate({"tokenmem-n0-0"});
  ASSERT_TRUE(fine.ok()) << fine.status().ToString();
  EXPECT_EQ(AgentLeases().size(), 1u);
}

// More devices than the node has: every advertised ID plus one more, a
// device named twice, and GetPreferredAllocation asked for more than it is
// offered. Each is a clean INVALID_ARGUMENT and nothing is leased.
TEST_F(DevicePluginIntegrationTest, MoreDevicesThanExistAreRefused) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  WatchRecorder watch(plugin_.get());
  ASSERT_TRUE(watch.WaitFor(
      [&](const auto& l) { return static_cast<size_t>(l.devices_size()) == expected_devices_; },
      5s));
  std::vector<std::string> all;
  const ::v1beta1::ListAndWatchResponse list = watch.latest();  // a copy, kept alive
  for (const auto& d : list.devices()) all.push_back(d.id());
  const std::string extra = "tokenmem-n0-" + std::to_string(expected_devices_);
  ASSERT_EQ(std::count(all.begin(), all.end(), extra), 0);

  std::vector<std::string> too_many = all;
  too_many.push_back(extra);
  grpc::Status s = AllocateContainers({too_many});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("unknown device " + extra + " (this node lists " +
                                   std::to_string(expected_devices_) + ")"),
            std::string::npos)
      << s.error_message();
  EXPECT_TRUE(AgentLeases().empty());

  s = AllocateContainers({{"tokenmem-n0-1", "tokenmem-n0-2", "tokenmem-n0-1"}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("device tokenmem-n0-1 is named twice"), std::string::npos)
      << s.error_message();
  EXPECT_TRUE(AgentLeases().empty());

  s = AllocateContainers({});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("named no containers"), std::string::npos) << s.error_message();
  s = AllocateContainers({{}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("given no devices"), std::string::npos) << s.error_message();

  ::v1beta1::PreferredAllocationResponse response;
  const int wanted = static_cast<int>(expected_devices_) + 1;
  s = Prefer(all, wanted, &response);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("cannot choose " + std::to_string(wanted) + " devices: only " +
                                   std::to_string(expected_devices_) + " offered"),
            std::string::npos)
      << s.error_message();
  // An ID offered twice counts once.
  s = Prefer({"tokenmem-n0-0", "tokenmem-n0-1", "tokenmem-n0-0"}, 3, &response);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("cannot choose 3 devices: only 2 offered"), std::string::npos)
      << s.error_message();
  s = Prefer({"tokenmem-n0-0"}, -1, &response);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_TRUE(AgentLeases().empty());
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_allocation_failures_total 4"),
            std::string::npos);
}

// A kubelet that answers Register with an error: the plugin backs off
// (50, 100, 200 ms here), tries again, and counts each failure.
TEST_F(DevicePluginIntegrationTest, RefusedRegistrationsBackOffThenRegister) {
  kubelet_->RefuseRegistrations(3, grpc::StatusCode::UNAVAILABLE, "kubelet is busy");
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  const auto attempts = kubelet_->attempts();
  ASSERT_EQ(attempts.size(), 4u);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(attempts[i].answer, grpc::StatusCode::UNAVAILABLE) << i;
    EXPECT_EQ(attempts[i].request.resource_name(), kResource);
  }
  EXPECT_EQ(attempts[3].answer, grpc::StatusCode::OK);
  EXPECT_EQ(attempts[3].request.endpoint(), "tokenmem.sock");
  // Each retry waits at least its backoff, which doubles up to the maximum.
  const std::vector<std::chrono::milliseconds> backoff = {50ms, 100ms, 200ms};
  for (size_t i = 0; i < backoff.size(); ++i) {
    EXPECT_GE(attempts[i + 1].at - attempts[i].at, backoff[i]) << "retry " << i + 1;
  }
  ASSERT_TRUE(app_->supervisor().WaitFor(
      [](SupervisorState s, uint64_t n) { return s == SupervisorState::kServing && n == 1; }, 5s));
  const Status last = app_->supervisor().last_error();
  EXPECT_NE(last.message().find("kubelet is busy"), std::string::npos) << last.ToString();
  const std::string metrics = Metrics();
  EXPECT_NE(metrics.find("tokenmem_device_plugin_registration_failures_total 3"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tokenmem_device_plugin_registrations_total 1"), std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("tokenmem_device_plugin_registered 1"), std::string::npos) << metrics;
  // Registered at last: the plugin serves.
  WatchRecorder watch(plugin_.get());
  ASSERT_TRUE(watch.WaitFor(
      [&](const auto& l) { return static_cast<size_t>(l.devices_size()) == expected_devices_; },
      5s));
}

// Refused again after a kubelet restart: the plugin keeps trying until the
// new kubelet accepts it.
TEST_F(DevicePluginIntegrationTest, RefusedAfterKubeletRestartRegistersAgain) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  kubelet_->RefuseRegistrations(2, grpc::StatusCode::FAILED_PRECONDITION,
                                "device manager not ready");
  ASSERT_TRUE(kubelet_->Restart().ok());
  ASSERT_TRUE(kubelet_->WaitForRegistrations(2, 5s));
  const auto attempts = kubelet_->attempts();
  ASSERT_EQ(attempts.size(), 4u);
  EXPECT_EQ(attempts[0].answer, grpc::StatusCode::OK);
  EXPECT_EQ(attempts[1].answer, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(attempts[1].message, "device manager not ready");
  EXPECT_EQ(attempts[2].answer, grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_EQ(attempts[3].answer, grpc::StatusCode::OK);
  ASSERT_TRUE(app_->supervisor().WaitFor(
      [](SupervisorState s, uint64_t n) { return s == SupervisorState::kServing && n == 2; }, 5s));
  auto stub = testing::DialPlugin(PluginSocketPath(MakeConfig()), 5s);
  ASSERT_NE(stub, nullptr);
  WatchRecorder watch(stub.get());
  ASSERT_TRUE(watch.WaitFor(
      [&](const auto& l) { return static_cast<size_t>(l.devices_size()) == expected_devices_; },
      5s));
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_registration_failures_total 2"),
            std::string::npos);
}

// Allocate, then run `binary` as the container with exactly the answer's
// environment and mount; it must fill its quota, read back, and be refused
// one block more.
void RunContainerWithinQuota(DevicePluginIntegrationTest* test, const std::string& binary,
                             const std::string& kind, const std::string& device) {
  auto response = test->Allocate({device});
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  const auto& c = response->container_responses(0);
  std::map<std::string, std::string> env(c.envs().begin(), c.envs().end());
  std::vector<testing::MountSpec> mounts;
  for (const auto& m : c.mounts()) {
    mounts.push_back({m.container_path(), m.host_path(), m.read_only()});
  }
  auto run = testing::RunContainer(binary, {}, env, mounts, 8s);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->exit_code, 0) << kind << " said:\n" << run->output;
  if (run->private_mounts) {
    // A real bind mount, read-only as Allocate asked.
    EXPECT_NE(run->output.find("socket directory read-only: yes"), std::string::npos)
        << run->output;
  }
  const uint64_t block = 64 * 1024;
  EXPECT_NE(run->output.find("stored=" + std::to_string(kUnit / block)), std::string::npos)
      << run->output;
  EXPECT_NE(run->output.find("beyond quota: RESOURCE_EXHAUSTED"), std::string::npos) << run->output;
  std::cout << "[ container ] " << kind << ", "
            << (run->private_mounts ? "read-only bind mount in a private mount namespace"
                                    : "host paths (no private mount namespace here)")
            << "\n";
}

// DP_CONTAINER_BINARY uses the SDK (Client::FromEnv), when the SDK is built
// in this tree: the data socket is the only way a container has.
TEST_F(DevicePluginIntegrationTest, ContainerUsesItsLeaseWithinQuota) {
  if (std::string(DP_CONTAINER_KIND) != "device_plugin_container_sdk") {
    GTEST_SKIP() << "the SDK is not built in this tree";
  }
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  RunContainerWithinQuota(this, DP_CONTAINER_BINARY, DP_CONTAINER_KIND, "tokenmem-n0-3");
}

// A container given exactly Allocate's answer finds no way to the admin
// plane: no control socket in its environment or its mount, and the one
// socket it has refuses control calls. The agent's leases and pools are as
// they were.
TEST_F(DevicePluginIntegrationTest, ContainerCannotReachTheControlApi) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  auto response = Allocate({"tokenmem-n0-4"});
  ASSERT_TRUE(response.ok()) << response.status().ToString();
  const auto& c = response->container_responses(0);
  auto list_leases = [&] {
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    v1::ListLeasesReply reply;
    EXPECT_TRUE(agent_->stub().ListLeases(&ctx, v1::ListLeasesRequest(), &reply).ok());
    std::vector<std::string> ids;
    for (const auto& l : reply.leases()) ids.push_back(l.id());
    return ids;
  };
  const auto leases_before = list_leases();
  ASSERT_EQ(leases_before.size(), 1u);
  std::map<std::string, std::string> env(c.envs().begin(), c.envs().end());
  std::vector<testing::MountSpec> mounts;
  for (const auto& m : c.mounts()) {
    mounts.push_back({m.container_path(), m.host_path(), m.read_only()});
  }
  auto run = testing::RunContainer(DP_CONTAINER_PROBE_BINARY, {}, env, mounts, 8s);
  ASSERT_TRUE(run.ok()) << run.status().ToString();
  EXPECT_EQ(run->exit_code, 0) << run->output;
  EXPECT_NE(run->output.find("admin plane: unreachable"), std::string::npos) << run->output;
  EXPECT_EQ(list_leases(), leases_before);
  grpc::ClientContext ctx;
  wire::SetTimeout(&ctx, 5s);
  v1::GetPoolRequest req;
  req.set_name("kv");
  v1::PoolInfo pool;
  EXPECT_TRUE(agent_->stub().GetPool(&ctx, req, &pool).ok()) << "the pool survived";
}

TEST_F(DevicePluginIntegrationTest, KubeletRestartMeansRegisterAgain) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  const std::string socket = PluginSocketPath(MakeConfig());
  ASSERT_TRUE(fs::exists(socket));
  ASSERT_TRUE(kubelet_->Restart().ok());
  ASSERT_TRUE(kubelet_->WaitForRegistrations(2, 5s));
  EXPECT_EQ(kubelet_->registrations()[1].endpoint(), "tokenmem.sock");
  ASSERT_TRUE(app_->supervisor().WaitFor(
      [](SupervisorState s, uint64_t n) { return s == SupervisorState::kServing && n == 2; }, 5s));
  // The new socket serves.
  auto stub = testing::DialPlugin(socket, 5s);
  ASSERT_NE(stub, nullptr);
  WatchRecorder watch(stub.get());
  ASSERT_TRUE(watch.WaitFor(
      [&](const auto& l) { return static_cast<size_t>(l.devices_size()) == expected_devices_; },
      5s));
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_registrations_total 2"), std::string::npos);
}

TEST_F(DevicePluginIntegrationTest, AgentStoppedUnhealthyThenBackHealthy) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  WatchRecorder watch(plugin_.get());
  const size_t n = expected_devices_;
  ASSERT_TRUE(watch.WaitFor([&](const auto& l) { return CountHealth(l, "Healthy") == n; }, 5s));

  ASSERT_TRUE(agent_->Stop().ok());
  ASSERT_TRUE(watch.WaitFor([&](const auto& l) { return CountHealth(l, "Unhealthy") == n; }, 5s))
      << "latest: " << CountHealth(watch.latest(), "Healthy") << " Healthy";
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_agent_up 0"), std::string::npos);
  // Allocate now fails, saying why.
  auto refused = Allocate({"tokenmem-n0-0"});
  ASSERT_FALSE(refused.ok());
  EXPECT_NE(refused.status().message().find("does not answer"), std::string::npos)
      << refused.status().message();

  ASSERT_TRUE(agent_->Start().ok());
  ASSERT_TRUE(watch.WaitFor([&](const auto& l) { return CountHealth(l, "Healthy") == n; }, 5s))
      << "latest: " << CountHealth(watch.latest(), "Unhealthy") << " Unhealthy";
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_agent_up 1"), std::string::npos);
  EXPECT_GE(watch.updates(), 3u);
  EXPECT_FALSE(watch.ended());
}

TEST_F(DevicePluginIntegrationTest, LeaseOfAGonePodIsReleasedAfterGrace) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  auto kept = Allocate({"tokenmem-n0-1"});
  auto gone = Allocate({"tokenmem-n0-2", "tokenmem-n0-3"});
  ASSERT_TRUE(kept.ok() && gone.ok());
  const std::string kept_id =
      wire::ParseLease(kept->container_responses(0).envs().at("TOKENMEM_LEASE"))->id;
  const std::string gone_id =
      wire::ParseLease(gone->container_responses(0).envs().at("TOKENMEM_LEASE"))->id;
  kubelet_->SetContainer("keeper", "engine", kResource, {"tokenmem-n0-1"});
  kubelet_->SetContainer("leaver", "engine", kResource, {"tokenmem-n0-2", "tokenmem-n0-3"});
  kubelet_->SetContainer("other", "gpu-user", "example.com/gpu", {"tokenmem-n0-9"});

  // Held: never released, however long.
  std::this_thread::sleep_for(600ms);
  EXPECT_TRUE(HasLease(kept_id));
  EXPECT_TRUE(HasLease(gone_id));

  kubelet_->RemovePod("leaver");
  const auto removed = std::chrono::steady_clock::now();
  while (HasLease(gone_id) && std::chrono::steady_clock::now() - removed < 5s) {
    std::this_thread::sleep_for(20ms);
  }
  const auto waited = std::chrono::steady_clock::now() - removed;
  EXPECT_FALSE(HasLease(gone_id));
  EXPECT_GE(waited, 300ms);  // not before the grace period
  EXPECT_TRUE(HasLease(kept_id));
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_leases_reclaimed_total 1"), std::string::npos);
}

// Allocate is not told its pod: the plugin creates the lease with its
// namespace pending and binds it to the namespace of the pod that
// PodResources then shows holding the devices, within a moment of Allocate
// (fast passes; the full pass is an hour away here).
TEST_F(DevicePluginIntegrationTest, AllocatedLeaseIsBoundToItsPodsNamespace) {
  {
    // An agent from before BindLease answers UNIMPLEMENTED, one with it NOT_FOUND.
    grpc::ClientContext ctx;
    wire::SetTimeout(&ctx, 5s);
    v1::BindLeaseRequest probe;
    probe.set_id("no-such-lease");
    probe.set_namespace_("inference");
    v1::LeaseInfo reply;
    const grpc::Status s = agent_->stub().BindLease(&ctx, probe, &reply);
    if (s.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
      GTEST_SKIP() << "the agent built here has no BindLease yet";
    }
  }
  Config config = MakeConfig();
  config.reclaim_interval = 1h;
  ASSERT_NO_FATAL_FAILURE(StartPlugin(config));
  auto allocated = Allocate({"tokenmem-n0-1", "tokenmem-n0-2"});
  ASSERT_TRUE(allocated.ok()) << allocated.status().ToString();
  const std::string id =
      wire::ParseLease(allocated->container_responses(0).envs().at("TOKENMEM_LEASE"))->id;
  auto lease = [&]() -> v1::LeaseInfo {
    for (const auto& l : AgentLeases()) {
      if (l.id() == id) return l;
    }
    return {};
  };
  EXPECT_EQ(lease().id(), id);
  EXPECT_TRUE(lease().namespace_pending());
  EXPECT_EQ(lease().namespace_(), "");

  // The kubelet records the pod a moment after Allocate.
  std::this_thread::sleep_for(100ms);
  kubelet_->SetContainer("engine-0", "engine", kResource, {"tokenmem-n0-1", "tokenmem-n0-2"},
                         "inference");
  const auto listed = std::chrono::steady_clock::now();
  while (lease().namespace_() != "inference" && std::chrono::steady_clock::now() - listed < 5s) {
    std::this_thread::sleep_for(20ms);
  }
  EXPECT_LT(std::chrono::steady_clock::now() - listed, 2s);
  const v1::LeaseInfo bound = lease();
  EXPECT_EQ(bound.namespace_(), "inference");
  EXPECT_FALSE(bound.namespace_pending());
  EXPECT_NE(Metrics().find("tokenmem_device_plugin_leases_bound_total 1"), std::string::npos);
}

// An agent on a node with DRAM on NUMA nodes 0 and 1 and CXL memory on
// node 2 (the sysfs fixture tests/fixtures/sysfs/two_dram_one_cxl).
class DevicePluginMultiNodeTest : public DevicePluginIntegrationTest {
 public:
  tokenmem::testing::AgentOptions AgentSetup() override {
    tokenmem::testing::AgentOptions options;
    // No pools: the agent would bind their memory to nodes 1 and 2, which
    // this machine may not have. Leases need no pool.
    options.sysfs_root =
        std::string(TOKENMEM_SOURCE_DIR) + "/tests/fixtures/sysfs/two_dram_one_cxl";
    options.dram = "64MiB";
    options.cxl = "16MiB";
    options.separate_data_dir = true;
    return options;
  }
};

TEST_F(DevicePluginMultiNodeTest, DevicesCarryTheirNodeAndRequestsPackOntoOne) {
  ASSERT_NO_FATAL_FAILURE(StartPlugin(MakeConfig()));
  WatchRecorder watch(plugin_.get());
  ASSERT_TRUE(watch.WaitFor([](const auto& l) { return l.devices_size() > 0; }, 5s));
  std::map<int64_t, std::vector<std::string>> by_node;
  const ::v1beta1::ListAndWatchResponse list = watch.latest();
  for (const auto& d : list.devices()) {
    ASSERT_EQ(d.topology().nodes_size(), 1) << d.id();
    const int64_t node = d.topology().nodes(0).id();
    EXPECT_EQ(d.id().rfind("tokenmem-n" + std::to_string(node) + "-", 0), 0u) << d.id();
    by_node[node].push_back(d.id());
  }
  // DRAM split evenly over nodes 0 and 1, CXL on node 2.
  ASSERT_EQ(by_node.size(), 3u) << list.DebugString();
  EXPECT_EQ(by_node[0].size(), 32u);
  EXPECT_EQ(by_node[1].size(), 32u);
  EXPECT_EQ(by_node[2].size(), 16u);

  // Offered 2 free on node 0, 10 on node 1, 16 on node 2: 8 fit on node 1
  // (the tightest node that holds them all), nothing from the others.
  grpc::ClientContext ctx;
  wire::SetTimeout(&ctx, 5s);
  ::v1beta1::PreferredAllocationRequest request;
  auto* c = request.add_container_requests();
  for (int i = 0; i < 2; ++i) c->add_available_device_ids(by_node[0][i]);
  for (int i = 0; i < 10; ++i) c->add_available_device_ids(by_node[1][i]);
  for (int i = 0; i < 16; ++i) c->add_available_device_ids(by_node[2][i]);
  c->set_allocation_size(8);
  ::v1beta1::PreferredAllocationResponse response;
  ASSERT_TRUE(plugin_->GetPreferredAllocation(&ctx, request, &response).ok());
  for (const auto& id : response.container_responses(0).device_ids()) {
    EXPECT_EQ(id.rfind("tokenmem-n1-", 0), 0u) << id;
  }
  EXPECT_EQ(response.container_responses(0).device_ids_size(), 8);

  auto allocated = Allocate({by_node[2][0], by_node[2][1]});
  ASSERT_TRUE(allocated.ok()) << allocated.status().ToString();
  EXPECT_EQ(allocated->container_responses(0).envs().at("TOKENMEM_NUMA_NODES"), "2");
}

// The binary itself: flags in, registration, /healthz, SIGTERM out.
TEST_F(DevicePluginIntegrationTest, BinaryRegistersServesHealthAndStopsCleanly) {
  int probe = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(probe, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(::bind(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(::getsockname(probe, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);
  ::close(probe);

  const Config c = MakeConfig();
  std::vector<std::string> args = {
      DP_PLUGIN_BINARY,
      "--device-plugin-dir=" + c.device_plugin_dir,
      "--pod-resources-socket=" + c.pod_resources_socket,
      "--agent-socket=" + c.agent_socket,
      "--agent-data-socket=" + c.agent_data_socket,
      "--unit=1MiB",
      "--rdma=off",
      "--agent-poll-interval=50ms",
      "--http-listen=127.0.0.1:" + std::to_string(port),
      "--log-level=info",
  };
  const std::string log = root_ / "plugin.log";
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const pid_t parent = ::getpid();
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  auto log_text = [&] {
    std::ifstream in(log);
    return std::string(std::istreambuf_iterator<char>(in), {});
  };
  const bool registered = kubelet_->WaitForRegistrations(1, 5s);
  httplib::Client http("127.0.0.1", port);
  int healthz_status = 0;
  for (int i = 0; i < 100 && healthz_status == 0; ++i) {
    if (auto res = http.Get("/healthz")) {
      healthz_status = res->status;
    } else {
      std::this_thread::sleep_for(20ms);
    }
  }
  ::kill(pid, SIGTERM);
  int status = 0;
  ::waitpid(pid, &status, 0);
  ASSERT_TRUE(registered) << log_text();
  EXPECT_EQ(healthz_status, 200) << log_text();
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status << "\n" << log_text();
  EXPECT_FALSE(fs::exists(PluginSocketPath(c)));
  const std::string text = log_text();
  EXPECT_NE(text.find("registered tokenmem.io/memory"), std::string::npos) << text;
}

}  // namespace
}  // namespace tokenmem::device_plugin
