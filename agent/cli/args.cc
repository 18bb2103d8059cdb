#include "cli/args.h"

#include <charconv>
#include <cmath>

namespace tokenmem::cli {

namespace {

constexpr std::string_view kHelp = "help";

struct GlobalFlag {
  std::string_view name;
  bool takes_value;
};
constexpr GlobalFlag kGlobalFlags[] = {
    {"socket", true},     {"address", true},         {"admin-token-file", true},
    {"token-file", true}, {"tls-ca", true},          {"tls-cert", true},
    {"tls-key", true},    {"tls-server-name", true}, {"timeout", true},
    {"json", false},      {"help", false},
};

const GlobalFlag* FindGlobal(std::string_view name) {
  for (const auto& g : kGlobalFlags) {
    if (g.name == name) return &g;
  }
  return nullptr;
}

const FlagSpec* FindFlag(const CommandSpec& command, std::string_view name) {
  for (const auto& f : command.flags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

const CommandSpec* FindCommand(std::string_view name) {
  for (const auto& c : Commands()) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

// The second words that can follow `first`, e.g. "create, list" after "pool".
std::string Subcommands(std::string_view first) {
  std::string out;
  for (const auto& c : Commands()) {
    if (c.name.size() > first.size() && c.name.starts_with(first) && c.name[first.size()] == ' ') {
      if (!out.empty()) out += ", ";
      out += c.name.substr(first.size() + 1);
    }
  }
  return out;
}

Result<std::chrono::milliseconds> ParseTimeout(std::string_view text) {
  double seconds = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), seconds);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(seconds) ||
      seconds <= 0 || seconds > 86400) {
    return InvalidArgument("--timeout wants seconds between 0 and 86400, got '" +
                           std::string(text) + "'");
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::ceil(seconds * 1000)));
}

Status ApplyGlobal(std::string_view name, const std::string& value, GlobalOptions* g, bool* help) {
  if (name == "socket") {
    g->socket = value;
  } else if (name == "address") {
    g->address = value;
  } else if (name == "admin-token-file" || name == "token-file") {
    g->admin_token_file = value;
  } else if (name == "tls-ca") {
    g->tls_ca = value;
  } else if (name == "tls-cert") {
    g->tls_cert = value;
  } else if (name == "tls-key") {
    g->tls_key = value;
  } else if (name == "tls-server-name") {
    g->tls_server_name = value;
  } else if (name == "timeout") {
    TM_ASSIGN_OR_RETURN(g->timeout, ParseTimeout(value));
  } else if (name == "json") {
    g->json = true;
  } else if (name == "help") {
    *help = true;
  }
  return Status::Ok();
}

}  // namespace

