#include "demo/options.h"

#include <charconv>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <string_view>

#include "tokenmem/common/units.h"

namespace tokenmem::demo {

namespace {

Status ParseCount(std::string_view name, const std::string& text, uint64_t min, uint64_t max,
                  uint64_t* out) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < min || v > max) {
    return InvalidArgument("--" + std::string(name) + " wants a whole number from " +
                           std::to_string(min) + " to " + std::to_string(max) + ", got '" + text +
                           "'");
  }
  *out = v;
  return Status::Ok();
}

Status ParseSeconds(const std::string& text, std::chrono::milliseconds* out) {
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(seconds) ||
      seconds <= 0 || seconds > 86400) {
    return InvalidArgument("--timeout wants seconds between 0 and 86400, got '" + text + "'");
  }
  *out = std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000)));
  return Status::Ok();
}

struct TextOption {
  std::string_view name;
  std::string DemoOptions::*field;
};
constexpr TextOption kTextOptions[] = {
    {"socket", &DemoOptions::socket},
    {"address", &DemoOptions::address},
    {"admin-token-file", &DemoOptions::admin_token_file},
    {"data-socket", &DemoOptions::data_socket},
    {"pool", &DemoOptions::pool},
    {"model", &DemoOptions::model},
    {"revision", &DemoOptions::revision},
    {"kv-dtype", &DemoOptions::kv_dtype},
    {"kv-layout", &DemoOptions::kv_layout},
    {"lease", &DemoOptions::lease},
};

struct SizeOption {
  std::string_view name;
  uint64_t DemoOptions::*field;
};
constexpr SizeOption kSizeOptions[] = {
    {"block-size", &DemoOptions::block_size},
    {"dram", &DemoOptions::dram},
    {"cxl", &DemoOptions::cxl},
    {"nvme", &DemoOptions::nvme},
    {"kv-bytes-per-block", &DemoOptions::kv_bytes_per_block},
    {"quota", &DemoOptions::quota},
};

struct CountOption {
  std::string_view name;
  uint32_t DemoOptions::*field;
  uint32_t min;
};
constexpr CountOption kCountOptions[] = {
    {"sessions", &DemoOptions::sessions, 1},
    {"turns", &DemoOptions::turns, 1},
    {"system-prompt-tokens", &DemoOptions::system_prompt_tokens, 0},
    {"user-tokens", &DemoOptions::user_tokens, 0},
    {"reply-tokens", &DemoOptions::reply_tokens, 0},
    {"block-tokens", &DemoOptions::block_tokens, 1},
};

Status Apply(DemoOptions* o, std::string_view name, const std::string& v) {
  for (const auto& opt : kTextOptions) {
    if (opt.name == name) {
      o->*opt.field = v;
      return Status::Ok();
    }
  }
  for (const auto& opt : kSizeOptions) {
    if (opt.name == name) {
      auto size = ParseByteSize(v);
      if (!size.ok()) return size.status().WithContext("--" + std::string(name));
      o->*opt.field = *size;
      return Status::Ok();
    }
  }
  for (const auto& opt : kCountOptions) {
    if (opt.name == name) {
      uint64_t n = 0;
      TM_RETURN_IF_ERROR(ParseCount(name, v, opt.min, 1u << 24, &n));
      o->*opt.field = static_cast<uint32_t>(n);
      return Status::Ok();
    }
  }
  if (name == "path") {
    if (v == "local" || v == "control") {
      o->path = v == "local" ? DataPath::kLocal : DataPath::kControl;
      return Status::Ok();
    }
    return InvalidArgument("--path wants local or control, got '" + v + "'");
  }
  if (name == "seed") return ParseCount(name, v, 0, UINT64_MAX, &o->seed);
  if (name == "timeout") return ParseSeconds(v, &o->timeout);
  return InvalidArgument("unknown option '--" + std::string(name) + "'");
}

}  // namespace

