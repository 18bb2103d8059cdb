// Flags and environment -> AgentConfig.
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/config_loader.h"
#include "config/config_values.h"
#include "tokenmem/common/log.h"

namespace tokenmem::config {
namespace {

using Apply = Status (*)(std::string_view value, AgentConfig* c);

struct Flag {
  std::string_view name;  // without the leading "--"
  std::string_view arg;   // shown in the usage text; empty: the flag takes no value
  std::string_view help;  // one line
  Apply apply;            // null for the flags ParseCommandLine handles itself
};

Status SetSize(std::string_view v, uint64_t* out) {
  TM_ASSIGN_OR_RETURN(*out, ParseSize(v));
  return Status::Ok();
}

// "a,b,,c" -> {"a", "b", "c"}; "" -> {}.
std::vector<std::string> SplitList(std::string_view v) {
  std::vector<std::string> out;
  while (!v.empty()) {
    size_t comma = v.find(',');
    std::string_view item = v.substr(0, comma);
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    v.remove_prefix(comma + 1);
  }
  return out;
}

// "0,1000" -> {0, 1000}; "" -> {}.
Status SetIds(std::string_view v, std::vector<uint32_t>* out) {
  out->clear();
  for (const std::string& item : SplitList(v)) {
    auto id = ParseUint32(item);
    if (!id.ok()) return InvalidArgument("'" + item + "' is not a numeric id");
    out->push_back(*id);
  }
  return Status::Ok();
}

// Every flag, in the order the usage text lists them.
constexpr Flag kFlags[] = {
    {"config", "FILE", "YAML config file, loaded first (default: $TOKENMEM_CONFIG)", nullptr},
    {"node-name", "NAME", "node name (default: the host name)",
     [](std::string_view v, AgentConfig* c) {
       c->node_name = std::string(v);
       return Status::Ok();
     }},
    {"log-level", "LEVEL", "debug, info, warn or error (default: info)",
     [](std::string_view v, AgentConfig* c) {
       c->log_level = std::string(v);
       return Status::Ok();
     }},
    {"sysfs-root", "PATH", "where sysfs is mounted (default: /sys)",
     [](std::string_view v, AgentConfig* c) {
       c->sysfs_root = std::string(v);
       return Status::Ok();
     }},
    {"socket", "PATH", "control socket (default: /run/tokenmem/agent.sock)",
     [](std::string_view v, AgentConfig* c) {
       c->control.socket_path = std::string(v);
       return Status::Ok();
     }},
    {"socket-mode", "OCTAL", "control socket file mode (default: 0600)",
     [](std::string_view v, AgentConfig* c) {
       TM_ASSIGN_OR_RETURN(c->control.socket_mode, ParseOctalMode(v));
       return Status::Ok();
     }},
    {"data-socket", "PATH",
     "data socket, the one pods mount; empty = beside the control socket "
     "(default: /run/tokenmem/data/agent-data.sock)",
     [](std::string_view v, AgentConfig* c) {
       c->control.data_socket = std::string(v);
       return Status::Ok();
     }},
    {"data-socket-mode", "OCTAL", "data socket file mode (default: 0666)",
     [](std::string_view v, AgentConfig* c) {
       TM_ASSIGN_OR_RETURN(c->control.data_socket_mode, ParseOctalMode(v));
       return Status::Ok();
     }},
    {"admin-uids", "UID,...", "uids admitted to the control socket besides 0 (default: none)",
     [](std::string_view v, AgentConfig* c) { return SetIds(v, &c->control.admin_uids); }},
    {"admin-gids", "GID,...", "groups admitted to the control socket (default: none)",
     [](std::string_view v, AgentConfig* c) { return SetIds(v, &c->control.admin_gids); }},
    {"tcp-listen", "HOST:PORT", "serve the control API over TCP too (default: off)",
     [](std::string_view v, AgentConfig* c) {
       c->control.tcp_listen = std::string(v);
       return Status::Ok();
     }},
    {"admin-token-file", "PATH", "file holding the admin token for TCP clients",
     [](std::string_view v, AgentConfig* c) {
       c->control.admin_token_file = std::string(v);
       return Status::Ok();
     }},
    {"tls-cert-file", "PATH", "TCP control: server certificate, PEM (default: none, no TLS)",
     [](std::string_view v, AgentConfig* c) {
       c->control.tls_cert_file = std::string(v);
       return Status::Ok();
     }},
    {"tls-key-file", "PATH", "TCP control: the certificate's private key, PEM",
     [](std::string_view v, AgentConfig* c) {
       c->control.tls_key_file = std::string(v);
       return Status::Ok();
     }},
    {"tls-client-ca-file", "PATH",
     "TCP control: CA that must sign every client's certificate (mTLS) (default: none)",
     [](std::string_view v, AgentConfig* c) {
       c->control.tls_client_ca_file = std::string(v);
       return Status::Ok();
     }},
    {"http-listen", "HOST:PORT",
     "serve /metrics, /healthz, /readyz, /v1/status; empty = off (default: 127.0.0.1:9464)",
     [](std::string_view v, AgentConfig* c) {
       c->http.listen = std::string(v);
       return Status::Ok();
     }},
    {"dram-capacity", "SIZE", "DRAM tier capacity, 0 = off (default: 1GiB)",
     [](std::string_view v, AgentConfig* c) { return SetSize(v, &c->dram.capacity_bytes); }},
    {"cxl-capacity", "SIZE", "CXL tier capacity, 0 = off (default: 0)",
     [](std::string_view v, AgentConfig* c) { return SetSize(v, &c->cxl.capacity_bytes); }},
    {"nvme-dir", "PATH", "NVMe tier directory (default: /var/lib/tokenmem/nvme)",
     [](std::string_view v, AgentConfig* c) {
       c->nvme.directory = std::string(v);
       return Status::Ok();
     }},
    {"nvme-capacity", "SIZE", "NVMe tier capacity, 0 = off (default: 4GiB)",
     [](std::string_view v, AgentConfig* c) { return SetSize(v, &c->nvme.capacity_bytes); }},
    {"remote-listen", "HOST:PORT",
     "UCX data listener for remote clients and peers; port 0 picks one (default: off)",
     [](std::string_view v, AgentConfig* c) {
       c->remote.listen = std::string(v);
       return Status::Ok();
     }},
    {"cluster-peers", "HOST:PORT,...",
     "peer agents' remote listeners, comma-separated; empty = none (default: none)",
     [](std::string_view v, AgentConfig* c) {
       c->cluster.peers = SplitList(v);
       return Status::Ok();
     }},
    {"cluster-dns", "NAME:PORT",
     "DNS name whose A/AAAA records are the peers (a headless Service) (default: off)",
     [](std::string_view v, AgentConfig* c) {
       c->cluster.dns_name = std::string(v);
       return Status::Ok();
     }},
    {"cluster-secret-file", "PATH", "file holding the secret shared by the cluster's agents",
     [](std::string_view v, AgentConfig* c) {
       c->cluster.secret_file = std::string(v);
       return Status::Ok();
     }},
    {"check-config", "", "validate the configuration, print it as YAML and exit", nullptr},
    {"help", "", "print this text and exit (also -h)", nullptr},
    {"version", "", "print the version and exit", nullptr},
};

const Flag* FindFlag(std::string_view name) {
  for (const Flag& f : kFlags) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

}  // namespace

Result<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine out;
  std::optional<std::string> config_file;
  std::vector<std::pair<const Flag*, std::string>> overrides;

