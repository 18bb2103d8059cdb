#include "config.h"

#include <sys/un.h>
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <exception>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string_view>

#include "tokenmem/common/log.h"
#include "tokenmem/common/units.h"

namespace tokenmem::device_plugin {
namespace {

namespace fs = std::filesystem;

constexpr size_t kMaxSocketPath = sizeof(sockaddr_un{}.sun_path) - 1;

// One setting: its flag name, help, whether it is a bool (a bare flag means
// true), how its current value prints, and how a text value is applied.
struct Flag {
  std::string_view name;
  std::string_view help;
  bool is_bool = false;
  std::function<std::string(const Config&)> show;
  std::function<Status(std::string_view, Config*)> set;
};

Result<bool> ParseBool(std::string_view text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  return InvalidArgument("expected true or false");
}

std::vector<std::string> SplitList(std::string_view text) {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(start, comma - start);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = comma + 1;
  }
  return out;
}

std::string JoinList(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& item : items) {
    if (!out.empty()) out += ',';
    out += item;
  }
  return out;
}

Flag StringFlag(std::string_view name, std::string_view help, std::string Config::*field) {
  return {name, help, false, [field](const Config& c) { return c.*field; },
          [field](std::string_view v, Config* c) {
            c->*field = std::string(v);
            return Status::Ok();
          }};
}

Flag ListFlag(std::string_view name, std::string_view help,
              std::vector<std::string> Config::*field) {
  return {name, help, false, [field](const Config& c) { return JoinList(c.*field); },
          [field](std::string_view v, Config* c) {
            c->*field = SplitList(v);
            return Status::Ok();
          }};
}

Flag DurationFlag(std::string_view name, std::string_view help,
                  std::chrono::milliseconds Config::*field) {
  return {name, help, false, [field](const Config& c) { return FormatDuration(c.*field); },
          [field](std::string_view v, Config* c) -> Status {
            TM_ASSIGN_OR_RETURN(c->*field, ParseDuration(v));
            return Status::Ok();
          }};
}

Flag BoolFlag(std::string_view name, std::string_view help, bool Config::*field) {
  return {name, help, true,
          [field](const Config& c) { return std::string(c.*field ? "true" : "false"); },
          [field](std::string_view v, Config* c) -> Status {
            TM_ASSIGN_OR_RETURN(c->*field, ParseBool(v));
            return Status::Ok();
          }};
}

