#include "remote_baselines.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "resp_client.h"

namespace tokenmem::bench {
namespace {

using Clock = std::chrono::steady_clock;

constexpr int kStartAttempts = 5;
constexpr auto kStartTimeout = std::chrono::seconds(10);
constexpr auto kStopGrace = std::chrono::seconds(3);

Result<uint16_t> PickFreePort() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return ErrnoError("socket", errno);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    int err = errno;
    ::close(fd);
    return ErrnoError("bind 127.0.0.1:0", err);
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// An anonymous file that collects a child's output, read back on failure.
Result<int> MakeCapture(const char* name) {
  int fd = ::memfd_create(name, MFD_CLOEXEC);
  if (fd < 0) return ErrnoError("memfd_create", errno);
  return fd;
}

std::string ReadCapture(int fd) {
  std::string text;
  char buf[65536];
  off_t at = 0;
  ssize_t n;
  while ((n = ::pread(fd, buf, sizeof(buf), at)) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) {
      text.append(buf, static_cast<size_t>(n));
      at += n;
    }
  }
  return text;
}

std::string LastLine(const std::string& text) {
  size_t end = text.find_last_not_of("\r\n");
  if (end == std::string::npos) return "(no output)";
  size_t begin = text.rfind('\n', end);
  return text.substr(begin == std::string::npos ? 0 : begin + 1, end + 1 - (begin + 1));
}

// Starts argv[0] (searched in $PATH) with stdout and stderr on the given
// descriptors and stdin on /dev/null.
Result<pid_t> Spawn(const std::vector<std::string>& argv, int out_fd, int err_fd) {
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_t pid = ::fork();
  if (pid < 0) return ErrnoError("fork", errno);
  if (pid == 0) {
    // Only async-signal-safe calls from here to exec.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    int null_fd = ::open("/dev/null", O_RDONLY);
    if (null_fd >= 0) ::dup2(null_fd, STDIN_FILENO);
    ::dup2(out_fd, STDOUT_FILENO);
    ::dup2(err_fd, STDERR_FILENO);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

// True (and the exit status in *status) once the child has exited; it is
// reaped then.
bool Reaped(pid_t pid, int* status) {
  pid_t r;
  while ((r = ::waitpid(pid, status, WNOHANG)) < 0 && errno == EINTR) {
  }
  return r == pid || (r < 0 && errno == ECHILD);
}

// SIGTERM, then SIGKILL after the grace period; always reaps.
void StopChild(pid_t pid) {
  if (pid <= 0) return;
  int status = 0;
  if (Reaped(pid, &status)) return;
  ::kill(pid, SIGTERM);
  const auto deadline = Clock::now() + kStopGrace;
  while (Clock::now() < deadline) {
    if (Reaped(pid, &status)) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  ::kill(pid, SIGKILL);
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

std::string DescribeExit(int status) {
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return "killed by signal " + std::to_string(WTERMSIG(status));
  return "stopped";
}

// Whether some socket listens on `port` (any local address), per the
// kernel's socket tables.
bool ListensOn(uint16_t port) {
  for (const char* table : {"/proc/net/tcp", "/proc/net/tcp6"}) {
    std::ifstream in(table);
    std::string line;
    std::getline(in, line);  // header
    while (std::getline(in, line)) {
      std::istringstream fields(line);
      std::string slot, local, remote, state;
      if (!(fields >> slot >> local >> remote >> state)) continue;
      size_t colon = local.rfind(':');
      if (colon == std::string::npos || state != "0A") continue;
      if (std::strtoul(local.c_str() + colon + 1, nullptr, 16) == port) return true;
    }
  }
  return false;
}

bool AddressInUse(const std::string& output) {
  return output.find("in use") != std::string::npos ||
         output.find("EADDRINUSE") != std::string::npos;
}

// Owns a capture descriptor for the span of a start attempt.
struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

}  // namespace

bool ProgramOnPath(std::string_view program) {
  const char* path = std::getenv("PATH");
  if (path == nullptr || program.empty()) return false;
  std::string_view dirs(path);
  while (true) {
    size_t colon = dirs.find(':');
    std::string dir(dirs.substr(0, colon));
    if (dir.empty()) dir = ".";
    std::string candidate = dir + "/" + std::string(program);
    struct stat st;
    if (::stat(candidate.c_str(), &st) == 0 && S_ISREG(st.st_mode) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return true;
    }
    if (colon == std::string_view::npos) return false;
    dirs.remove_prefix(colon + 1);
  }
}

// ---------------------------------------------------------------- iperf3

Result<std::unique_ptr<Iperf3Server>> Iperf3Server::Start() {
  if (!ProgramOnPath("iperf3")) return NotFound("iperf3 is not installed");
  std::string last = "no attempt";
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    TM_ASSIGN_OR_RETURN(uint16_t port, PickFreePort());
    Fd log;
    TM_ASSIGN_OR_RETURN(log.fd, MakeCapture("iperf3-server"));
    TM_ASSIGN_OR_RETURN(pid_t pid,
                        Spawn({"iperf3", "-s", "-1", "-B", "127.0.0.1", "-p", std::to_string(port)},
                              log.fd, log.fd));
    auto server = std::unique_ptr<Iperf3Server>(new Iperf3Server(pid, port));
    const auto deadline = Clock::now() + kStartTimeout;
    int status = 0;
    bool exited = false;
    while (Clock::now() < deadline) {
      if (ListensOn(port)) return server;
      if (Reaped(pid, &status)) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
    std::string output = ReadCapture(log.fd);
    if (!exited) return Unavailable("iperf3 server did not listen: " + LastLine(output));
    server->pid_ = -1;
    last = "iperf3 server " + DescribeExit(status) + ": " + LastLine(output);
    if (!AddressInUse(output)) return Unavailable(last);
  }
  return Unavailable(last);
}

Iperf3Server::~Iperf3Server() { StopChild(pid_); }

Result<double> RunIperf3Client(uint16_t port, double seconds) {
  if (!ProgramOnPath("iperf3")) return NotFound("iperf3 is not installed");
  if (!(seconds > 0)) return InvalidArgument("the duration must be positive");
  const int whole = std::max(1, static_cast<int>(std::ceil(seconds)));
  Fd out, err;
  TM_ASSIGN_OR_RETURN(out.fd, MakeCapture("iperf3-client-out"));
  TM_ASSIGN_OR_RETURN(err.fd, MakeCapture("iperf3-client-err"));
  TM_ASSIGN_OR_RETURN(pid_t pid, Spawn({"iperf3", "-c", "127.0.0.1", "-p", std::to_string(port),
                                        "-t", std::to_string(whole), "-J"},
                                       out.fd, err.fd));
  const auto deadline = Clock::now() + std::chrono::seconds(whole + 15);
  int status = 0;
  bool exited = false;
  while (!(exited = Reaped(pid, &status)) && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  if (!exited) {
    StopChild(pid);
    return Unavailable("iperf3 client still running " + std::to_string(whole + 15) +
                       " s after it started");
  }
  const std::string text = ReadCapture(out.fd);
  const auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    return IoError("iperf3 client " + DescribeExit(status) +
                   " without JSON output: " + LastLine(ReadCapture(err.fd)));
  }
  if (auto e = json.find("error"); e != json.end() && e->is_string()) {
    return Unavailable("iperf3: " + e->get<std::string>());
  }
  const nlohmann::json* node = &json;
  for (const char* key : {"end", "sum_received", "bits_per_second"}) {
    auto it = node->find(key);
    if (it == node->end()) {
      return IoError(std::string("iperf3 output lacks end.sum_received.bits_per_second (at '") +
                     key + "')");
    }
    node = &*it;
  }
  if (!node->is_number()) return IoError("iperf3 bits_per_second is not a number");
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return IoError("iperf3 client " + DescribeExit(status));
  }
  return node->get<double>() / 8.0;
}

Result<double> MeasureIperf3(double seconds) {
  TM_ASSIGN_OR_RETURN(auto server, Iperf3Server::Start());
  return RunIperf3Client(server->port(), seconds);
}

// ----------------------------------------------------------------- Redis

Result<std::unique_ptr<RedisServer>> RedisServer::Start() {
  if (!ProgramOnPath("redis-server")) return NotFound("redis-server is not installed");
  const char* tmp = std::getenv("TMPDIR");
  std::string pattern =
      std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/tokenmem-redis-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) return ErrnoError("mkdtemp " + pattern, errno);
  const std::filesystem::path directory = pattern;
  std::string last = "no attempt";
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    auto port = PickFreePort();
    if (!port.ok()) {
      std::filesystem::remove_all(directory);
      return port.status();
    }
    Fd log;
    auto capture = MakeCapture("redis-server");
    if (!capture.ok()) {
      std::filesystem::remove_all(directory);
      return capture.status();
    }
    log.fd = *capture;
    // The log goes to stdout, i.e. the capture; an empty --logfile means that.
    auto pid =
        Spawn({"redis-server", "--port", std::to_string(*port), "--bind", "127.0.0.1", "--save", "",
               "--appendonly", "no", "--dir", directory.string(), "--daemonize", "no", "--logfile",
               "", "--client-output-buffer-limit", "normal 0 0 0"},
              log.fd, log.fd);
    if (!pid.ok()) {
      std::filesystem::remove_all(directory);
      return pid.status();
    }
    // From here the object owns the child and the directory.
    auto server = std::unique_ptr<RedisServer>(new RedisServer(*pid, *port, directory));
    const auto deadline = Clock::now() + kStartTimeout;
    int status = 0;
    bool exited = false;
    while (Clock::now() < deadline) {
      auto client = RespClient::Connect(*port);
      if (client.ok() && (*client)->Ping().ok()) return server;
      if (Reaped(*pid, &status)) {
        exited = true;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    std::string output = ReadCapture(log.fd);
    if (!exited) return Unavailable("redis-server did not answer PING: " + LastLine(output));
    server->pid_ = -1;
    server->directory_.clear();  // kept for the next attempt
    last = "redis-server " + DescribeExit(status) + ": " + LastLine(output);
    if (!AddressInUse(output)) {
      std::filesystem::remove_all(directory);
      return Unavailable(last);
    }
  }
  std::filesystem::remove_all(directory);
  return Unavailable(last);
}

RedisServer::~RedisServer() {
  StopChild(pid_);
  if (!directory_.empty()) {
    std::error_code ec;
    std::filesystem::remove_all(directory_, ec);
  }
}

namespace {

// The value a thread stores: a pattern of its own, with the key's index in
// the first eight bytes so a wrong key is noticed too.
void FillValue(std::vector<std::byte>& value, uint32_t thread) {
  for (size_t i = 0; i < value.size(); ++i) {
    value[i] = static_cast<std::byte>((i * 131 + thread * 29 + 7) & 0xff);
  }
}

void StampValue(std::span<std::byte> value, uint64_t index) {
  std::memcpy(value.data(), &index, std::min<size_t>(sizeof(index), value.size()));
}

bool StampMatches(std::span<const std::byte> value, uint64_t index) {
  size_t n = std::min<size_t>(sizeof(index), value.size());
  return std::memcmp(value.data(), &index, n) == 0;
}

std::string KeyName(uint64_t value_bytes, uint32_t thread, uint64_t index) {
  return "tokenmem-bench:" + std::to_string(value_bytes) + ":" + std::to_string(thread) + ":" +
         std::to_string(index);
}

ThroughputLatency Summarize(uint64_t value_bytes, uint32_t concurrency, double seconds,
                            std::vector<double>& latencies_us) {
  ThroughputLatency r;
  r.value_bytes = value_bytes;
  r.concurrency = concurrency;
  r.operations = latencies_us.size();
  r.seconds = seconds;
  r.bytes_per_second =
      seconds > 0 ? static_cast<double>(r.operations) * static_cast<double>(value_bytes) / seconds
                  : 0;
  r.p50_us = Percentile(latencies_us, 0.50);
  r.p99_us = Percentile(latencies_us, 0.99);
  return r;
}

double Micros(Clock::time_point from, Clock::time_point to) {
  return std::chrono::duration<double, std::micro>(to - from).count();
}

}  // namespace

Result<RedisCase> MeasureRedis(uint16_t port, uint64_t value_bytes, uint32_t concurrency,
                               double seconds, uint32_t keys_per_thread) {
  if (value_bytes == 0 || value_bytes > kMaxBulkBytes) {
    return InvalidArgument("the value size must be 1 byte to 512 MiB");
  }
  if (concurrency == 0) return InvalidArgument("the concurrency must be at least 1");
  if (!(seconds > 0)) return InvalidArgument("the duration must be positive");
  if (keys_per_thread == 0) {
    constexpr uint64_t kBudget = 256ull << 20;
    keys_per_thread =
        static_cast<uint32_t>(std::clamp<uint64_t>(kBudget / (value_bytes * concurrency), 4, 1024));
  }

  TM_ASSIGN_OR_RETURN(auto admin, RespClient::Connect(port));
  TM_RETURN_IF_ERROR(admin->FlushAll());

  struct Worker {
    std::unique_ptr<RespClient> client;
    std::vector<double> set_us, get_us;
    Clock::time_point set_end{}, get_end{};
    Status status;
  };
  std::vector<Worker> workers(concurrency);
  for (auto& w : workers) {
    TM_ASSIGN_OR_RETURN(w.client, RespClient::Connect(port));
  }

  // Each phase starts when every thread is ready; the barrier's completion
  // step stamps the phase's start.
  Clock::time_point phase_start;
  std::barrier sync(static_cast<std::ptrdiff_t>(concurrency),
                    [&]() noexcept { phase_start = Clock::now(); });
  Clock::time_point set_start, get_start;
  std::atomic<bool> failed{false};

  auto run = [&](uint32_t t) {
    Worker& w = workers[t];
    auto fail = [&](Status s) {
      w.status = std::move(s);
      failed = true;
      sync.arrive_and_drop();
    };
    std::vector<std::byte> value(value_bytes);
    std::vector<std::byte> got(value_bytes);
    FillValue(value, t);
    w.set_us.reserve(keys_per_thread);
    std::vector<std::string> keys;
    for (uint64_t i = 0; i < keys_per_thread; ++i) keys.push_back(KeyName(value_bytes, t, i));

    sync.arrive_and_wait();  // SET phase begins
    if (t == 0) set_start = phase_start;
    auto before = Clock::now();
    for (uint64_t i = 0; i < keys_per_thread; ++i) {
      StampValue(value, i);
      Status s = w.client->Set(keys[i], value);
      if (!s.ok()) return fail(s.WithContext("SET " + keys[i]));
      auto after = Clock::now();
      w.set_us.push_back(Micros(before, after));
      before = after;
    }
    w.set_end = before;

    // One full comparison outside the timed part.
    const uint64_t last = keys_per_thread - 1;
    auto n = w.client->Get(keys[last], got);
    if (!n.ok()) return fail(n.status().WithContext("GET " + keys[last]));
    if (*n != value_bytes || std::memcmp(got.data(), value.data(), value_bytes) != 0) {
      return fail(Corruption("GET " + keys[last] + " returned other bytes than were SET"));
    }

    sync.arrive_and_wait();  // GET phase begins
    if (t == 0) get_start = phase_start;
    const auto deadline = phase_start + std::chrono::duration_cast<Clock::duration>(
                                            std::chrono::duration<double>(seconds));
    before = Clock::now();
    for (uint64_t i = 0; before < deadline && !failed.load(std::memory_order_relaxed); ++i) {
      const uint64_t k = i % keys_per_thread;
      auto got_bytes = w.client->Get(keys[k], got);
      if (!got_bytes.ok()) return fail(got_bytes.status().WithContext("GET " + keys[k]));
      if (*got_bytes != value_bytes || !StampMatches(got, k)) {
        return fail(Corruption("GET " + keys[k] + " returned a wrong value"));
      }
      auto after = Clock::now();
      w.get_us.push_back(Micros(before, after));
      before = after;
    }
    w.get_end = before;
    sync.arrive_and_drop();
  };

  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < concurrency; ++t) threads.emplace_back(run, t);
  for (auto& th : threads) th.join();
  for (const auto& w : workers) TM_RETURN_IF_ERROR(w.status);
  TM_RETURN_IF_ERROR(admin->FlushAll());

  Clock::time_point set_end = set_start, get_end = get_start;
  std::vector<double> set_us, get_us;
  for (auto& w : workers) {
    set_end = std::max(set_end, w.set_end);
    get_end = std::max(get_end, w.get_end);
    set_us.insert(set_us.end(), w.set_us.begin(), w.set_us.end());
    get_us.insert(get_us.end(), w.get_us.begin(), w.get_us.end());
  }
  RedisCase result;
  result.set = Summarize(value_bytes, concurrency, Micros(set_start, set_end) / 1e6, set_us);
  result.get = Summarize(value_bytes, concurrency, Micros(get_start, get_end) / 1e6, get_us);
  return result;
}

}  // namespace tokenmem::bench
