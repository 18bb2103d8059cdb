// The device plugin's configuration: one struct with a default for every
// field, read from an optional YAML file and then from command-line flags
// (a flag beats the file, the file beats the default), then validated.
//
// Every path the plugin touches is a field here, so tests (and unusual
// nodes) can point each one somewhere else. Pure data and pure functions;
// thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::device_plugin {

// Where GetStatus's capacity figure for devices comes from.
enum class CapacitySource {
  kTiers,  // the memory tiers' capacity (DRAM + CXL), whoever uses it
  kPools,  // the part of the memory tiers that pools reserve
};

// How RDMA device nodes are found.
enum class RdmaMode {
  kVerbs,  // libibverbs' device list (rdma-core), the node's real devices
  kSysfs,  // <sysfs_root>/class/infiniband_verbs/uverbs*, for fixtures and odd nodes
  kOff,    // never hand RDMA devices to containers
};

struct Config {
  // ---- kubelet ----
  // The kubelet's device-plugin directory: kubelet.sock and the plugin's
  // own socket live here, and are watched with inotify.
  std::string device_plugin_dir = "/var/lib/kubelet/device-plugins";
  std::string kubelet_socket = "kubelet.sock";  // a file name inside device_plugin_dir
  std::string plugin_socket = "tokenmem.sock";  // a file name inside device_plugin_dir
  std::string resource_name = "tokenmem.io/memory";
  // The kubelet's PodResources API, for lease reclaim.
  std::string pod_resources_socket = "/var/lib/kubelet/pod-resources/kubelet.sock";

  // ---- agent ----
  // The agent's control socket as this process sees it (gRPC). Only the
  // plugin uses it: containers never get it (docs/security-admin-plane.md).
  std::string agent_socket = "/run/tokenmem/agent.sock";
  // The agent's data socket as this process sees it (the agent's
  // control.data_socket); its directory must not hold the control socket.
  // Empty: beside the control socket, "<stem>-data.sock", which Validate
  // refuses for that reason.
  std::string agent_data_socket = "/run/tokenmem/data/agent-data.sock";
  // The data socket's directory as the node (host) sees it: the source of
  // the read-only mount handed to containers. Empty: the directory of
  // agent_data_socket (right when this process sees the host path, as the
  // DaemonSet mounts it).
  std::string host_socket_dir;
  // Where containers see that directory.
  std::string container_socket_dir = "/run/tokenmem";

  // ---- devices ----
  uint64_t unit_bytes = uint64_t{1} << 30;  // one device = this many lease-able bytes
  CapacitySource capacity_source = CapacitySource::kTiers;

  // ---- what a container is given ----
  std::vector<std::string> lease_pools;       // pools a lease may use; empty: every pool
  std::string default_pool;                   // TOKENMEM_DEFAULT_POOL; empty: not set
  std::vector<std::string> remote_endpoints;  // TOKENMEM_REMOTE_ENDPOINTS; empty: not set
  std::vector<std::string> cdi_devices;       // fully qualified CDI names for every container
  RdmaMode rdma = RdmaMode::kVerbs;
  std::string dev_root = "/dev";    // where device nodes are looked up on the host
  std::string sysfs_root = "/sys";  // read by RdmaMode::kSysfs

  // ---- timing ----
  std::chrono::milliseconds rpc_timeout{5000};          // every gRPC call's deadline
  std::chrono::milliseconds agent_poll_interval{5000};  // GetStatus for capacity and health
  std::chrono::milliseconds reclaim_interval{10000};    // PodResources List
  std::chrono::milliseconds reclaim_grace{60000};       // devices unseen this long: lease released
  bool reclaim = true;
  std::chrono::milliseconds register_backoff_initial{500};
  std::chrono::milliseconds register_backoff_max{30000};
  // How often the socket directory is checked even without inotify events.
  std::chrono::milliseconds recheck_interval{1000};

  // ---- observability ----
  std::string http_listen = "0.0.0.0:9466";  // /metrics, /healthz, /readyz; empty: off
  std::string log_level = "info";
};

// Derived paths.
std::string KubeletSocketPath(const Config& config);
std::string PluginSocketPath(const Config& config);
std::string AgentDataSocketPath(const Config& config);
std::string HostSocketDir(const Config& config);
// The data socket as a container sees it, under container_socket_dir.
std::string ContainerDataSocketPath(const Config& config);

// Checks every field: non-empty absolute paths, socket paths short enough
// for a Unix socket address, a data socket whose directory (the one mounted
// into containers) does not hold the control socket, plain file names for the two sockets in the
// device-plugin directory, a resource name "domain/name", unit_bytes > 0,
// positive durations, an http listen address "host:port" or empty.
// kInvalidArgument naming the field (as its flag) and the value.
Status Validate(const Config& config);

struct CommandLine {
  Config config;
  bool help = false;  // --help: print Usage() and exit
};

// Reads --config FILE first (wherever it appears), then every other flag in
// order. Flags take "--name=value" or "--name value"; a bool flag alone means
// true. kInvalidArgument for an unknown flag or key, a missing or malformed
// value, or a config that fails Validate; kIoError when the file cannot be
// read. argv[0] is skipped.
Result<CommandLine> ParseCommandLine(int argc, const char* const* argv);

// Parses the YAML text of a config file (a map of flag names without the
// dashes to values) over `config`.
Status ApplyConfigYaml(const std::string& yaml_text, Config* config);

// The help text: every flag with its default.
std::string Usage();

// "250ms", "5s", "2m", "1h" (a whole number and a unit).
Result<std::chrono::milliseconds> ParseDuration(std::string_view text);
std::string FormatDuration(std::chrono::milliseconds duration);

}  // namespace tokenmem::device_plugin
