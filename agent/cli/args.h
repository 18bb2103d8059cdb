// Command-line parsing for tokenmemctl: the command table, global options,
// per-command flags. Knows nothing of gRPC. Pure functions; thread-safe.
//
// Grammar: tokenmemctl [GLOBAL...] WORD [WORD] [ARG...] [--flag VALUE...]
// Global options may appear anywhere; "--name=value" and "--name value" are
// both accepted; "--" ends option parsing.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::cli {

struct FlagSpec {
  std::string_view name;  // without the leading "--"
  bool takes_value = true;
  bool repeatable = false;
  bool required = false;
};

struct CommandSpec {
  std::string_view name;                      // one or two words, e.g. "status", "pool create"
  std::string_view synopsis;                  // what follows the name in the usage text
  std::string_view summary;                   // one line
  std::vector<std::string_view> positionals;  // names of the required arguments, in order
  std::vector<FlagSpec> flags;
};

// Every command, in the order the usage text lists them.
const std::vector<CommandSpec>& Commands();

struct GlobalOptions {
  std::string socket;            // --socket; empty: $TOKENMEM_CONTROL_SOCKET or the default
  std::string address;           // --address HOST:PORT
  std::string admin_token_file;  // --admin-token-file (or --token-file)
  std::string tls_ca;            // --tls-ca: CA that signed the agent's certificate (TLS on)
  std::string tls_cert;          // --tls-cert: client certificate, for mTLS
  std::string tls_key;           // --tls-key: its private key
  std::string tls_server_name;   // --tls-server-name: name to verify instead of the host
  bool json = false;             // --json
  std::chrono::milliseconds timeout{10'000};  // --timeout SECONDS, per call
};

struct Invocation {
  GlobalOptions global;
  const CommandSpec* command = nullptr;  // never null after a successful parse
  std::vector<std::string> positionals;
  // Flag name -> values in the order given; "" for flags without a value.
  std::map<std::string, std::vector<std::string>, std::less<>> flags;

  bool Has(std::string_view flag) const;
  // The value of a flag that takes one, or nullopt when absent.
  std::optional<std::string> Get(std::string_view flag) const;
  // Every value of a repeatable flag (empty when absent).
  std::vector<std::string> GetAll(std::string_view flag) const;
};

// Parses the arguments after the program name. "-h" and "--help" select the
// help command. Errors are kInvalidArgument with a message for the user
// (unknown command or flag, missing value or argument, bad --timeout,
// --socket together with --address, TLS flags without --address, --tls-cert
// without --tls-key or the other way round, either without --tls-ca).
Result<Invocation> ParseArgs(const std::vector<std::string>& args);

// The full usage text, ending with a newline.
std::string UsageText();

}  // namespace tokenmem::cli
