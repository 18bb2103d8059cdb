// tokenmem-demo's command line. Pure functions; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::demo {

struct DemoOptions {
  // Where the agent is (see wire/channel.h).
  std::string socket;  // empty: $TOKENMEM_CONTROL_SOCKET or /run/tokenmem/agent.sock
  std::string address;
  std::string admin_token_file;
  std::chrono::milliseconds timeout{10'000};  // per call

  // The pool, created with this geometry when absent, reused as it is when present.
  std::string pool = "demo";
  uint64_t block_size = 64 * 1024;
  uint64_t dram = 8ull << 20;
  uint64_t cxl = 0;
  uint64_t nvme = 256ull << 20;

  // The workload.
  uint32_t sessions = 6;
  uint32_t turns = 6;
  uint32_t system_prompt_tokens = 1024;
  uint32_t user_tokens = 96;
  uint32_t reply_tokens = 160;
  uint32_t block_tokens = 16;
  uint64_t kv_bytes_per_block = 0;  // 0: the pool's block size
  uint64_t seed = 1;
  std::string model_namespace = "demo-model/rev1/fp16";

  // The lease: given ("ID:SECRET", else $TOKENMEM_LEASE) or created with
  // `quota` and released at the end unless keep_lease.
  std::string lease;
  uint64_t quota = 1ull << 30;
  bool keep_lease = false;

  bool json = false;
  bool help = false;
};

// kInvalidArgument naming the option at fault: unknown option, missing or
// malformed value, a count out of range (sessions, turns, block tokens >= 1).
Result<DemoOptions> ParseDemoOptions(const std::vector<std::string>& args);

std::string DemoUsageText();

}  // namespace tokenmem::demo
