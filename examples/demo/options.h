// tokenmem-demo's command line. Pure functions; thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/common/status.h"
#include "tokenmem/token_keys.h"

namespace tokenmem::demo {

// Which path carries the KV blocks (pools, leases and statistics always go
// over the control API).
enum class DataPath {
  kLocal,    // the SDK: the agent's data socket and shared memory
  kControl,  // gRPC LookupPrefix/Get/Put on the control API
};

struct DemoOptions {
  // Where the agent is (see wire/channel.h).
  std::string socket;  // empty: $TOKENMEM_CONTROL_SOCKET or /run/tokenmem/agent.sock
  std::string address;
  std::string admin_token_file;
  std::chrono::milliseconds timeout{10'000};  // per call

  DataPath path = DataPath::kLocal;
  std::string data_socket;  // empty: DataSocketBeside(the control socket)

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

  // The token keys' namespace (tokenmem/token_keys.h); block_tokens is the
  // workload's.
  std::string model = "demo-model";
  std::string revision = "rev1";
  std::string kv_dtype = "fp16";
  std::string kv_layout = "nhd";

  // The lease: given ("ID:SECRET", else $TOKENMEM_LEASE) or created with
  // `quota` and released at the end unless keep_lease.
  std::string lease;
  uint64_t quota = 1ull << 30;
  bool keep_lease = false;

  bool json = false;
  bool help = false;
};

// kInvalidArgument naming the option at fault: unknown option, missing or
// malformed value, a count out of range (sessions, turns, block tokens >= 1),
// a path other than local or control, a key namespace that
// KeyNamespace::Validate refuses (an empty --model, ...).
Result<DemoOptions> ParseDemoOptions(const std::vector<std::string>& args);

// The namespace the demo's token keys are chained from.
KeyNamespace KeyNamespaceOf(const DemoOptions& options);

// Where the agent puts its data socket for the control socket
// `control_socket`: the same directory, "<stem>-data.sock"
// (/run/tokenmem/agent.sock -> /run/tokenmem/agent-data.sock).
std::string DataSocketBeside(const std::string& control_socket);

// The agent's default control.data_socket.
inline constexpr char kDefaultDataSocket[] = "/run/tokenmem/data/agent-data.sock";

// "local" or "control".
std::string_view DataPathName(DataPath path);

std::string DemoUsageText();

}  // namespace tokenmem::demo
