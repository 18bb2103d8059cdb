#include "config/config_values.h"

#include <gtest/gtest.h>

#include <cstdint>

namespace tokenmem::config {
namespace {

TEST(ParseSizeTest, WholeNumbersAreExact) {
  EXPECT_EQ(*ParseSize("0"), 0u);
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64KiB"), 64u << 10);
  EXPECT_EQ(*ParseSize("10GB"), 10000000000u);
  EXPECT_EQ(*ParseSize("3T"), 3ull << 40);
  // Beyond a double's 53 bits: still exact.
  EXPECT_EQ(*ParseSize("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(*ParseSize("18446744073709551615B"), UINT64_MAX);
  EXPECT_EQ(*ParseSize("9007199254740993"), 9007199254740993ull);
  EXPECT_EQ(*ParseSize("16777215TiB"), 16777215ull << 40);
}

TEST(ParseSizeTest, OtherFormsGoToTheSharedParser) {
  EXPECT_EQ(*ParseSize("1.5GiB"), 3ull << 29);
  EXPECT_EQ(*ParseSize(" 2 MiB "), 2u << 20);
}

TEST(ParseSizeTest, Errors) {
  for (const char* bad : {"", "12XB", "-5", "1.5", "GiB", "16777216TiB", "18446744073709551616"}) {
    auto r = ParseSize(bad);
    EXPECT_FALSE(r.ok()) << bad;
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument) << bad;
    }
  }
}

TEST(ParseNumberTest, WholeNumbers) {
  EXPECT_EQ(*ParseUint32("4294967295"), UINT32_MAX);
  EXPECT_FALSE(ParseUint32("4294967296").ok());
  EXPECT_FALSE(ParseUint32("+1").ok());
  EXPECT_FALSE(ParseUint32(" 1").ok());
  EXPECT_FALSE(ParseUint32("").ok());
  EXPECT_EQ(*ParseUint64("18446744073709551615"), UINT64_MAX);
  EXPECT_EQ(*ParseInt("-3"), -3);
  EXPECT_FALSE(ParseInt("1.0").ok());
}

TEST(ParseNumberTest, Doubles) {
  EXPECT_EQ(*ParseDouble("0.1"), 0.1);
  EXPECT_EQ(*ParseDouble("1e-3"), 0.001);
  EXPECT_EQ(*ParseDouble("2"), 2.0);
  for (const char* bad : {"", "nan", "inf", "0.1x", "lots"})
    EXPECT_FALSE(ParseDouble(bad).ok()) << bad;
  for (double v : {0.1, 0.1 + 0.2, 1.0 / 3.0, 1e-300, 0.0}) {
    EXPECT_EQ(*ParseDouble(FormatDouble(v)), v) << FormatDouble(v);
  }
  EXPECT_EQ(FormatDouble(0.1), "0.1");
}

TEST(ParseOctalModeTest, ReadsOctal) {
  EXPECT_EQ(*ParseOctalMode("0660"), 0660u);
  EXPECT_EQ(*ParseOctalMode("660"), 0660u);
  EXPECT_EQ(*ParseOctalMode("0o600"), 0600u);
  EXPECT_EQ(*ParseOctalMode("0"), 0u);
  for (const char* bad : {"", "0698", "rw", "0o", "10000", "-1"}) {
    EXPECT_FALSE(ParseOctalMode(bad).ok()) << bad;
  }
  EXPECT_EQ(FormatOctalMode(0660), "0660");
  EXPECT_EQ(FormatOctalMode(0), "0000");
  EXPECT_EQ(FormatOctalMode(01777), "1777");
}

TEST(ParseBoolTest, Words) {
  for (const char* t : {"true", "True", "TRUE", "yes", "on"}) EXPECT_TRUE(*ParseBool(t)) << t;
  for (const char* f : {"false", "False", "no", "OFF"}) EXPECT_FALSE(*ParseBool(f)) << f;
  for (const char* bad : {"", "1", "0", "maybe", "tRUE"}) EXPECT_FALSE(ParseBool(bad).ok()) << bad;
}

}  // namespace
}  // namespace tokenmem::config