  for (int i = 1; i < argc; ++i) {
    if (argv[i] == nullptr) continue;
    std::string_view arg = argv[i];
    if (arg == "-h") arg = "--help";
    if (!arg.starts_with("--") || arg == "--") {
      return InvalidArgument("unexpected argument '" + std::string(arg) +
                             "' (flags start with --; see --help)");
    }
    std::string_view name = arg.substr(2);
    std::optional<std::string> value;
    if (size_t eq = name.find('='); eq != std::string_view::npos) {
      value = std::string(name.substr(eq + 1));
      name = name.substr(0, eq);
    }
    const Flag* flag = FindFlag(name);
    const std::string shown = "--" + std::string(name);
    if (flag == nullptr) return InvalidArgument("unknown flag " + shown + " (see --help)");
    if (flag->arg.empty()) {
      if (value) return InvalidArgument(shown + " takes no value");
      if (name == "help") out.show_help = true;
      if (name == "version") out.show_version = true;
      if (name == "check-config") out.check_only = true;
      continue;
    }
    if (!value) {
      // A following flag is never taken as the value: "--socket --log-level x" is a mistake.
      if (i + 1 >= argc || argv[i + 1] == nullptr ||
          std::string_view(argv[i + 1]).starts_with("--")) {
        return InvalidArgument(shown + " needs a value (" + std::string(flag->arg) + ")");
      }
      value = argv[++i];
    }
    if (name == "config") {
      if (config_file) return InvalidArgument("--config given twice");
      config_file = *value;
      continue;
    }
    overrides.emplace_back(flag, std::move(*value));
  }

  out.config = DefaultConfig();
  if (out.show_help || out.show_version) return out;

  if (!config_file) {
    const char* env = std::getenv(kConfigEnvVar);
    if (env != nullptr && env[0] != '\0') config_file = env;
  }
  if (config_file) {
    if (config_file->empty()) return InvalidArgument("--config: empty file name");
    TM_ASSIGN_OR_RETURN(out.config, LoadConfigFile(*config_file, std::move(out.config)));
  }
  for (auto& [flag, value] : overrides) {
    Status s = flag->apply(value, &out.config);
    if (!s.ok()) return s.WithContext("--" + std::string(flag->name));
  }
  return out;
}

std::string UsageText() {
  std::string out =
      "Usage: tokenmem-agent [flags]\n"
      "\n"
      "Runs the tokenmem node agent. Without flags it starts with the embedded default\n"
      "configuration (DRAM 1GiB, NVMe 4GiB under /var/lib/tokenmem/nvme, pool \"default\").\n"
      "Precedence: flags > config file (--config, else $TOKENMEM_CONFIG) > defaults.\n"
      "SIZE accepts 4096, 64KiB, 1.5GiB, 10GB. Every flag also works as --flag=value.\n"
      "All settings, including the ones without a flag: docs/configuration.md.\n"
      "\n"
      "Flags:\n";
  for (const Flag& f : kFlags) {
    std::string left = "  --" + std::string(f.name);
    if (!f.arg.empty()) left += " " + std::string(f.arg);
    if (left.size() < 30)
      left.resize(30, ' ');
    else
      left += "\n" + std::string(30, ' ');
    out += left + std::string(f.help) + "\n";
  }
  return out;
}

void ApplyEnvironmentDefaults(AgentConfig* config) {
  if (!config->node_name.empty()) return;
  char host[HOST_NAME_MAX + 1] = {};
  if (::gethostname(host, sizeof(host) - 1) != 0) {
    TM_LOG(Warn, "config") << "gethostname failed (" << ErrnoError("gethostname", errno).message()
                           << "); node_name stays empty";
    return;
  }
  config->node_name = host;
}

}  // namespace tokenmem::config
