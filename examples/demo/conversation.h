// The demo's chat sessions: token streams that are pure functions of a seed.
//
// Every session starts with the same system prompt; turn t of session s adds
// a user message and then a reply, each a deterministic pseudo-random token
// sequence drawn from (seed, s, t). A prompt is the session's history plus
// the new user message, exactly what an engine would prefill.
// Not thread-safe (one Session per user).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace tokenmem::demo {

inline constexpr uint32_t kVocabulary = 32000;

std::vector<uint32_t> SystemPrompt(uint64_t seed, size_t tokens);
std::vector<uint32_t> UserMessage(uint64_t seed, int session, int turn, size_t tokens);
std::vector<uint32_t> ReplyTokens(uint64_t seed, int session, int turn, size_t tokens);

class Session {
 public:
  Session(int id, std::vector<uint32_t> system_prompt)
      : id_(id), history_(std::move(system_prompt)) {}

  int id() const { return id_; }
  const std::vector<uint32_t>& history() const { return history_; }

  // The history followed by `user`: the prompt of the next turn.
  std::vector<uint32_t> Prompt(const std::vector<uint32_t>& user) const;

  // Ends a turn: the history becomes prompt + reply.
  void Append(const std::vector<uint32_t>& prompt, const std::vector<uint32_t>& reply);

 private:
  int id_;
  std::vector<uint32_t> history_;
};

}  // namespace tokenmem::demo
