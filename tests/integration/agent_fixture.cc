#include "agent_fixture.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grpcpp/create_channel.h>
#include <grpcpp/security/credentials.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <system_error>
#include <thread>

#include "wire/codes.h"

extern char** environ;

#ifndef TOKENMEM_AGENT_BINARY
#error "TOKENMEM_AGENT_BINARY must name the tokenmem-agent binary"
#endif

namespace tokenmem::testing {

namespace {

constexpr auto kReadyTimeout = std::chrono::seconds(10);
constexpr auto kStopTimeout = std::chrono::seconds(5);

std::string DescribeWait(int status) {
  if (WIFEXITED(status)) return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    int sig = WTERMSIG(status);
    const char* name = sigdescr_np(sig);
    return "signal " + std::to_string(sig) + (name ? std::string(" (") + name + ")" : "");
  }
  return "wait status " + std::to_string(status);
}

std::filesystem::path MakeTempDir(Status* error) {
  const char* base = std::getenv("TMPDIR");
  std::string pattern = std::string(base && *base ? base : "/tmp") + "/tokenmem-agent-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    *error = ErrnoError("mkdtemp " + pattern, errno);
    return {};
  }
  return pattern;
}

Status WriteFile(const std::string& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return ErrnoError("open " + path, errno);
  size_t done = 0;
  while (done < text.size()) {
    ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      return ErrnoError("write " + path, err);
    }
    done += static_cast<size_t>(n);
  }
  if (::close(fd) != 0) return ErrnoError("close " + path, errno);
  return Status::Ok();
}

// YAML double-quoted scalar (paths and names need no more than this).
std::string Quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

}  // namespace

Result<int> FreeLoopbackPort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError("bind 127.0.0.1:0", err);
  }
  ::close(fd);
  return static_cast<int>(ntohs(addr.sin_port));
}

AgentProcess::AgentProcess(AgentOptions options) : options_(std::move(options)) {
  dir_ = MakeTempDir(&dir_error_);
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  // Retry connecting within ~100 ms after a restart, not gRPC's default backoff of seconds.
  // (The minimum connect timeout stays at its default: lowering it aborts handshakes.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 10);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 100);
  stub_ = v1::Control::NewStub(
      grpc::CreateCustomChannel(target(), grpc::InsecureChannelCredentials(), args));
}

