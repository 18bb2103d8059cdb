#include "wire/lease.h"

#include <gtest/gtest.h>

namespace tokenmem::wire {
namespace {

TEST(LeaseTest, ParsesIdAndSecret) {
  auto lease = ParseLease("l-42:0123abcd");
  ASSERT_TRUE(lease.ok()) << lease.status().ToString();
  EXPECT_EQ(lease->id, "l-42");
  EXPECT_EQ(lease->secret, "0123abcd");
  EXPECT_EQ(FormatLease(lease->id, lease->secret), "l-42:0123abcd");
}

TEST(LeaseTest, SplitsAtTheFirstColon) {
  auto lease = ParseLease("id:se:cret");
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(lease->id, "id");
  EXPECT_EQ(lease->secret, "se:cret");
}

TEST(LeaseTest, RejectsMalformedTextWithoutEchoingIt) {
  for (const char* text : {"", "nocolon", ":secret", "id:"}) {
    auto lease = ParseLease(text);
    ASSERT_FALSE(lease.ok()) << text;
    EXPECT_EQ(lease.status().code(), StatusCode::kInvalidArgument);
  }
  auto no_colon = ParseLease("topsecretvalue");
  EXPECT_EQ(no_colon.status().message().find("topsecretvalue"), std::string::npos);
}

TEST(LeaseTest, BuildsCredentials) {
  auto c = ToCredentials({"a", "b"});
  EXPECT_EQ(c.id(), "a");
  EXPECT_EQ(c.secret(), "b");
}

}  // namespace
}  // namespace tokenmem::wire