const std::vector<Flag>& Flags() {
  static const std::vector<Flag> flags = {
      StringFlag("device-plugin-dir",
                 "the kubelet's device-plugin directory (watched with inotify)",
                 &Config::device_plugin_dir),
      StringFlag("kubelet-socket", "the kubelet's Registration socket, a name in that directory",
                 &Config::kubelet_socket),
      StringFlag("plugin-socket", "this plugin's socket, a name in that directory",
                 &Config::plugin_socket),
      StringFlag("resource-name", "the extended resource registered with the kubelet",
                 &Config::resource_name),
      StringFlag("pod-resources-socket", "the kubelet's PodResources API socket",
                 &Config::pod_resources_socket),
      StringFlag("agent-socket", "the agent's control socket (gRPC)", &Config::agent_socket),
      StringFlag("agent-data-socket",
                 "the agent's data socket, in a directory without the control socket",
                 &Config::agent_data_socket),
      StringFlag("host-socket-dir",
                 "the data socket's directory as the node sees it, mounted into containers; "
                 "empty: the data socket's directory",
                 &Config::host_socket_dir),
      StringFlag("container-socket-dir", "where containers see the data socket's directory",
                 &Config::container_socket_dir),
      {"unit", "lease-able bytes per device (1GiB, 512MiB, ...)", false,
       [](const Config& c) { return FormatByteSize(c.unit_bytes); },
       [](std::string_view v, Config* c) -> Status {
         TM_ASSIGN_OR_RETURN(c->unit_bytes, ParseByteSize(v));
         return Status::Ok();
       }},
      {"capacity-source", "tiers (memory tiers' capacity) or pools (what pools reserve in them)",
       false,
       [](const Config& c) {
         return std::string(c.capacity_source == CapacitySource::kPools ? "pools" : "tiers");
       },
       [](std::string_view v, Config* c) -> Status {
         if (v == "tiers") {
           c->capacity_source = CapacitySource::kTiers;
         } else if (v == "pools") {
           c->capacity_source = CapacitySource::kPools;
         } else {
           return InvalidArgument("expected tiers or pools");
         }
         return Status::Ok();
       }},
      ListFlag("lease-pools",
               "pools a container's lease may use, comma-separated; empty: every pool",
               &Config::lease_pools),
      StringFlag("default-pool", "TOKENMEM_DEFAULT_POOL for containers; empty: not set",
                 &Config::default_pool),
      ListFlag("remote-endpoints",
               "TOKENMEM_REMOTE_ENDPOINTS for containers (host:port,...); empty: not set",
               &Config::remote_endpoints),
      ListFlag("cdi-devices", "CDI device names (vendor.com/class=name) for every container",
               &Config::cdi_devices),
      {"rdma", "verbs (libibverbs' device list), sysfs (scan --sysfs-root) or off", false,
       [](const Config& c) {
         switch (c.rdma) {
           case RdmaMode::kVerbs:
             return std::string("verbs");
           case RdmaMode::kSysfs:
             return std::string("sysfs");
           case RdmaMode::kOff:
             return std::string("off");
         }
         return std::string("?");
       },
       [](std::string_view v, Config* c) -> Status {
         if (v == "verbs") {
           c->rdma = RdmaMode::kVerbs;
         } else if (v == "sysfs") {
           c->rdma = RdmaMode::kSysfs;
         } else if (v == "off") {
           c->rdma = RdmaMode::kOff;
         } else {
           return InvalidArgument("expected verbs, sysfs or off");
         }
         return Status::Ok();
       }},
      StringFlag("dev-root", "where device nodes are found (/dev/infiniband/...)",
                 &Config::dev_root),
      StringFlag("sysfs-root", "sysfs, read by --rdma=sysfs", &Config::sysfs_root),
      DurationFlag("rpc-timeout", "deadline of every gRPC call", &Config::rpc_timeout),
      DurationFlag("agent-poll-interval", "how often the agent's capacity and health are read",
                   &Config::agent_poll_interval),
      BoolFlag("reclaim", "release leases whose devices no container holds", &Config::reclaim),
      DurationFlag("reclaim-interval", "how often PodResources is listed",
                   &Config::reclaim_interval),
      DurationFlag("reclaim-grace",
                   "how long a lease's devices must be unseen before it is released",
                   &Config::reclaim_grace),
      DurationFlag("register-backoff-initial", "first wait after a failed registration",
                   &Config::register_backoff_initial),
      DurationFlag("register-backoff-max", "longest wait between registration attempts",
                   &Config::register_backoff_max),
      DurationFlag("recheck-interval", "how often the socket directory is checked besides inotify",
                   &Config::recheck_interval),
      StringFlag("http-listen", "host:port of /metrics, /healthz, /readyz; empty: no HTTP",
                 &Config::http_listen),
      StringFlag("log-level", "debug, info, warn or error", &Config::log_level),
  };
  return flags;
}

const Flag* FindFlag(std::string_view name) {
  for (const auto& flag : Flags()) {
    if (flag.name == name) return &flag;
  }
  return nullptr;
}

Status ApplyFlag(const Flag& flag, std::string_view value, Config* config) {
  Status s = flag.set(value, config);
  if (!s.ok()) {
    return InvalidArgument("--" + std::string(flag.name) + "=" + std::string(value) + ": " +
                           s.message());
  }
  return Status::Ok();
}

Status CheckPath(std::string_view flag, const std::string& path) {
  if (path.empty() || path.front() != '/') {
    return InvalidArgument("--" + std::string(flag) + " must be an absolute path, not '" + path +
                           "'");
  }
  return Status::Ok();
}

Status CheckSocketPath(std::string_view flag, const std::string& path) {
  TM_RETURN_IF_ERROR(CheckPath(flag, path));
  if (path.size() > kMaxSocketPath) {
    return InvalidArgument("--" + std::string(flag) + " '" + path + "' is longer than " +
                           std::to_string(kMaxSocketPath) +
                           " bytes, the limit of a Unix socket address");
  }
  return Status::Ok();
}

