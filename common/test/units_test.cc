#include "tokenmem/common/units.h"

#include <gtest/gtest.h>

namespace tokenmem {
namespace {

TEST(UnitsTest, ParsesBinaryAndDecimal) {
  EXPECT_EQ(*ParseByteSize("4096"), 4096u);
  EXPECT_EQ(*ParseByteSize("64KiB"), 65536u);
  EXPECT_EQ(*ParseByteSize("1.5GiB"), 1610612736u);
  EXPECT_EQ(*ParseByteSize("10GB"), 10000000000u);
  EXPECT_EQ(*ParseByteSize(" 2 MiB "), 2097152u);
  EXPECT_EQ(*ParseByteSize("0"), 0u);
}

TEST(UnitsTest, RejectsNonsense) {
  for (const char* bad : {"", "abc", "1.2.3", "12XB", "-5", "0.3B", "99999999999TB"}) {
    auto r = ParseByteSize(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
    }
  }
}

TEST(UnitsTest, Formats) {
  EXPECT_EQ(FormatByteSize(65536), "64KiB");
  EXPECT_EQ(FormatByteSize(1000), "1000B");
  EXPECT_EQ(FormatByteSize(3ull << 30), "3GiB");
  EXPECT_EQ(HumanBytes(1536.0 * 1024 * 1024), "1.5 GiB");
}

}  // namespace
}  // namespace tokenmem
