#include "demo/options.h"

#include <gtest/gtest.h>

namespace tokenmem::demo {
namespace {

TEST(DemoOptionsTest, DefaultsMatchTheDocumentation) {
  auto o = ParseDemoOptions({});
  ASSERT_TRUE(o.ok());
  EXPECT_EQ(o->pool, "demo");
  EXPECT_EQ(o->block_size, 64u * 1024);
  EXPECT_EQ(o->dram, 8u << 20);
  EXPECT_EQ(o->nvme, 256u << 20);
  EXPECT_EQ(o->sessions, 6);
  EXPECT_EQ(o->turns, 6);
  EXPECT_EQ(o->system_prompt_tokens, 1024u);
  EXPECT_EQ(o->user_tokens, 96u);
  EXPECT_EQ(o->reply_tokens, 160u);
  EXPECT_EQ(o->block_tokens, 16u);
  EXPECT_EQ(o->kv_bytes_per_block, 0u);
  EXPECT_EQ(o->seed, 1u);
  EXPECT_EQ(o->quota, 1ull << 30);
  EXPECT_FALSE(o->json);
}

TEST(DemoOptionsTest, ParsesEveryForm) {
  auto o = ParseDemoOptions({"--socket", "/tmp/a.sock", "--sessions=3", "--turns", "2",
                             "--block-size", "16KiB", "--kv-bytes-per-block", "8KiB", "--json",
                             "--keep-lease", "--seed", "42", "--timeout", "1.5"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->socket, "/tmp/a.sock");
  EXPECT_EQ(o->sessions, 3);
  EXPECT_EQ(o->turns, 2);
  EXPECT_EQ(o->block_size, 16u * 1024);
  EXPECT_EQ(o->kv_bytes_per_block, 8u * 1024);
  EXPECT_EQ(o->seed, 42u);
  EXPECT_EQ(o->timeout, std::chrono::milliseconds(1500));
  EXPECT_TRUE(o->json);
  EXPECT_TRUE(o->keep_lease);
}

TEST(DemoOptionsTest, RejectsBadInput) {
  for (auto args : std::vector<std::vector<std::string>>{{"--sessions", "0"},
                                                         {"--turns", "-1"},
                                                         {"--block-tokens", "0"},
                                                         {"--dram", "lots"},
                                                         {"--bogus", "1"},
                                                         {"--sessions"},
                                                         {"stray"},
                                                         {"--quota", "0"},
                                                         {"--socket", "a", "--address", "b:1"}}) {
    auto o = ParseDemoOptions(args);
    EXPECT_FALSE(o.ok()) << args[0];
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(DemoOptionsTest, Help) {
  EXPECT_TRUE(ParseDemoOptions({"--help"})->help);
  EXPECT_NE(DemoUsageText().find("--system-prompt-tokens"), std::string::npos);
}

}  // namespace
}  // namespace tokenmem::demo