AgentProcess::~AgentProcess() {
  (void)Stop();
  if (!dir_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
}

std::string AgentProcess::ConfigYaml() const {
  std::ostringstream y;
  y << "log_level: " << options_.log_level << "\n";
  if (!options_.sysfs_root.empty()) y << "sysfs_root: " << Quote(options_.sysfs_root) << "\n";
  y << "control: {socket: " << Quote(socket_path())
    << ", data_socket: " << Quote(data_socket_path());
  if (!tcp_address_.empty()) {
    y << ", tcp_listen: " << Quote(tcp_address_)
      << ", admin_token_file: " << Quote(admin_token_path());
  }
  if (!options_.control_yaml.empty()) y << ", " << options_.control_yaml;
  y << "}\n"
    << "http: {listen: " << Quote(options_.http_listen) << "}\n"
    << "tiers:\n"
    << "  dram: {capacity: " << options_.dram << "}\n"
    << "  cxl: {capacity: " << options_.cxl << "}\n"
    << "  nvme: {directory: " << Quote(nvme_dir()) << ", capacity: " << options_.nvme
    << ", segment_size: " << options_.segment_size << ", create_directory: true}\n"
    << "movement: {low_watermark: " << options_.low_watermark
    << ", high_watermark: " << options_.high_watermark << ", interval_ms: " << options_.interval_ms
    << "}\n";
  if (options_.pools.empty()) {
    y << "pools: []\n";
  } else {
    y << "pools:\n";
    for (const PoolOptions& p : options_.pools) {
      y << "  - {name: " << Quote(p.name) << ", block_size: " << p.block_size
        << ", capacity: {dram: " << p.dram << ", cxl: " << p.cxl << ", nvme: " << p.nvme
        << "}, eviction: " << p.eviction << ", ttl_seconds: " << p.ttl_seconds
        << ", scope: " << p.scope << "}\n";
    }
  }
  y << options_.extra_yaml;
  return y.str();
}

std::string AgentProcess::LogTail(size_t max_bytes) const {
  int fd = ::open(log_path().c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "";
  off_t size = ::lseek(fd, 0, SEEK_END);
  off_t from = size > static_cast<off_t>(max_bytes) ? size - static_cast<off_t>(max_bytes) : 0;
  std::string out;
  if (size > 0 && ::lseek(fd, from, SEEK_SET) == from) {
    out.resize(static_cast<size_t>(size - from));
    ssize_t n = ::read(fd, out.data(), out.size());
    out.resize(n > 0 ? static_cast<size_t>(n) : 0);
  }
  ::close(fd);
  return out;
}

Status AgentProcess::WithLog(Status status) const {
  if (status.ok()) return status;
  return {status.code(), status.message() + "\n--- " + log_path() + " (tail) ---\n" + LogTail()};
}

Status AgentProcess::Start() {
  if (!dir_error_.ok()) return dir_error_;
  if (running()) return FailedPrecondition("the agent is already running");
  if (!config_written_) {
    if (options_.tcp) {
      TM_ASSIGN_OR_RETURN(int port, FreeLoopbackPort());
      tcp_address_ = "127.0.0.1:" + std::to_string(port);
      admin_token_ = "test-admin-token-" + std::to_string(port);
      TM_RETURN_IF_ERROR(WriteFile(admin_token_path(), admin_token_ + "\n"));
    }
    TM_RETURN_IF_ERROR(WriteFile(config_path(), ConfigYaml()));
    config_written_ = true;
  }
  TM_RETURN_IF_ERROR(Spawn());
  return WaitReady(kReadyTimeout);
}

Status AgentProcess::Spawn() {
  const std::string binary = options_.binary.empty() ? TOKENMEM_AGENT_BINARY : options_.binary;
  if (::access(binary.c_str(), X_OK) != 0) return ErrnoError("agent binary " + binary, errno);
  int log = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (log < 0) return ErrnoError("open " + log_path(), errno);
  std::string banner = "==== agent start " + std::to_string(++starts_) + " ====\n";
  if (::write(log, banner.data(), banner.size()) < 0) {
    int err = errno;
    ::close(log);
    return ErrnoError("write " + log_path(), err);
  }
  int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (devnull < 0) {
    int err = errno;
    ::close(log);
    return ErrnoError("open /dev/null", err);
  }
  std::vector<std::string> args = {binary, "--config", config_path()};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) {
    int err = errno;
    ::close(log);
    ::close(devnull);
    return ErrnoError("fork", err);
  }
  if (pid == 0) {
    // Only async-signal-safe calls until exec: the parent has threads.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    if (::dup2(devnull, STDIN_FILENO) < 0 || ::dup2(log, STDOUT_FILENO) < 0 ||
        ::dup2(log, STDERR_FILENO) < 0) {
      ::_exit(127);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(log);
  ::close(devnull);
  pid_ = pid;
  return Status::Ok();
}

Status AgentProcess::WaitReady(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      last_wait_status_ = status;
      return WithLog(Unavailable("the agent ended (" + DescribeWait(status) +
                                 ") before it answered GetStatus"));
    }
    if (::access(socket_path().c_str(), F_OK) != 0) {
      // Not listening yet; calling now would only put the channel into reconnect backoff.
      if (std::chrono::steady_clock::now() > deadline) {
        ::kill(pid_, SIGKILL);
        WaitExit(kStopTimeout);
        return WithLog(Unavailable("the agent did not create " + socket_path() + " within " +
                                   std::to_string(timeout.count()) + " ms; killed"));
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
      continue;
    }
    grpc::ClientContext call;
    // Without wait_for_ready a channel that failed to connect answers every call at once with
    // its old error and, in this gRPC, may not try again; with it, the call itself connects.
    call.set_wait_for_ready(true);
    call.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(250));
    v1::StatusReply reply;
    if (stub_->GetStatus(&call, v1::StatusRequest(), &reply).ok()) return Status::Ok();
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid_, SIGKILL);
      WaitExit(kStopTimeout);
      return WithLog(Unavailable("the agent did not answer GetStatus on " + socket_path() +
                                 " within " + std::to_string(timeout.count()) + " ms; killed"));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

bool AgentProcess::WaitExit(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_ || (r < 0 && errno == ECHILD)) {
      last_wait_status_ = r == pid_ ? status : -1;
      pid_ = -1;
      return true;
    }
    if (std::chrono::steady_clock::now() > deadline) return false;
    // An idle gRPC client does not read its connection, so it never answers the GOAWAY of a
    // server that shuts down, and the agent waits out its shutdown deadline for it. A call
    // makes this process read the connection and let go of it.
    grpc::ClientContext call;
    call.set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(5));
    v1::StatusReply reply;
    (void)stub_->GetStatus(&call, v1::StatusRequest(), &reply);
  }
}

