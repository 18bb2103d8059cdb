#include "cli/file_io.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "tokenmem/common/testing/temp_dir.h"

namespace tokenmem::cli {
namespace {

TEST(FileIoTest, RoundTripsBinaryData) {
  tokenmem::testing::TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  std::string path = (dir / "block.bin").string();
  std::string data("\0\1\2 binary \xff", 13);
  data += std::string(200000, 'x');  // more than one read
  ASSERT_TRUE(WriteWholeFile(path, data).ok());
  auto back = ReadWholeFile(path);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, data);

  ASSERT_TRUE(WriteWholeFile(path, "short").ok());  // truncates
  EXPECT_EQ(*ReadWholeFile(path), "short");
  ASSERT_TRUE(WriteWholeFile(path, "").ok());
  EXPECT_EQ(*ReadWholeFile(path), "");
}

TEST(FileIoTest, ReportsThePathAndTheReason) {
  tokenmem::testing::TempDir dir;
  std::string missing = (dir / "missing").string();
  auto r = ReadWholeFile(missing);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kIoError);
  EXPECT_NE(r.status().message().find(missing), std::string::npos);
  EXPECT_NE(r.status().message().find("No such file"), std::string::npos);

  Status w = WriteWholeFile((dir / "no-dir" / "x").string(), "data");
  EXPECT_EQ(w.code(), StatusCode::kIoError);
  EXPECT_FALSE(std::filesystem::exists(dir / "no-dir"));
}

}  // namespace
}  // namespace tokenmem::cli
