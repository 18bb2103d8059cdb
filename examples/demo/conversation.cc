#include "demo/conversation.h"

#include "demo/prng.h"

namespace tokenmem::demo {

namespace {

enum class Stream : uint64_t { kSystem = 1, kUser = 2, kReply = 3 };

std::vector<uint32_t> Tokens(uint64_t seed, Stream stream, int session, int turn, size_t n) {
  // Mix the coordinates into one seed; SplitMix64's first outputs decorrelate
  // nearby seeds.
  SplitMix64 mixer(seed ^ (static_cast<uint64_t>(stream) << 56) ^
                   (static_cast<uint64_t>(static_cast<uint32_t>(session)) << 24) ^
                   static_cast<uint64_t>(static_cast<uint32_t>(turn)));
  SplitMix64 rng(mixer.Next());
  std::vector<uint32_t> out(n);
  for (auto& t : out) t = rng.Below(kVocabulary);
  return out;
}

}  // namespace

std::vector<uint32_t> SystemPrompt(uint64_t seed, size_t tokens) {
  return Tokens(seed, Stream::kSystem, 0, 0, tokens);
}

std::vector<uint32_t> UserMessage(uint64_t seed, int session, int turn, size_t tokens) {
  return Tokens(seed, Stream::kUser, session, turn, tokens);
}

std::vector<uint32_t> ReplyTokens(uint64_t seed, int session, int turn, size_t tokens) {
  return Tokens(seed, Stream::kReply, session, turn, tokens);
}

std::vector<uint32_t> Session::Prompt(const std::vector<uint32_t>& user) const {
  std::vector<uint32_t> prompt;
  prompt.reserve(history_.size() + user.size());
  prompt = history_;
  prompt.insert(prompt.end(), user.begin(), user.end());
  return prompt;
}

void Session::Append(const std::vector<uint32_t>& prompt, const std::vector<uint32_t>& reply) {
  history_ = prompt;
  history_.insert(history_.end(), reply.begin(), reply.end());
}

}  // namespace tokenmem::demo