Status AgentProcess::Stop() {
  if (!running()) return Status::Ok();
  if (::kill(pid_, SIGTERM) != 0) return ErrnoError("kill SIGTERM", errno);
  if (!WaitExit(kStopTimeout)) {
    ::kill(pid_, SIGKILL);
    WaitExit(kStopTimeout);
    return WithLog(Unavailable("the agent did not stop within 5 s of SIGTERM; killed"));
  }
  if (last_wait_status_ != -1 &&
      !(WIFEXITED(last_wait_status_) && WEXITSTATUS(last_wait_status_) == 0)) {
    return WithLog(
        Internal("the agent ended with " + DescribeWait(last_wait_status_) + " after SIGTERM"));
  }
  return Status::Ok();
}

Status AgentProcess::Kill(int signal) {
  if (!running()) return FailedPrecondition("the agent is not running");
  if (::kill(pid_, signal) != 0) return ErrnoError("kill", errno);
  if (!WaitExit(kStopTimeout)) {
    return Unavailable("the agent still runs 5 s after signal " + std::to_string(signal));
  }
  return Status::Ok();
}

Status AgentProcess::Restart() {
  Status stopped = Stop();
  Status started = Start();
  if (!stopped.ok()) return stopped;
  return started;
}

Result<std::string> AgentProcess::CreateLease(uint64_t quota_bytes,
                                              const std::vector<std::string>& pools,
                                              bool read_only) {
  v1::CreateLeaseRequest request;
  request.set_quota_bytes(quota_bytes);
  for (const auto& p : pools) request.add_pools(p);
  request.set_read_only(read_only);
  request.set_owner("integration-test");
  grpc::ClientContext call;
  call.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::LeaseInfo lease;
  grpc::Status s = stub_->CreateLease(&call, request, &lease);
  if (!s.ok()) {
    return wire::FromRpcStatus("CreateLease", s);
  }
  return lease.id() + ":" + lease.secret();
}

// ---- RunCommand -------------------------------------------------------------

namespace {

struct Pipe {
  int read = -1;
  int write = -1;
};

void CloseFd(int* fd) {
  if (*fd >= 0) ::close(*fd);
  *fd = -1;
}

std::vector<std::string> Environment(const std::vector<std::string>& extra) {
  std::vector<std::string> env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view entry(*e);
    std::string_view name = entry.substr(0, entry.find('='));
    bool replaced = false;
    for (const auto& x : extra) {
      if (std::string_view(x).substr(0, x.find('=')) == name) replaced = true;
    }
    if (!replaced) env.emplace_back(entry);
  }
  env.insert(env.end(), extra.begin(), extra.end());
  return env;
}

}  // namespace