Status CheckFileName(std::string_view flag, const std::string& name) {
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string::npos) {
    return InvalidArgument("--" + std::string(flag) + " must be a plain file name, not '" + name +
                           "'");
  }
  return Status::Ok();
}

Status CheckPositive(std::string_view flag, std::chrono::milliseconds d) {
  if (d.count() <= 0) return InvalidArgument("--" + std::string(flag) + " must be positive");
  return Status::Ok();
}

Status CheckResourceName(const std::string& name) {
  const size_t slash = name.find('/');
  auto bad = [&] {
    return InvalidArgument("--resource-name '" + name +
                           "' must be <domain>/<name>, e.g. tokenmem.io/memory");
  };
  if (slash == std::string::npos || slash == 0 || slash + 1 == name.size() ||
      name.find('/', slash + 1) != std::string::npos) {
    return bad();
  }
  for (char ch : name) {
    const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                    (ch >= '0' && ch <= '9') || ch == '.' || ch == '-' || ch == '_' || ch == '/';
    if (!ok) return bad();
  }
  return Status::Ok();
}

Status CheckListen(const std::string& listen) {
  if (listen.empty()) return Status::Ok();
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) {
    return InvalidArgument("--http-listen '" + listen + "' must be host:port");
  }
  std::string_view port = std::string_view(listen).substr(colon + 1);
  int value = -1;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value < 0 ||
      value > 65535) {
    return InvalidArgument("--http-listen '" + listen + "': the port must be 0..65535");
  }
  return Status::Ok();
}

std::string Join(const std::string& dir, const std::string& name) {
  return (fs::path(dir) / name).string();
}

Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return IoError("cannot read config file '" + path + "'");
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return IoError("cannot read config file '" + path + "'");
  return text.str();
}

}  // namespace

std::string KubeletSocketPath(const Config& config) {
  return Join(config.device_plugin_dir, config.kubelet_socket);
}

std::string PluginSocketPath(const Config& config) {
  return Join(config.device_plugin_dir, config.plugin_socket);
}

std::string AgentDataSocketPath(const Config& config) {
  if (!config.agent_data_socket.empty()) return config.agent_data_socket;
  const fs::path control(config.agent_socket);
  return (control.parent_path() / (control.stem().string() + "-data.sock")).string();
}

std::string HostSocketDir(const Config& config) {
  if (!config.host_socket_dir.empty()) return config.host_socket_dir;
  return fs::path(AgentDataSocketPath(config)).parent_path().string();
}

std::string ContainerDataSocketPath(const Config& config) {
  return Join(config.container_socket_dir,
              fs::path(AgentDataSocketPath(config)).filename().string());
}

