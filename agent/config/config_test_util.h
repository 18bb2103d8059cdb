// Test helpers for agent/config: writing files into a TempDir, and status
// matchers.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"
#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::config::testing {

// Writes `text` to dir.path()/name and returns the full path; a failed write
// fails the current test.
inline std::filesystem::path WriteFile(const tokenmem::testing::TempDir& dir,
                                       const std::string& name, std::string_view text) {
  std::filesystem::path p = dir / name;
  std::ofstream out(p, std::ios::binary);
  out << text;
  EXPECT_TRUE(out.good()) << "writing " << p;
  return p;
}

// Passes when `s` is kInvalidArgument and its message contains `needle`.
inline ::testing::AssertionResult IsInvalid(const Status& s, std::string_view needle) {
  if (s.code() != StatusCode::kInvalidArgument) {
    return ::testing::AssertionFailure() << "expected INVALID_ARGUMENT, got " << s.ToString();
  }
  if (s.message().find(needle) == std::string::npos) {
    return ::testing::AssertionFailure()
           << "message '" << s.message() << "' lacks '" << needle << "'";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace tokenmem::config::testing
