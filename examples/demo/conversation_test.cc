#include "demo/conversation.h"

#include <gtest/gtest.h>

namespace tokenmem::demo {
namespace {

TEST(ConversationTest, StreamsAreDeterministicAndDistinct) {
  EXPECT_EQ(SystemPrompt(1, 64), SystemPrompt(1, 64));
  EXPECT_NE(SystemPrompt(1, 64), SystemPrompt(2, 64));
  EXPECT_EQ(UserMessage(1, 0, 0, 32), UserMessage(1, 0, 0, 32));
  EXPECT_NE(UserMessage(1, 0, 0, 32), UserMessage(1, 1, 0, 32));
  EXPECT_NE(UserMessage(1, 0, 0, 32), UserMessage(1, 0, 1, 32));
  EXPECT_NE(UserMessage(1, 0, 0, 32), ReplyTokens(1, 0, 0, 32));
  for (uint32_t t : SystemPrompt(7, 1000)) EXPECT_LT(t, kVocabulary);
  EXPECT_TRUE(SystemPrompt(1, 0).empty());
}

TEST(ConversationTest, HistoryGrowsByPromptAndReply) {
  auto system = SystemPrompt(1, 10);
  Session s(3, system);
  EXPECT_EQ(s.id(), 3);
  auto user = UserMessage(1, 3, 0, 4);
  auto prompt = s.Prompt(user);
  ASSERT_EQ(prompt.size(), 14u);
  EXPECT_TRUE(std::equal(system.begin(), system.end(), prompt.begin()));
  EXPECT_TRUE(std::equal(user.begin(), user.end(), prompt.begin() + 10));
  auto reply = ReplyTokens(1, 3, 0, 5);
  s.Append(prompt, reply);
  ASSERT_EQ(s.history().size(), 19u);
  EXPECT_TRUE(std::equal(reply.begin(), reply.end(), s.history().begin() + 14));
}

}  // namespace
}  // namespace tokenmem::demo