const std::vector<CommandSpec>& Commands() {
  static const std::vector<CommandSpec> kCommands = {
      {"status", "", "Show the agent's version, uptime, tiers, pools and leases.", {}, {}},
      {"pool create",
       "NAME [--block-size SIZE] [--dram SIZE] [--cxl SIZE] [--nvme SIZE] [--eviction lru|none] "
       "[--ttl SECONDS] [--scope local|cluster] [--allowed-namespace NS]...",
       "Create a pool (block size 256KiB unless given; capacities reserve room per tier; "
       "--allowed-namespace: only leases in those namespaces may use it).",
       {"NAME"},
       {{"block-size"},
        {"dram"},
        {"cxl"},
        {"nvme"},
        {"eviction"},
        {"ttl"},
        {"scope"},
        {.name = "allowed-namespace", .repeatable = true}}},
      {"pool list", "", "List pools with their capacity and use per tier.", {}, {}},
      {"pool get", "NAME", "Show one pool.", {"NAME"}, {}},
      {"pool delete", "NAME", "Delete a pool and every block in it.", {"NAME"}, {}},
      {"lease create",
       "--quota SIZE [--pool P]... [--read-only] [--owner TEXT] [--namespace NS]",
       "Create a lease; prints its secret once, and an export line for TOKENMEM_LEASE.",
       {},
       {{.name = "quota", .required = true},
        {.name = "pool", .repeatable = true},
        {.name = "read-only", .takes_value = false},
        {.name = "owner"},
        {.name = "namespace"}}},
      {"lease bind",
       "ID NAMESPACE",
       "Give a lease without a namespace its namespace (once).",
       {"ID", "NAMESPACE"},
       {}},
      {"lease list", "", "List leases (secrets are never shown again).", {}, {}},
      {"lease release",
       "ID",
       "Release a lease; blocks it stored stay cached, no longer charged to it.",
       {"ID"},
       {}},
      {"put",
       "--pool P --key HEX32 --file PATH|- [--lease ID:SECRET]",
       "Store a file (or stdin) as one block.",
       {},
       {{.name = "pool", .required = true},
        {.name = "key", .required = true},
        {.name = "file", .required = true},
        {.name = "lease"}}},
      {"get",
       "--pool P --key HEX32 --file PATH|- [--lease ID:SECRET]",
       "Read one block into a file (or stdout); a miss exits 3 and writes nothing.",
       {},
       {{.name = "pool", .required = true},
        {.name = "key", .required = true},
        {.name = "file", .required = true},
        {.name = "lease"}}},
      {"exists",
       "--pool P --key HEX32 [--key HEX32]... [--lease ID:SECRET]",
       "Tell which keys a pool holds; exits 3 when any is absent.",
       {},
       {{.name = "pool", .required = true},
        {.name = "key", .repeatable = true, .required = true},
        {.name = "lease"}}},
      {"stats",
       "[--pool P]",
       "Show counters per pool and tier: hits, movement, evictions.",
       {},
       {{.name = "pool"}}},
      {"help", "", "Show this text.", {}, {}},
  };
  return kCommands;
}

bool Invocation::Has(std::string_view flag) const { return flags.find(flag) != flags.end(); }

