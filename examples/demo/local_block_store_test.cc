// LocalBlockStore against the SDK's FakeAgent (client_sdk/tests/fake_agent.h).
#include "demo/local_block_store.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <string>
#include <vector>

#include "demo/block_content.h"
#include "fake_agent.h"

namespace tokenmem::demo {
namespace {

using tokenmem::testing::FakeAgent;
using tokenmem::testing::FakeAgentOptions;

constexpr std::chrono::milliseconds kTimeout{5000};

BlockKey K(uint64_t i) { return BlockKey{0x1234, i}; }

class LocalBlockStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/tmdemo.XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
    FakeAgentOptions options;
    options.socket_path = socket();
    agent_ = std::make_unique<FakeAgent>(options);
    ASSERT_TRUE(agent_->Start().ok());
  }
  void TearDown() override {
    agent_.reset();
    std::filesystem::remove_all(dir_);
  }
  std::string socket() const { return dir_ + "/agent-data.sock"; }

  std::unique_ptr<LocalBlockStore> Open() {
    auto store = LocalBlockStore::Open(socket(), "p1", {"lease1", "secret1"}, kTimeout);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  std::string dir_;
  std::unique_ptr<FakeAgent> agent_;
};

TEST_F(LocalBlockStoreTest, PutsLooksUpAndGetsThroughSharedMemory) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->path(), "local");
  EXPECT_NE(store->description().find(socket()), std::string::npos);
  EXPECT_FALSE(store->tiers_per_read());

  const std::vector<BlockKey> keys = {K(1), K(2), K(3)};
  std::vector<std::string> contents;
  for (const BlockKey& k : keys) contents.push_back(BlockContent(k, 3000));
  std::vector<std::span<const std::byte>> blocks;
  for (const auto& c : contents) blocks.push_back(std::as_bytes(std::span(c)));
  std::vector<BlockOutcome> put(3);
  ASSERT_TRUE(
      store->PutMany(std::span(keys).first(2), std::span(blocks).first(2), std::span(put).first(2))
          .ok());
  EXPECT_EQ(put[0].code, StatusCode::kOk);
  EXPECT_EQ(put[1].code, StatusCode::kOk);
  auto read = agent_->Read("p1", K(2));
  ASSERT_TRUE(read.ok());
  EXPECT_EQ(*read, contents[1]);

  auto matched = store->LookupPrefix(keys);
  ASSERT_TRUE(matched.ok());
  EXPECT_EQ(*matched, 2u);

  // One buffer, a slice per block; the missing third block is a miss.
  std::vector<std::byte> memory(3 * 4096);
  std::vector<std::span<std::byte>> buffers;
  for (size_t i = 0; i < 3; ++i) buffers.emplace_back(memory.data() + i * 4096, 4096);
  std::vector<BlockOutcome> got(3);
  ASSERT_TRUE(store->GetMany(keys, buffers, got).ok());
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(got[i].code, StatusCode::kOk) << i;
    ASSERT_EQ(got[i].length, 3000u) << i;
    EXPECT_TRUE(VerifyBlock(keys[i], 3000,
                            {reinterpret_cast<const char*>(buffers[i].data()), got[i].length}));
  }
  EXPECT_EQ(got[2].code, StatusCode::kNotFound);
}

TEST_F(LocalBlockStoreTest, ReadsBlocksOnNvmeAndReportsBlocksTooLongForTheirBuffer) {
  ASSERT_TRUE(agent_->Store("p1", K(7), BlockContent(K(7), 2048), /*tier=*/2).ok());
  ASSERT_TRUE(agent_->Store("p1", K(8), BlockContent(K(8), 4000)).ok());
  auto store = Open();
  ASSERT_NE(store, nullptr);
  std::vector<std::byte> a(2048), b(1024);
  const std::vector<BlockKey> keys = {K(7), K(8)};
  std::vector<std::span<std::byte>> buffers = {a, b};
  std::vector<BlockOutcome> got(2);
  ASSERT_TRUE(store->GetMany(keys, buffers, got).ok());
  EXPECT_EQ(got[0].code, StatusCode::kOk);
  EXPECT_TRUE(VerifyBlock(K(7), 2048, {reinterpret_cast<const char*>(a.data()), a.size()}));
  // Too long: a fact about that block, not a failed call.
  EXPECT_EQ(got[1].code, StatusCode::kInvalidArgument);
  EXPECT_EQ(got[1].length, 4000u);
  EXPECT_FALSE(got[1].message.empty());
}

TEST_F(LocalBlockStoreTest, OpenNamesTheStepThatFailed) {
  auto none = LocalBlockStore::Open(dir_ + "/absent.sock", "p1", {"lease1", "secret1"}, kTimeout);
  ASSERT_FALSE(none.ok());
  EXPECT_EQ(none.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(none.status().message().rfind("Connect: UNAVAILABLE: ", 0), 0u)
      << none.status().message();

  auto pool = LocalBlockStore::Open(socket(), "nope", {"lease1", "secret1"}, kTimeout);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().message().rfind("Attach: ", 0), 0u) << pool.status().message();

  auto secret = LocalBlockStore::Open(socket(), "p1", {"lease1", "s3cr3t-guess"}, kTimeout);
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().message().rfind("Connect: ", 0), 0u) << secret.status().message();
  EXPECT_EQ(secret.status().message().find("s3cr3t-guess"), std::string::npos)
      << secret.status().message();
}

TEST_F(LocalBlockStoreTest, AnAgentThatIsGoneFailsTheCall) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  agent_->DropConnections();
  const std::vector<BlockKey> keys = {K(1)};
  const std::string content = BlockContent(K(1), 100);
  std::vector<std::span<const std::byte>> blocks = {std::as_bytes(std::span(content))};
  std::vector<BlockOutcome> put(1);
  Status s = store->PutMany(keys, blocks, put);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message().rfind("PutMany: UNAVAILABLE: ", 0), 0u) << s.message();
}

TEST_F(LocalBlockStoreTest, MismatchedSpansAreRefused) {
  auto store = Open();
  ASSERT_NE(store, nullptr);
  const std::vector<BlockKey> keys = {K(1), K(2)};
  std::vector<std::byte> a(16);
  std::vector<std::span<std::byte>> buffers = {a};
  std::vector<BlockOutcome> got(2);
  EXPECT_EQ(store->GetMany(keys, buffers, got).code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace tokenmem::demo
