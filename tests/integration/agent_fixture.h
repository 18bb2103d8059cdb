// AgentProcess: a real tokenmem-agent in a temporary directory, for
// integration tests; RunCommand: run a tool and capture what it says.
//
//   tokenmem::testing::AgentProcess agent({.pools = {{.name = "p1"}}});
//   Status started = agent.Start();
//   ASSERT_TRUE(started.ok()) << started.ToString();   // the message carries the log's tail
//   auto lease = agent.CreateLease(64 << 20);            // "ID:SECRET"
//
// The agent runs as a child process with its own config file, socket, NVMe
// directory and log (agent.log) under one temporary directory, which the
// destructor removes after stopping the agent. The child is killed if the
// thread that started it exits (PR_SET_PDEATHSIG), so start agents from the
// test's own thread. Not thread-safe: one thread drives an AgentProcess.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"
#include "tokenmem/v1/control.grpc.pb.h"

namespace tokenmem::testing {

// One entry of the config's "pools:" list. Sizes as the agent reads them.
struct PoolOptions {
  std::string name;
  std::string block_size = "64KiB";
  std::string dram = "8MiB";
  std::string cxl = "0";
  std::string nvme = "0";
  std::string eviction = "lru";
  uint64_t ttl_seconds = 0;
  std::string scope = "local";
};

struct AgentOptions {
  std::string log_level = "info";
  std::string dram = "64MiB";
  std::string cxl = "0";
  std::string nvme = "256MiB";
  std::string segment_size = "16MiB";
  double low_watermark = 0.10;
  double high_watermark = 0.20;
  uint32_t interval_ms = 10;
  std::vector<PoolOptions> pools;  // none: "pools: []"
  bool tcp = false;                // also serve on 127.0.0.1:<a free port>, with an admin token
  std::string http_listen = "127.0.0.1:0";  // metrics/health server; port 0: any free port
  std::string sysfs_root;                   // empty: the agent's default (/sys)
  std::string extra_yaml;                   // appended to the config as it is (top-level keys)
  std::string binary;                       // empty: the tokenmem-agent built with the tests
  // The data socket in a directory of its own, dir()/data/agent-data.sock,
  // as deployed; false: dir()/agent-data.sock, beside the control socket.
  bool separate_data_dir = false;
  // More keys of the control section, as YAML flow text
  // ("tls_cert_file: /x, tls_key_file: /y"); empty: none.
  std::string control_yaml;
};

// A TCP port on 127.0.0.1 that nobody listens on right now.
Result<int> FreeLoopbackPort();

class AgentProcess {
 public:
  // Creates the temporary directory (under $TMPDIR, else /tmp); starts nothing.
  explicit AgentProcess(AgentOptions options = {});
  // Stops the agent (as Stop) and removes the directory.
  ~AgentProcess();
  AgentProcess(const AgentProcess&) = delete;
  AgentProcess& operator=(const AgentProcess&) = delete;

  // Writes the config (first start only), starts the agent with stdout and
  // stderr appended to agent.log, and waits until GetStatus answers (10 s).
  // Errors: kFailedPrecondition if already running; kIoError if the process
  // cannot start; kUnavailable if it exits or does not answer in time (then
  // it is killed). Error messages end with the log's tail.
  Status Start();

  // SIGTERM, then waits up to 5 s, then SIGKILL. OK when the agent exited
  // with status 0 (or was not running); otherwise an error saying how it
  // ended, with the log's tail.
  Status Stop();

  // Sends `signal` and waits (5 s at most) for the agent to exit, however it
  // exits. kFailedPrecondition when not running; kUnavailable if it lives on.
  Status Kill(int signal = SIGKILL);

  // Stop() (its error, if any, is returned after the restart is attempted)
  // and Start() on the same directory and config.
  Status Restart();

  bool running() const { return pid_ > 0; }
  pid_t pid() const { return pid_; }
  // The wait(2) status of the last exit; -1 before any.
  int last_wait_status() const { return last_wait_status_; }

  const std::filesystem::path& dir() const { return dir_; }
  std::string socket_path() const { return (dir_ / "agent.sock").string(); }
  // The local data socket (control.data_socket).
  std::string data_socket_path() const {
    return (options_.separate_data_dir ? dir_ / "data" / "agent-data.sock"
                                       : dir_ / "agent-data.sock")
        .string();
  }
  std::string target() const { return "unix:" + socket_path(); }
  std::string config_path() const { return (dir_ / "agent.yaml").string(); }
  std::string log_path() const { return (dir_ / "agent.log").string(); }
  std::string nvme_dir() const { return (dir_ / "nvme").string(); }
  // With options.tcp: "127.0.0.1:PORT" (fixed at the first Start), the token
  // and the file holding it; empty otherwise.
  const std::string& tcp_address() const { return tcp_address_; }
  const std::string& admin_token() const { return admin_token_; }
  std::string admin_token_path() const { return (dir_ / "admin-token").string(); }

  // The YAML that Start writes (the TCP address only once Start chose it).
  std::string ConfigYaml() const;

  // A stub on one channel that reconnects quickly; valid for the object's
  // lifetime, across restarts. Calls need their own deadlines.
  v1::Control::Stub& stub() { return *stub_; }

  // Creates a lease and returns "ID:SECRET"; the gRPC error otherwise
  // (message "CreateLease: CODE: text").
  Result<std::string> CreateLease(uint64_t quota_bytes, const std::vector<std::string>& pools = {},
                                  bool read_only = false);

  // The last `max_bytes` of agent.log ("" when there is none).
  std::string LogTail(size_t max_bytes = 4096) const;

 private:
  Status Spawn();
  Status WaitReady(std::chrono::milliseconds timeout);
  // Waits for the child to exit, up to `timeout`; true if it did.
  bool WaitExit(std::chrono::milliseconds timeout);
  Status WithLog(Status status) const;

  AgentOptions options_;
  std::filesystem::path dir_;
  Status dir_error_;
  bool config_written_ = false;
  std::string tcp_address_;
  std::string admin_token_;
  int starts_ = 0;
  pid_t pid_ = -1;
  int last_wait_status_ = -1;
  std::unique_ptr<v1::Control::Stub> stub_;
};

struct CommandResult {
  int exit_code = -1;  // the exit status, or 128 + signal number
  std::string out;
  std::string err;
};

// Runs argv[0] (a path) with `argv`, feeding `input` on stdin, with the
// current environment plus `extra_env` ("NAME=VALUE", replacing a variable of
// the same name). kIoError if it cannot be started; kUnavailable if it runs
// longer than `timeout` (it is then killed).
Result<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                 const std::string& input = "",
                                 const std::vector<std::string>& extra_env = {},
                                 std::chrono::milliseconds timeout = std::chrono::seconds(30));

}  // namespace tokenmem::testing