Status Validate(const Config& c) {
  TM_RETURN_IF_ERROR(CheckPath("device-plugin-dir", c.device_plugin_dir));
  TM_RETURN_IF_ERROR(CheckFileName("kubelet-socket", c.kubelet_socket));
  TM_RETURN_IF_ERROR(CheckFileName("plugin-socket", c.plugin_socket));
  if (c.kubelet_socket == c.plugin_socket) {
    return InvalidArgument("--plugin-socket must differ from --kubelet-socket");
  }
  TM_RETURN_IF_ERROR(CheckSocketPath("kubelet-socket", KubeletSocketPath(c)));
  TM_RETURN_IF_ERROR(CheckSocketPath("plugin-socket", PluginSocketPath(c)));
  TM_RETURN_IF_ERROR(CheckResourceName(c.resource_name));
  if (c.reclaim)
    TM_RETURN_IF_ERROR(CheckSocketPath("pod-resources-socket", c.pod_resources_socket));
  TM_RETURN_IF_ERROR(CheckSocketPath("agent-socket", c.agent_socket));
  TM_RETURN_IF_ERROR(CheckSocketPath("agent-data-socket", AgentDataSocketPath(c)));
  TM_RETURN_IF_ERROR(CheckPath("host-socket-dir", HostSocketDir(c)));
  TM_RETURN_IF_ERROR(CheckPath("container-socket-dir", c.container_socket_dir));
  // Containers get the data socket's whole directory: were the control
  // socket in it, every pod could reach the admin plane (and a pod running
  // as root would pass the agent's peer-credential check).
  if (fs::path(AgentDataSocketPath(c)).lexically_normal().parent_path() ==
      fs::path(c.agent_socket).lexically_normal().parent_path()) {
    return InvalidArgument(
        "--agent-data-socket " + AgentDataSocketPath(c) +
        " shares its directory with the control socket " + c.agent_socket +
        ": containers get that directory mounted; give the agent a data socket in a directory "
        "of its own (control.data_socket, default /run/tokenmem/data/agent-data.sock)");
  }
  if (c.unit_bytes == 0) return InvalidArgument("--unit must be at least one byte");
  for (const auto& name : c.cdi_devices) {
    const size_t eq = name.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == name.size() ||
        name.find('/') == std::string::npos || name.find('/') > eq) {
      return InvalidArgument("--cdi-devices: '" + name + "' is not vendor.com/class=name");
    }
  }
  if (c.rdma != RdmaMode::kOff) {
    TM_RETURN_IF_ERROR(CheckPath("dev-root", c.dev_root));
    if (c.rdma == RdmaMode::kSysfs) TM_RETURN_IF_ERROR(CheckPath("sysfs-root", c.sysfs_root));
  }
  TM_RETURN_IF_ERROR(CheckPositive("rpc-timeout", c.rpc_timeout));
  TM_RETURN_IF_ERROR(CheckPositive("agent-poll-interval", c.agent_poll_interval));
  TM_RETURN_IF_ERROR(CheckPositive("reclaim-interval", c.reclaim_interval));
  TM_RETURN_IF_ERROR(CheckPositive("reclaim-grace", c.reclaim_grace));
  TM_RETURN_IF_ERROR(CheckPositive("register-backoff-initial", c.register_backoff_initial));
  TM_RETURN_IF_ERROR(CheckPositive("register-backoff-max", c.register_backoff_max));
  TM_RETURN_IF_ERROR(CheckPositive("recheck-interval", c.recheck_interval));
  if (c.register_backoff_max < c.register_backoff_initial) {
    return InvalidArgument("--register-backoff-max must be at least --register-backoff-initial");
  }
  TM_RETURN_IF_ERROR(CheckListen(c.http_listen));
  LogLevel level;
  if (!ParseLogLevel(c.log_level, &level)) {
    return InvalidArgument("--log-level '" + c.log_level +
                           "': expected debug, info, warn or error");
  }
  return Status::Ok();
}

Status ApplyConfigYaml(const std::string& yaml_text, Config* config) {
  // yaml-cpp reports errors by throwing; they stop here.
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (root.IsNull()) return Status::Ok();
    if (!root.IsMap()) return InvalidArgument("config file: expected a map of settings");
    for (auto it = root.begin(); it != root.end(); ++it) {
      const std::string key = it->first.as<std::string>();
      const Flag* flag = FindFlag(key);
      if (flag == nullptr || key == "config") {
        return InvalidArgument("config file: unknown setting '" + key + "'");
      }
      const YAML::Node value = it->second;
      std::string text;
      if (value.IsSequence()) {
        for (const auto& item : value) {
          if (!text.empty()) text += ',';
          text += item.as<std::string>();
        }
      } else if (value.IsScalar()) {
        text = value.as<std::string>();
      } else if (value.IsNull()) {
        text = "";
      } else {
        return InvalidArgument("config file: '" + key + "' must be a value or a list");
      }
      Status s = flag->set(text, config);
      if (!s.ok()) return InvalidArgument("config file: " + key + ": " + s.message());
    }
  } catch (const std::exception& e) {
    return InvalidArgument(std::string("config file: ") + e.what());
  }
  return Status::Ok();
}

