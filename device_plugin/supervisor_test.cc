#include "supervisor.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>

#include "fakes.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::device_plugin {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::FakeRegistrar;
using tokenmem::testing::TempDir;

// Stands in for a PluginServer: makes the socket file, removes it when
// destroyed if it is still the one it made.
class FakeEndpoint final : public PluginEndpoint {
 public:
  explicit FakeEndpoint(std::string path) : path_(std::move(path)) {
    std::ofstream(path_) << "socket";
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0) ino_ = st.st_ino;
  }
  ~FakeEndpoint() override {
    struct stat st {};
    if (::lstat(path_.c_str(), &st) == 0 && st.st_ino == ino_) ::unlink(path_.c_str());
  }

 private:
  std::string path_;
  ino_t ino_ = 0;
};

class DevicePluginSupervisorTest : public ::testing::Test {
 protected:
  std::unique_ptr<Supervisor> Make(std::chrono::milliseconds recheck = 50ms) {
    SupervisorOptions options;
    options.device_plugin_dir = dir();
    options.resource_name = "tokenmem.io/memory";
    options.backoff_initial = 20ms;
    options.backoff_max = 40ms;
    options.recheck_interval = recheck;
    EndpointFactory factory =
        [this](const std::string& path) -> Result<std::unique_ptr<PluginEndpoint>> {
      ++starts_;
      if (factory_failures_ > 0) {
        --factory_failures_;
        return IoError("scripted: cannot listen on " + path);
      }
      return std::unique_ptr<PluginEndpoint>(new FakeEndpoint(path));
    };
    return std::make_unique<Supervisor>(options, factory, &registrar_);
  }

  std::string dir() const { return tmp_ / "device-plugins"; }
  std::string kubelet() const { return dir() + "/kubelet.sock"; }
  std::string plugin() const { return dir() + "/tokenmem.sock"; }
  void StartKubelet() {
    fs::create_directories(dir());
    std::ofstream(kubelet()) << "kubelet";
  }
  // What a restarting kubelet does: every socket goes, its own comes back.
  // The kubelet's socket goes first: with the plugin's socket gone while the
  // old kubelet.sock is still there, the supervisor would rightly register
  // with the old kubelet once more, and the counts below would depend on
  // timing.
  void RestartKubelet() {
    fs::remove(kubelet());
    fs::remove(plugin());
    StartKubelet();
  }
  static bool Serving(const Supervisor& s, uint64_t registrations) {
    return s.WaitFor(
        [&](SupervisorState state, uint64_t n) {
          return state == SupervisorState::kServing && n >= registrations;
        },
        5s);
  }

  TempDir tmp_;
  FakeRegistrar registrar_;
  std::atomic<int> starts_{0};
  std::atomic<int> factory_failures_{0};
};

TEST_F(DevicePluginSupervisorTest, WaitsForKubeletThenRegisters) {
  fs::create_directories(dir());
  auto sup = Make();
  ASSERT_TRUE(sup->Start().ok());
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(sup->state(), SupervisorState::kWaitingForKubelet);
  EXPECT_EQ(registrar_.count(), 0u);
  EXPECT_FALSE(fs::exists(plugin()));

  StartKubelet();
  ASSERT_TRUE(Serving(*sup, 1)) << StateName(sup->state());
  EXPECT_TRUE(fs::exists(plugin()));
  ASSERT_EQ(registrar_.count(), 1u);
  EXPECT_EQ(registrar_.calls[0].kubelet_socket, kubelet());
  EXPECT_EQ(registrar_.calls[0].endpoint, "tokenmem.sock");
  EXPECT_EQ(registrar_.calls[0].resource_name, "tokenmem.io/memory");
  sup->Stop();
  EXPECT_EQ(sup->state(), SupervisorState::kStopped);
  EXPECT_FALSE(fs::exists(plugin()));  // the endpoint was stopped
}

TEST_F(DevicePluginSupervisorTest, InotifyAloneNoticesAKubeletRestart) {
  StartKubelet();
  auto sup = Make(/*recheck=*/1h);  // only inotify can wake it
  ASSERT_TRUE(sup->Start().ok());
  ASSERT_TRUE(Serving(*sup, 1));
  RestartKubelet();
  ASSERT_TRUE(Serving(*sup, 2)) << StateName(sup->state());
  EXPECT_EQ(starts_.load(), 2);
  EXPECT_TRUE(fs::exists(plugin()));
  // Its own socket's creation did not set off another round.
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(sup->registrations(), 2u);
}

TEST_F(DevicePluginSupervisorTest, NewKubeletSocketAloneMeansRegisterAgain) {
  StartKubelet();
  auto sup = Make();
  ASSERT_TRUE(sup->Start().ok());
  ASSERT_TRUE(Serving(*sup, 1));
  fs::remove(kubelet());
  std::ofstream(kubelet()) << "kubelet again";
  ASSERT_TRUE(Serving(*sup, 2));
}

TEST_F(DevicePluginSupervisorTest, KubeletGoneButPluginSocketKeptKeepsServing) {
  StartKubelet();
  auto sup = Make();
  ASSERT_TRUE(sup->Start().ok());
  ASSERT_TRUE(Serving(*sup, 1));
  fs::remove(kubelet());
  std::this_thread::sleep_for(150ms);
  EXPECT_EQ(sup->state(), SupervisorState::kServing);
  EXPECT_EQ(sup->registrations(), 1u);
}

TEST_F(DevicePluginSupervisorTest, FailedRegistrationsBackOffAndRetry) {
  registrar_.failures_left = 2;
  StartKubelet();
  auto sup = Make();
  ASSERT_TRUE(sup->Start().ok());
  ASSERT_TRUE(Serving(*sup, 1));
  EXPECT_EQ(registrar_.count(), 3u);
  EXPECT_EQ(sup->last_error().code(), StatusCode::kUnavailable);
  EXPECT_EQ(starts_.load(), 3);  // a fresh endpoint per attempt
}

TEST_F(DevicePluginSupervisorTest, FailedServerStartBacksOff) {
  factory_failures_ = 1;
  StartKubelet();
  auto sup = Make();
  ASSERT_TRUE(sup->Start().ok());
  ASSERT_TRUE(Serving(*sup, 1));
  EXPECT_EQ(sup->last_error().code(), StatusCode::kIoError);
  EXPECT_EQ(registrar_.count(), 1u);
}

TEST_F(DevicePluginSupervisorTest, MissingDirectoryIsWaitedFor) {
  auto sup = Make();
  ASSERT_TRUE(sup->Start().ok());
  std::this_thread::sleep_for(80ms);
  EXPECT_EQ(sup->state(), SupervisorState::kWaitingForKubelet);
  StartKubelet();
  ASSERT_TRUE(Serving(*sup, 1));
  RestartKubelet();  // the watch set up late works too
  ASSERT_TRUE(Serving(*sup, 2));
}

TEST_F(DevicePluginSupervisorTest, RestartRequestRegistersAgain) {
  StartKubelet();
  auto sup = Make(1h);
  ASSERT_TRUE(sup->Start().ok());
  ASSERT_TRUE(Serving(*sup, 1));
  sup->RequestRestart();
  ASSERT_TRUE(Serving(*sup, 2));
  EXPECT_EQ(starts_.load(), 2);
}

}  // namespace
}  // namespace tokenmem::device_plugin
