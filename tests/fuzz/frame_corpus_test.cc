// Replays the frame fuzzer's checked-in corpus through the fuzzer's own entry
// point (frame_fuzzer.cc is compiled into this test without libFuzzer), so
// its round-trip checks run in every build, with GCC too. The seeds'
// names say what they must do: `valid-req-*` and `valid-rep-*` decode as a
// request or a reply, `bad-req-*` and `bad-rep-*` are refused by that
// decoder; any other file (an input the fuzzer once crashed on) only has to
// run cleanly.

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "tokenmem/transport/frame.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace tokenmem::transport {
namespace {

namespace fs = std::filesystem;

struct Seed {
  std::string name;
  std::vector<std::byte> bytes;
};

std::vector<Seed> LoadCorpus() {
  const fs::path dir = fs::path(TOKENMEM_SOURCE_DIR) / "tests" / "fuzz" / "corpus" / "frame";
  std::vector<Seed> seeds;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file()) continue;
    std::ifstream in(entry.path(), std::ios::binary);
    std::vector<char> raw((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    Seed seed{entry.path().filename().string(), std::vector<std::byte>(raw.size())};
    for (size_t i = 0; i < raw.size(); ++i) seed.bytes[i] = static_cast<std::byte>(raw[i]);
    seeds.push_back(std::move(seed));
  }
  EXPECT_FALSE(ec) << dir << ": " << ec.message();
  return seeds;
}

bool StartsWith(const std::string& s, std::string_view prefix) { return s.starts_with(prefix); }

TEST(FrameCorpusTest, CorpusHasValidAndBadSeeds) {
  const std::vector<Seed> seeds = LoadCorpus();
  int valid = 0;
  int bad = 0;
  for (const Seed& s : seeds) {
    if (StartsWith(s.name, "valid-")) ++valid;
    if (StartsWith(s.name, "bad-")) ++bad;
  }
  EXPECT_GE(valid, 9) << "every op, and an error reply";
  EXPECT_GE(bad, 6);
}

TEST(FrameCorpusTest, EverySeedRunsThroughTheFuzzerCleanly) {
  const std::vector<Seed> seeds = LoadCorpus();
  ASSERT_FALSE(seeds.empty());
  for (const Seed& s : seeds) {
    SCOPED_TRACE(s.name);
    // An empty span has a null data(); the entry point takes any pointer.
    EXPECT_EQ(
        LLVMFuzzerTestOneInput(reinterpret_cast<const uint8_t*>(s.bytes.data()), s.bytes.size()),
        0);
  }
}

TEST(FrameCorpusTest, ValidSeedsDecodeAndBadSeedsFail) {
  int checked = 0;
  for (const Seed& s : LoadCorpus()) {
    SCOPED_TRACE(s.name);
    const bool valid = StartsWith(s.name, "valid-");
    if (!valid && !StartsWith(s.name, "bad-")) continue;
    const bool request = StartsWith(s.name, valid ? "valid-req-" : "bad-req-");
    ASSERT_TRUE(request || StartsWith(s.name, valid ? "valid-rep-" : "bad-rep-"))
        << "seed names are valid-req-*, valid-rep-*, bad-req-* or bad-rep-*";
    const Status status = request ? DecodeRequest(s.bytes).status() : DecodeReply(s.bytes).status();
    if (valid) {
      EXPECT_TRUE(status.ok()) << status.message();
    } else {
      EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
      EXPECT_TRUE(StartsWith(status.message(), "malformed frame: ")) << status.message();
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(FrameCorpusTest, ValidSeedsCoverEveryOp) {
  std::vector<bool> request_ops(9, false);
  std::vector<bool> reply_ops(9, false);
  bool error_reply = false;
  for (const Seed& s : LoadCorpus()) {
    if (StartsWith(s.name, "valid-req-")) {
      Result<Request> r = DecodeRequest(s.bytes);
      if (r.ok()) request_ops[static_cast<size_t>(r->op)] = true;
    } else if (StartsWith(s.name, "valid-rep-")) {
      Result<Reply> r = DecodeReply(s.bytes);
      if (!r.ok()) continue;
      if (r->status == StatusCode::kOk) {
        reply_ops[static_cast<size_t>(r->op)] = true;
      } else {
        error_reply = true;
      }
    }
  }
  for (size_t op = 1; op <= 8; ++op) {
    EXPECT_TRUE(request_ops[op]) << "no valid request seed for " << OpName(static_cast<Op>(op));
  }
  EXPECT_TRUE(error_reply) << "no valid error reply seed";
  EXPECT_TRUE(reply_ops[static_cast<size_t>(Op::kGet)]) << "no valid GET reply seed";
}

}  // namespace
}  // namespace tokenmem::transport
