// TempDir: a fresh directory for one test, removed with everything in it when
// the object goes away. Header-only and for tests only; it needs no GoogleTest.
// One object per thread: it holds no lock, and the directory's contents are
// the test's business.
#pragma once

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <system_error>

namespace tokenmem::testing {

class TempDir {
 public:
  // Makes $TMPDIR/tokenmem-test-XXXXXX (/tmp when TMPDIR is unset or empty).
  // Aborts the process, after printing why, when the directory cannot be made:
  // no test can go on without it, and an empty path would point the test at
  // the working directory instead.
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern =
        std::string(base != nullptr && *base != '\0' ? base : "/tmp") + "/tokenmem-test-XXXXXX";
    if (::mkdtemp(pattern.data()) == nullptr) {
      std::perror(("mkdtemp " + pattern).c_str());
      std::abort();
    }
    path_ = pattern;
  }

  // Removes the directory and all it holds; errors are ignored, as nothing
  // can be done about them at that point.
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }

  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // The directory's absolute path; never empty.
  const std::filesystem::path& path() const { return path_; }

  // path() / name: a path inside the directory (nothing is created).
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace tokenmem::testing