Result<CommandLine> ParseCommandLine(int argc, const char* const* argv) {
  CommandLine out;
  // Split into (name, value) pairs first, so --config applies before the rest.
  struct Arg {
    std::string name;
    std::string value;
    bool has_value;
  };
  std::vector<Arg> args;
  for (int i = 1; i < argc; ++i) {
    std::string_view text = argv[i];
    if (text.substr(0, 2) != "--" || text.size() == 2) {
      return InvalidArgument("unexpected argument '" + std::string(text) + "' (see --help)");
    }
    text.remove_prefix(2);
    Arg arg;
    const size_t eq = text.find('=');
    if (eq != std::string_view::npos) {
      arg = {std::string(text.substr(0, eq)), std::string(text.substr(eq + 1)), true};
    } else {
      arg = {std::string(text), "", false};
      const Flag* flag = FindFlag(arg.name);
      const bool takes_value = arg.name == "config" || (flag != nullptr && !flag->is_bool);
      if (takes_value && i + 1 < argc) {
        arg.value = argv[++i];
        arg.has_value = true;
      }
    }
    args.push_back(std::move(arg));
  }
  for (const auto& arg : args) {
    if (arg.name == "help") out.help = true;
    if (arg.name != "config") continue;
    if (!arg.has_value || arg.value.empty()) return InvalidArgument("--config needs a file");
    TM_ASSIGN_OR_RETURN(std::string text, ReadFile(arg.value));
    Status s = ApplyConfigYaml(text, &out.config);
    if (!s.ok()) return s.WithContext(arg.value);
  }
  if (out.help) return out;
  for (const auto& arg : args) {
    if (arg.name == "config") continue;
    const Flag* flag = FindFlag(arg.name);
    if (flag == nullptr) return InvalidArgument("unknown flag --" + arg.name + " (see --help)");
    if (!arg.has_value && !flag->is_bool)
      return InvalidArgument("--" + arg.name + " needs a value");
    TM_RETURN_IF_ERROR(ApplyFlag(*flag, arg.has_value ? arg.value : "true", &out.config));
  }
  TM_RETURN_IF_ERROR(Validate(out.config));
  return out;
}

std::string Usage() {
  std::ostringstream out;
  out << "usage: tokenmem-device-plugin [--config FILE] [--flag=value ...]\n\n"
         "Serves the kubelet device-plugin API v1beta1 for the tokenmem agent on this node.\n"
         "A YAML config file holds the same settings as the flags (without dashes); a flag\n"
         "overrides the file. Bool flags take --flag, --flag=true or --flag=false;\n"
         "lists are comma-separated; durations 250ms, 5s, 2m, 1h.\n\n";
  const Config defaults;
  for (const auto& flag : Flags()) {
    out << "  --" << flag.name << "\n      " << flag.help << " (default: ";
    const std::string value = flag.show(defaults);
    out << (value.empty() ? "\"\"" : value) << ")\n";
  }
  out << "  --config FILE\n      read settings from a YAML file first\n"
         "  --help\n      print this text\n";
  return out.str();
}

Result<std::chrono::milliseconds> ParseDuration(std::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') ++digits;
  if (digits == 0) return InvalidArgument("duration '" + std::string(text) + "': expected e.g. 5s");
  int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + digits, value);
  if (ec != std::errc() || end != text.data() + digits || value > (int64_t{1} << 40)) {
    return InvalidArgument("duration '" + std::string(text) + "' is out of range");
  }
  const std::string_view unit = text.substr(digits);
  int64_t ms_per_unit = 0;
  if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "s") {
    ms_per_unit = 1000;
  } else if (unit == "m") {
    ms_per_unit = 60 * 1000;
  } else if (unit == "h") {
    ms_per_unit = 3600 * 1000;
  } else {
    return InvalidArgument("duration '" + std::string(text) + "': the unit must be ms, s, m or h");
  }
  return std::chrono::milliseconds(value * ms_per_unit);
}

std::string FormatDuration(std::chrono::milliseconds duration) {
  const int64_t ms = duration.count();
  if (ms != 0 && ms % (3600 * 1000) == 0) return std::to_string(ms / (3600 * 1000)) + "h";
  if (ms != 0 && ms % (60 * 1000) == 0) return std::to_string(ms / (60 * 1000)) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

}  // namespace tokenmem::device_plugin