Result<DemoOptions> ParseDemoOptions(const std::vector<std::string>& args) {
  DemoOptions o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "-h" || arg == "--help" || arg == "help") {
      o.help = true;
      continue;
    }
    if (!arg.starts_with("--") || arg.size() == 2) {
      return InvalidArgument("unexpected argument '" + std::string(arg) + "'");
    }
    std::string name(arg.substr(2));
    if (name == "json" || name == "keep-lease") {
      (name == "json" ? o.json : o.keep_lease) = true;
      continue;
    }
    std::string value;
    if (size_t eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name.resize(eq);
    } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
      value = args[++i];
    } else {
      return InvalidArgument("option '--" + name + "' needs a value");
    }
    TM_RETURN_IF_ERROR(Apply(&o, name, value));
  }
  if (!o.socket.empty() && !o.address.empty()) {
    return InvalidArgument("give --socket or --address, not both");
  }
  if (o.quota == 0) return InvalidArgument("--quota must be more than 0 bytes");
  if (Status s = KeyNamespaceOf(o).Validate(); !s.ok()) {
    return s.WithContext(
        "the token keys' namespace (--model, --revision, --kv-dtype, --kv-layout)");
  }
  return o;
}

KeyNamespace KeyNamespaceOf(const DemoOptions& options) {
  KeyNamespace ns;
  ns.model = options.model;
  ns.revision = options.revision;
  ns.kv_dtype = options.kv_dtype;
  ns.kv_layout = options.kv_layout;
  ns.block_tokens = options.block_tokens;
  return ns;
}

std::string DataSocketBeside(const std::string& control_socket) {
  std::filesystem::path control(control_socket);
  return (control.parent_path() / (control.stem().string() + "-data.sock")).string();
}

std::string_view DataPathName(DataPath path) {
  return path == DataPath::kLocal ? "local" : "control";
}

std::string DemoUsageText() {
  return "Usage: tokenmem-demo [OPTIONS]\n"
         "\n"
         "Plays several chat sessions that share a system prompt and grow multi-turn\n"
         "histories, storing and reusing their KV blocks in a tokenmem pool, verifying\n"
         "every byte read back, and reports reuse, tier hits and movement.\n"
         "\n"
         "Agent:\n"
         "  --socket PATH              (default $TOKENMEM_CONTROL_SOCKET, else "
         "/run/tokenmem/agent.sock)\n"
         "  --address HOST:PORT --admin-token-file FILE   reach the agent over TCP\n"
         "  --timeout SECONDS          deadline per call (10)\n"
         "Data path (pools, leases and statistics always use the control API):\n"
         "  --path local|control       local (default): the SDK, over the agent's data socket\n"
         "                             and shared memory; control: gRPC Get/Put/LookupPrefix\n"
         "  --data-socket PATH         the agent's data socket (default: "
         "/run/tokenmem/data/agent-data.sock;\n"
         "                             with --socket, beside it: ctl.sock -> ctl-data.sock)\n"
         "Pool (created when absent, reused as it is otherwise):\n"
         "  --pool NAME (demo)  --block-size SIZE (64KiB)  --dram SIZE (8MiB)\n"
         "  --cxl SIZE (0)  --nvme SIZE (256MiB)\n"
         "Workload:\n"
         "  --sessions N (6)  --turns N (6)  --system-prompt-tokens N (1024)\n"
         "  --user-tokens N (96)  --reply-tokens N (160)  --block-tokens N (16)\n"
         "  --kv-bytes-per-block SIZE (the pool's block size)  --seed N (1)\n"
         "Token keys (the SDK's, docs/token-keys.md):\n"
         "  --model TEXT (demo-model)  --revision TEXT (rev1)  --kv-dtype TEXT (fp16)\n"
         "  --kv-layout TEXT (nhd); the namespace's block tokens are --block-tokens\n"
         "Lease:\n"
         "  --lease ID:SECRET (default $TOKENMEM_LEASE; else one is created)\n"
         "  --quota SIZE (1GiB)  --keep-lease (do not release the created lease)\n"
         "Output:\n"
         "  --json                     one JSON object on stdout; progress goes to stderr\n"
         "\n"
         "Exit status: 0 success, 1 error or a block that failed verification, 2 usage.\n";
}

}  // namespace tokenmem::demo