std::optional<std::string> Invocation::Get(std::string_view flag) const {
  auto it = flags.find(flag);
  if (it == flags.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> Invocation::GetAll(std::string_view flag) const {
  auto it = flags.find(flag);
  return it == flags.end() ? std::vector<std::string>{} : it->second;
}

Result<Invocation> ParseArgs(const std::vector<std::string>& args) {
  Invocation inv;
  bool help = false;
  bool options_done = false;
  std::string pending;  // command words read so far, before the command is known

  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (!options_done && arg == "--") {
      options_done = true;
      continue;
    }
    if (!options_done && (arg == "-h")) {
      help = true;
      continue;
    }
    if (!options_done && arg.size() > 2 && arg.starts_with("--")) {
      std::string name = arg.substr(2);
      std::optional<std::string> inline_value;
      if (size_t eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name.resize(eq);
      }
      const GlobalFlag* global = FindGlobal(name);
      const FlagSpec* flag = inv.command ? FindFlag(*inv.command, name) : nullptr;
      if (global == nullptr && flag == nullptr) {
        if (inv.command == nullptr) return InvalidArgument("unknown option '--" + name + "'");
        return InvalidArgument("unknown option '--" + name + "' for '" +
                               std::string(inv.command->name) + "'");
      }
      bool takes_value = global ? global->takes_value : flag->takes_value;
      std::string value;
      if (!takes_value) {
        if (inline_value) return InvalidArgument("option '--" + name + "' takes no value");
      } else if (inline_value) {
        value = *inline_value;
      } else if (i + 1 < args.size() && !args[i + 1].starts_with("--")) {
        value = args[++i];
      } else {
        return InvalidArgument("option '--" + name + "' needs a value");
      }
      if (global) {
        TM_RETURN_IF_ERROR(ApplyGlobal(name, value, &inv.global, &help));
        continue;
      }
      auto& values = inv.flags[name];
      if (!values.empty() && !flag->repeatable) {
        return InvalidArgument("option '--" + name + "' given more than once");
      }
      values.push_back(std::move(value));
      continue;
    }
    if (!options_done && arg.size() > 1 && arg[0] == '-') {
      return InvalidArgument("unknown option '" + arg + "'");
    }
    if (inv.command != nullptr) {
      inv.positionals.push_back(arg);
      continue;
    }
    pending = pending.empty() ? arg : pending + " " + arg;
    inv.command = FindCommand(pending);
    if (inv.command == nullptr && Subcommands(pending).empty()) {
      if (help) break;  // "--help anything" still shows help
      return InvalidArgument("unknown command '" + pending + "'");
    }
  }

  if (help) {
    inv.command = FindCommand(kHelp);
    inv.positionals.clear();
    inv.flags.clear();
    return inv;
  }
  if (inv.command == nullptr) {
    if (pending.empty()) return InvalidArgument("no command given");
    return InvalidArgument("'" + pending + "' needs one of: " + Subcommands(pending));
  }
  const CommandSpec& cmd = *inv.command;
  if (inv.positionals.size() < cmd.positionals.size()) {
    return InvalidArgument("'" + std::string(cmd.name) + "' needs " +
                           std::string(cmd.positionals[inv.positionals.size()]));
  }
  if (inv.positionals.size() > cmd.positionals.size()) {
    return InvalidArgument("unexpected argument '" + inv.positionals[cmd.positionals.size()] +
                           "' for '" + std::string(cmd.name) + "'");
  }
  for (const auto& f : cmd.flags) {
    if (f.required && !inv.Has(f.name)) {
      return InvalidArgument("'" + std::string(cmd.name) + "' needs --" + std::string(f.name));
    }
  }
  if (!inv.global.socket.empty() && !inv.global.address.empty()) {
    return InvalidArgument("give --socket or --address, not both");
  }
  const GlobalOptions& g = inv.global;
  const bool tls =
      !g.tls_ca.empty() || !g.tls_cert.empty() || !g.tls_key.empty() || !g.tls_server_name.empty();
  if (tls && g.address.empty()) {
    return InvalidArgument("--tls-* options apply to --address (TCP) only");
  }
  if (g.tls_cert.empty() != g.tls_key.empty()) {
    return InvalidArgument("give --tls-cert and --tls-key together");
  }
  if (tls && g.tls_ca.empty()) {
    return InvalidArgument("TLS needs --tls-ca, the CA that signed the agent's certificate");
  }
  return inv;
}

std::string UsageText() {
  std::string out =
      "Usage: tokenmemctl [--socket PATH | --address HOST:PORT --token-file FILE\n"
      "                    [--tls-ca FILE [--tls-cert FILE --tls-key FILE]]]\n"
      "                   [--json] [--timeout SECONDS] COMMAND [ARGS]\n"
      "\n"
      "Commands:\n";
  for (const auto& c : Commands()) {
    out += "  ";
    out += c.name;
    if (!c.synopsis.empty()) {
      out += ' ';
      out += c.synopsis;
    }
    out += "\n      ";
    out += c.summary;
    out += '\n';
  }
  out +=
      "\n"
      "Options:\n"
      "  --socket PATH            the agent's Unix socket (default: $TOKENMEM_CONTROL_SOCKET,\n"
      "                           else /run/tokenmem/agent.sock)\n"
      "  --address HOST:PORT      reach the agent over TCP instead\n"
      "  --token-file FILE        admin token sent with every call (needed over TCP);\n"
      "                           also spelled --admin-token-file\n"
      "  --tls-ca FILE            TCP over TLS: the CA that signed the agent's certificate\n"
      "  --tls-cert FILE          client certificate for an agent that requires mTLS\n"
      "  --tls-key FILE           the client certificate's private key\n"
      "  --tls-server-name NAME   name to check the agent's certificate against\n"
      "                           (default: the host of --address)\n"
      "  --json                   print one JSON object instead of tables\n"
      "  --timeout SECONDS        deadline of each call to the agent (default 10)\n"
      "  --lease ID:SECRET        data commands; default: $TOKENMEM_LEASE\n"
      "\n"
      "Sizes: 4096, 64KiB, 1.5GiB, 10GB. Keys: 32 hexadecimal digits.\n"
      "Exit status: 0 success, 1 error, 2 usage error, 3 block or key not found.\n";
  return out;
}

}  // namespace tokenmem::cli
