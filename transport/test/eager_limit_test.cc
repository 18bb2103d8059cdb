#include "tokenmem/transport/eager_limit.h"

#include <gtest/gtest.h>
#include <ucp/api/ucp.h>

#include <cstdlib>
#include <fstream>

#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::transport {
namespace {

class EagerLimitTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (const char* v = std::getenv("UCX_RNDV_THRESH")) saved_ = v;
    ::unsetenv("UCX_RNDV_THRESH");
  }
  void TearDown() override {
    if (saved_) {
      ::setenv("UCX_RNDV_THRESH", saved_->c_str(), 1);
    } else {
      ::unsetenv("UCX_RNDV_THRESH");
    }
  }
  testing::TempDir sysfs_;
  std::optional<std::string> saved_;
};

TEST_F(EagerLimitTest, EagerUpToTheTcpLimitWithoutRdmaDevices) {
  EXPECT_EQ(DefaultEagerMaxBytes(sysfs_.path()), kTcpEagerMaxBytes);  // no class/infiniband
  std::filesystem::create_directories(sysfs_.path() / "class" / "infiniband");
  EXPECT_EQ(DefaultEagerMaxBytes(sysfs_.path()), kTcpEagerMaxBytes);  // present but empty
}

TEST_F(EagerLimitTest, UcxDecidesWhereAnRdmaDeviceExists) {
  std::filesystem::create_directories(sysfs_.path() / "class" / "infiniband" / "mlx5_0");
  EXPECT_EQ(DefaultEagerMaxBytes(sysfs_.path()), 0u);
}

TEST_F(EagerLimitTest, AnOperatorsRendezvousThresholdWins) {
  ::setenv("UCX_RNDV_THRESH", "32k", 1);
  EXPECT_EQ(DefaultEagerMaxBytes(sysfs_.path()), 0u);
}

TEST_F(EagerLimitTest, FlagOnlyForPayloadsWithinTheLimit) {
  EXPECT_EQ(EagerSendFlag(0, kTcpEagerMaxBytes), 0u);
  EXPECT_EQ(EagerSendFlag(64 << 10, kTcpEagerMaxBytes), uint32_t{UCP_AM_SEND_FLAG_EAGER});
  EXPECT_EQ(EagerSendFlag(kTcpEagerMaxBytes, kTcpEagerMaxBytes), uint32_t{UCP_AM_SEND_FLAG_EAGER});
  EXPECT_EQ(EagerSendFlag(kTcpEagerMaxBytes + 1, kTcpEagerMaxBytes), 0u);
  EXPECT_EQ(EagerSendFlag(4096, 0), 0u);
}

}  // namespace
}  // namespace tokenmem::transport
