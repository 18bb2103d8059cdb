// Test helpers for agent/config: a temporary directory and status matchers.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "tokenmem/common/status.h"

namespace tokenmem::config::testing {

// A fresh directory under $TMPDIR (or /tmp), removed with everything in it.
class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/tokenmem-config-XXXXXX";
    char* made = ::mkdtemp(tmpl.data());
    EXPECT_NE(made, nullptr) << "mkdtemp " << tmpl;
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::filesystem::path& path() const { return path_; }

  // Writes `text` to path()/name and returns the full path.
  std::filesystem::path Write(const std::string& name, std::string_view text) const {
    std::filesystem::path p = path_ / name;
    std::ofstream out(p, std::ios::binary);
    out << text;
    EXPECT_TRUE(out.good()) << "writing " << p;
    return p;
  }

 private:
  std::filesystem::path path_;
};

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