Result<CommandResult> RunCommand(const std::vector<std::string>& argv, const std::string& input,
                                 const std::vector<std::string>& extra_env,
                                 std::chrono::milliseconds timeout) {
  if (argv.empty()) return InvalidArgument("RunCommand needs a program");
  // A child that exits without reading its input must not kill the test with SIGPIPE.
  ::signal(SIGPIPE, SIG_IGN);

  Pipe in, out, err;
  for (Pipe* p : {&in, &out, &err}) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return ErrnoError("pipe2", errno);
    p->read = fds[0];
    p->write = fds[1];
  }
  auto close_all = [&] {
    for (Pipe* p : {&in, &out, &err}) {
      CloseFd(&p->read);
      CloseFd(&p->write);
    }
  };

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in.read, STDIN_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out.write, STDOUT_FILENO);
  posix_spawn_file_actions_adddup2(&actions, err.write, STDERR_FILENO);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, pipe_only;
  sigemptyset(&none);
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &pipe_only);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

  std::vector<std::string> args = argv;
  std::vector<char*> cargs;
  for (auto& a : args) cargs.push_back(a.data());
  cargs.push_back(nullptr);
  std::vector<std::string> env = Environment(extra_env);
  std::vector<char*> cenv;
  for (auto& e : env) cenv.push_back(e.data());
  cenv.push_back(nullptr);

  pid_t pid = -1;
  int rc = posix_spawn(&pid, cargs[0], &actions, &attr, cargs.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    close_all();
    return ErrnoError("posix_spawn " + argv[0], rc);
  }
  CloseFd(&in.read);
  CloseFd(&out.write);
  CloseFd(&err.write);
  if (input.empty()) CloseFd(&in.write);
  if (in.write >= 0) ::fcntl(in.write, F_SETFL, O_NONBLOCK);

  CommandResult result;
  size_t written = 0;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  bool timed_out = false;
  while (out.read >= 0 || err.read >= 0) {
    std::vector<pollfd> fds;
    if (in.write >= 0) fds.push_back({in.write, POLLOUT, 0});
    if (out.read >= 0) fds.push_back({out.read, POLLIN, 0});
    if (err.read >= 0) fds.push_back({err.read, POLLIN, 0});
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      timed_out = true;
      break;
    }
    int n = ::poll(fds.data(), fds.size(), static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      close_all();
      return ErrnoError("poll", e);
    }
    for (const pollfd& p : fds) {
      if (p.revents == 0) continue;
      if (p.fd == in.write) {
        ssize_t w = ::write(in.write, input.data() + written, input.size() - written);
        if (w > 0) written += static_cast<size_t>(w);
        if (w < 0 && errno != EAGAIN && errno != EINTR) written = input.size();  // reader gone
        if (written == input.size()) CloseFd(&in.write);
        continue;
      }
      char buf[65536];
      ssize_t r = ::read(p.fd, buf, sizeof(buf));
      if (r < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      std::string& sink = p.fd == out.read ? result.out : result.err;
      if (r <= 0) {
        CloseFd(p.fd == out.read ? &out.read : &err.read);
      } else {
        sink.append(buf, static_cast<size_t>(r));
      }
    }
  }
  close_all();
  int status = 0;
  for (;;) {
    if (timed_out) ::kill(pid, SIGKILL);
    pid_t r = ::waitpid(pid, &status, timed_out ? 0 : WNOHANG);
    if (r == pid) break;
    if (r < 0) {
      if (errno == EINTR) continue;
      return ErrnoError("waitpid", errno);
    }
    if (std::chrono::steady_clock::now() > deadline) {
      timed_out = true;
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }
  if (timed_out) {
    return Unavailable(argv[0] + " ran longer than " + std::to_string(timeout.count()) +
                       " ms; killed");
  }
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

}  // namespace tokenmem::testing
