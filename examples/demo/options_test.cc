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
  EXPECT_EQ(o->path, DataPath::kLocal);
  EXPECT_EQ(o->data_socket, "");
  KeyNamespace ns = KeyNamespaceOf(*o);
  EXPECT_EQ(ns.model, "demo-model");
  EXPECT_EQ(ns.revision, "rev1");
  EXPECT_EQ(ns.kv_dtype, "fp16");
  EXPECT_EQ(ns.kv_layout, "nhd");
  EXPECT_EQ(ns.block_tokens, 16u);
  EXPECT_EQ(ns.tp_size, 1u);
  EXPECT_TRUE(ns.tenant_salt.empty());
}

TEST(DemoOptionsTest, DataPathAndKeyNamespace) {
  auto o = ParseDemoOptions({"--path", "control", "--data-socket", "/d/x-data.sock", "--model",
                             "llama", "--revision=abc", "--kv-dtype", "bf16", "--kv-layout", "hnd",
                             "--block-tokens", "32"});
  ASSERT_TRUE(o.ok()) << o.status().ToString();
  EXPECT_EQ(o->path, DataPath::kControl);
  EXPECT_EQ(DataPathName(o->path), "control");
  EXPECT_EQ(DataPathName(DataPath::kLocal), "local");
  EXPECT_EQ(o->data_socket, "/d/x-data.sock");
  KeyNamespace ns = KeyNamespaceOf(*o);
  EXPECT_EQ(ns.model, "llama");
  EXPECT_EQ(ns.revision, "abc");
  EXPECT_EQ(ns.kv_dtype, "bf16");
  EXPECT_EQ(ns.kv_layout, "hnd");
  EXPECT_EQ(ns.block_tokens, 32u);
  EXPECT_EQ(ParseDemoOptions({"--path=local"})->path, DataPath::kLocal);
}

TEST(DemoOptionsTest, DataSocketSitsBesideTheControlSocket) {
  EXPECT_EQ(DataSocketBeside("/run/tokenmem/agent.sock"), "/run/tokenmem/agent-data.sock");
  EXPECT_EQ(DataSocketBeside("/tmp/t/ctl.sock"), "/tmp/t/ctl-data.sock");
  EXPECT_EQ(DataSocketBeside("/tmp/t/ctl"), "/tmp/t/ctl-data.sock");
  EXPECT_EQ(DataSocketBeside("agent.sock"), "agent-data.sock");
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
                                                         {"--path", "rdma"},
                                                         {"--path"},
                                                         {"--model", ""},
                                                         {"--namespace", "x"},
                                                         {"--socket", "a", "--address", "b:1"}}) {
    auto o = ParseDemoOptions(args);
    EXPECT_FALSE(o.ok()) << args[0];
    EXPECT_EQ(o.status().code(), StatusCode::kInvalidArgument);
  }
}

TEST(DemoOptionsTest, Help) {
  EXPECT_TRUE(ParseDemoOptions({"--help"})->help);
  EXPECT_NE(DemoUsageText().find("--system-prompt-tokens"), std::string::npos);
  EXPECT_NE(DemoUsageText().find("--path local|control"), std::string::npos);
  EXPECT_NE(DemoUsageText().find("--data-socket PATH"), std::string::npos);
}

}  // namespace
}  // namespace tokenmem::demo
