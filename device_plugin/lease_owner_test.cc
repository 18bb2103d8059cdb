#include "lease_owner.h"

#include <gtest/gtest.h>

namespace tokenmem::device_plugin {
namespace {

TEST(DevicePluginLeaseOwnerTest, RoundTripSorted) {
  const std::string owner =
      FormatLeaseOwner("tokenmem.io/memory", {"tokenmem-n0-3", "tokenmem-n0-1"});
  EXPECT_EQ(owner, "k8s-device-plugin:tokenmem.io/memory:tokenmem-n0-1,tokenmem-n0-3");
  auto parsed = ParseLeaseOwner(owner);
  ASSERT_TRUE(parsed.has_value());
  EXPECT_EQ(parsed->resource, "tokenmem.io/memory");
  EXPECT_EQ(parsed->devices, (std::vector<std::string>{"tokenmem-n0-1", "tokenmem-n0-3"}));
}

TEST(DevicePluginLeaseOwnerTest, OtherOwnersAreNotOurs) {
  for (const char* owner :
       {"", "my-pod", "k8s-device-plugin:", "k8s-device-plugin:r", "k8s-device-plugin::a",
        "k8s-device-plugin:r:", "k8s-device-plugin:r:a,,b", "k8s-device-plugin:r:a:b"}) {
    EXPECT_FALSE(ParseLeaseOwner(owner).has_value()) << owner;
  }
}

}  // namespace
}  // namespace tokenmem::device_plugin
