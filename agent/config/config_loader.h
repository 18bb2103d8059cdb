// Where an AgentConfig comes from: a YAML file, command-line flags and the
// environment; and how it is written back out as YAML.
//
// Precedence, highest first: flags, then the config file (named by --config,
// else by the TOKENMEM_CONFIG environment variable), then DefaultConfig().
// No function here throws; yaml-cpp's exceptions are turned into Status.
// All functions are safe to call from any thread except ApplyEnvironmentDefaults
// and ParseCommandLine, which read the process environment (getenv).
// The schema is documented in docs/configuration.md.
#pragma once

#include <filesystem>
#include <string>
#include <string_view>

#include "config/agent_config.h"
#include "tokenmem/common/status.h"

namespace tokenmem::config {

// The environment variable naming the config file when --config is absent.
inline constexpr const char* kConfigEnvVar = "TOKENMEM_CONFIG";

// Overlays the YAML document onto `base` (normally DefaultConfig()): keys present in the document
// replace the matching fields, absent keys keep `base`'s values, and a `pools:` list replaces
// base's pools as a whole. An empty document returns `base` unchanged.
// Errors are kInvalidArgument with a message "<source_name>:<line>: <yaml path>: <problem>":
// syntax errors, unknown keys ("tiers.dram.capcity: unknown key (known: capacity,
// numa_nodes)"), duplicate keys, wrong types and bad values (sizes, numbers, octal modes,
// eviction policies). Does not call Validate.
Result<AgentConfig> LoadConfigYaml(std::string_view yaml_text, AgentConfig base,
                                   std::string_view source_name);

// Reads `path` and calls LoadConfigYaml with the path as source name. kIoError (with the path)
// when the file cannot be read; kInvalidArgument as above.
Result<AgentConfig> LoadConfigFile(const std::filesystem::path& path, AgentConfig base);

struct CommandLine {
  AgentConfig config;
  bool show_help = false;     // --help or -h: print UsageText() and exit
  bool show_version = false;  // --version
  bool check_only = false;    // --check-config: validate, print ToYaml, exit
};

// Flags: --config FILE (loaded first, whatever its position), then these override it:
// --socket PATH, --socket-mode OCTAL, --data-socket PATH, --data-socket-mode OCTAL,
// --admin-uids UID,..., --admin-gids GID,..., --tcp-listen HOST:PORT, --admin-token-file PATH,
// --tls-cert-file PATH, --tls-key-file PATH, --tls-client-ca-file PATH,
// --http-listen HOST:PORT, --sysfs-root PATH, --dram-capacity SIZE, --cxl-capacity SIZE,
// --nvme-dir PATH, --nvme-capacity SIZE, --remote-listen HOST:PORT, --cluster-peers
// HOST:PORT,... (comma-separated, replaces cluster.peers; empty items are skipped),
// --cluster-dns NAME:PORT, --cluster-secret-file PATH, --node-name NAME, --log-level LEVEL,
// --check-config,
// --help (-h), --version. Both "--flag value" and "--flag=value" work; "--flag=" gives an empty
// value (so --tcp-listen= turns TCP off, --http-listen= the HTTP server). A flag given twice:
// the last one wins (--config twice is an error). Without --config, the file named by
// $TOKENMEM_CONFIG (when set and non-empty) is loaded. With --help or --version no file is
// loaded and the config is DefaultConfig().
// Errors (kInvalidArgument, naming the flag): unknown flags, missing values, values given to
// flags that take none, positional arguments, bad values; errors from loading the file as
// LoadConfigFile. Does NOT call Validate (the caller does, after ApplyEnvironmentDefaults).
// argv[0] is the program name and is skipped.
Result<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// The --help text: every flag with its default, and the precedence rule.
std::string UsageText();

// Fills what the environment knows: node_name from gethostname() when empty (left empty, with
// a warning logged, if that fails).
void ApplyEnvironmentDefaults(AgentConfig* config);

// The configuration as YAML in the loader's schema (what `tokenmem-agent --check-config`
// prints), every key present; LoadConfigYaml(ToYaml(c), any base, ...) gives back a config equal
// to c.
std::string ToYaml(const AgentConfig& config);

}  // namespace tokenmem::config
