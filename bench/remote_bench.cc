#include "remote_bench.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "bench_util.h"
#include "pool/lease_table.h"
#include "pool/pool_manager.h"
#include "remote/remote_server.h"
#include "remote_baselines.h"
#include "tokenmem/client.h"
#include "tokenmem/common/units.h"

extern char** environ;

namespace tokenmem::bench {
namespace {

constexpr double kIperf3Target = 0.85;  // 1 MiB get / iperf3 single stream
constexpr double kRedisTarget = 1.5;    // 1 MiB get / Redis GET
constexpr uint64_t kTargetBlock = 1ull << 20;

std::string PoolName(uint64_t block) { return "bench-" + std::to_string(block); }

uint64_t BlocksFor(const RemoteBenchOptions& o, uint64_t block) {
  return std::max<uint64_t>(32, o.working_set_bytes / block);
}

BlockKey KeyOf(uint64_t i) { return {0x4e30, i}; }

// What the server child reports on its pipe: one line, "OK" and the
// address, lease id and secret on lines of their own, or "ERR message".
struct ServerInfo {
  std::string address;
  std::string lease_id;
  std::string lease_secret;
};

// The child's whole life: pools, a lease and the RemoteServer, then wait
// until the parent closes `stop_fd` (or dies: PDEATHSIG).
Status ServeInChild(const RemoteBenchOptions& o, int report_fd, int stop_fd) {
  uint64_t dram = 64ull << 20;
  for (uint64_t block : o.block_sizes) dram += 2 * BlocksFor(o, block) * block;
  pool::PoolManagerOptions options;
  options.tier_capacity = {.dram = dram};
  TM_ASSIGN_OR_RETURN(auto pools, pool::PoolManager::Open(options));
  for (uint64_t block : o.block_sizes) {
    // Twice the working set: overwrites of live keys never evict.
    TM_RETURN_IF_ERROR(pools
                           ->Create({.name = PoolName(block),
                                     .block_size = block,
                                     .capacity = {.dram = 2 * BlocksFor(o, block) * block}})
                           .status());
  }
  pool::LeaseTable leases;
  TM_ASSIGN_OR_RETURN(auto lease, leases.Create({.quota_bytes = 1ull << 50, .owner = "bench"}));
  TM_ASSIGN_OR_RETURN(
      auto server,
      remote::RemoteServer::Start(
          {.listen = "127.0.0.1:0", .workers = o.server_workers, .max_batch_bytes = 64ull << 20},
          {.pools = pools.get(), .leases = &leases, .node_name = "bench"}));
  const std::string line =
      "OK\n" + server->address() + "\n" + lease.account->id() + "\n" + lease.secret + "\n";
  if (::write(report_fd, line.data(), line.size()) != static_cast<ssize_t>(line.size())) {
    return ErrnoError("write to the parent", errno);
  }
  char c;
  while (::read(stop_fd, &c, 1) != 0) {
    if (errno != EINTR) break;
  }
  server.reset();
  return Status::Ok();
}

// The parent's ends of the children's stop pipes: a later child closes
// them, or an earlier child would not see its pipe close.
std::vector<int>& ParentStopFds() {
  static std::vector<int> fds;
  return fds;
}

// A RemoteServer in a child process. The fork happens before the parent
// has threads or a UCX context; the child sets its own UCX_TLS.
class ServerChild {
 public:
  static Result<std::unique_ptr<ServerChild>> Start(const RemoteBenchOptions& o,
                                                    const char* ucx_tls) {
    int report[2], stop[2];
    if (::pipe2(report, O_CLOEXEC) != 0) return ErrnoError("pipe", errno);
    if (::pipe2(stop, O_CLOEXEC) != 0) {
      int e = errno;
      ::close(report[0]);
      ::close(report[1]);
      return ErrnoError("pipe", e);
    }
    const pid_t parent = ::getpid();
    const pid_t pid = ::fork();
    if (pid < 0) return ErrnoError("fork", errno);
    if (pid == 0) {
      ::close(report[0]);
      ::close(stop[1]);
      for (int fd : ParentStopFds()) ::close(fd);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(1);
      if (ucx_tls != nullptr) {
        ::setenv("UCX_TLS", ucx_tls, 1);
      } else {
        ::unsetenv("UCX_TLS");
      }
      Status s = ServeInChild(o, report[1], stop[0]);
      if (!s.ok()) {
        const std::string line = "ERR " + s.ToString() + "\n";
        (void)!::write(report[1], line.data(), line.size());
        ::_exit(1);
      }
      ::_exit(0);
    }
    ::close(report[1]);
    ::close(stop[0]);
    ParentStopFds().push_back(stop[1]);
    auto child = std::unique_ptr<ServerChild>(new ServerChild(pid, stop[1]));
    std::string text;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    Status status;
    while (std::count(text.begin(), text.end(), '\n') < 4) {
      if (text.rfind("ERR", 0) == 0 && text.find('\n') != std::string::npos) break;
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        status = Status(StatusCode::kUnavailable, "the server child did not come up in 60 s");
        break;
      }
      pollfd p{.fd = report[0], .events = POLLIN, .revents = 0};
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        status = ErrnoError("poll", errno);
        break;
      }
      if (n == 0) continue;
      char buf[512];
      ssize_t got = ::read(report[0], buf, sizeof(buf));
      if (got < 0 && errno == EINTR) continue;
      if (got < 0) {
        status = ErrnoError("read from the server child", errno);
        break;
      }
      if (got == 0) break;
      text.append(buf, static_cast<size_t>(got));
    }
    ::close(report[0]);
    if (!status.ok()) return status;
    if (text.rfind("OK\n", 0) != 0) {
      return Status(StatusCode::kUnavailable,
                    "the server child failed: " + (text.empty() ? "it exited" : text));
    }
    size_t a = 3, b = text.find('\n', a), c = text.find('\n', b + 1), d = text.find('\n', c + 1);
    child->info_ = {text.substr(a, b - a), text.substr(b + 1, c - b - 1),
                    text.substr(c + 1, d - c - 1)};
    return child;
  }

  ~ServerChild() {
    auto& fds = ParentStopFds();
    fds.erase(std::remove(fds.begin(), fds.end(), stop_fd_), fds.end());
    ::close(stop_fd_);
    for (int i = 0; i < 50; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ServerChild(const ServerChild&) = delete;
  ServerChild& operator=(const ServerChild&) = delete;

  const ServerInfo& info() const { return info_; }

 private:
  ServerChild(pid_t pid, int stop_fd) : pid_(pid), stop_fd_(stop_fd) {}
  pid_t pid_;
  int stop_fd_;
  ServerInfo info_;
};

struct AlignedBuffer {
  explicit AlignedBuffer(size_t n)
      : data(static_cast<std::byte*>(std::aligned_alloc(4096, (n + 4095) / 4096 * 4096))), size(n) {
    std::memset(data, 0, size);  // fault the pages in before timing
  }
  ~AlignedBuffer() { std::free(data); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  std::span<std::byte> span() { return {data, size}; }
  std::byte* data;
  size_t size;
};

// Block i's bytes: a random pattern of the block size with i at both ends,
// so that a block served under the wrong key is caught.
void Stamp(const std::vector<std::byte>& pattern, uint64_t i, std::byte* out) {
  std::memcpy(out, pattern.data(), pattern.size());
  std::memcpy(out, &i, sizeof(i));
  std::memcpy(out + pattern.size() - sizeof(i), &i, sizeof(i));
}
void StampEnds(uint64_t i, std::byte* out, size_t size) {
  std::memcpy(out, &i, sizeof(i));
  std::memcpy(out + size - sizeof(i), &i, sizeof(i));
}

Status Verify(Pool& pool, const std::vector<std::byte>& pattern, uint64_t blocks) {
  const size_t size = pattern.size();
  AlignedBuffer got(size), want(size);
  for (uint64_t i : {uint64_t{0}, blocks / 3, blocks / 2, blocks - 1}) {
    TM_ASSIGN_OR_RETURN(size_t n, pool.Get(KeyOf(i), got.span()));
    Stamp(pattern, i, want.data);
    if (n != size || std::memcmp(got.data, want.data, size) != 0) {
      return Status(StatusCode::kCorruption, "block " + std::to_string(i) + " of " +
                                                 FormatByteSize(size) + " came back different");
    }
  }
  return Status::Ok();
}

// `concurrency` threads, thread t on pools[t] and keys t, t+c, t+2c, ...,
// one single-block Get (or Put) after the other for `seconds`.
Result<ThroughputLatency> TimedPhase(bool put, const std::vector<std::shared_ptr<Pool>>& pools,
                                     const std::vector<std::byte>& pattern, uint64_t blocks,
                                     uint32_t concurrency, double seconds) {
  const size_t size = pattern.size();
  std::vector<std::vector<double>> latency(concurrency);
  std::vector<Status> status(concurrency);
  std::vector<std::chrono::steady_clock::time_point> ended(concurrency);
  std::atomic<uint32_t> ready{0};
  std::atomic<bool> go{false};
  std::chrono::steady_clock::time_point start;
  const auto duration = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
      std::chrono::duration<double>(seconds));
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < concurrency; ++t) {
    threads.emplace_back([&, t] {
      AlignedBuffer buffer(size);
      std::memcpy(buffer.data, pattern.data(), size);
      Pool& pool = *pools[t];
      std::vector<double>& lat = latency[t];
      lat.reserve(1 << 16);
      ready.fetch_add(1);
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      const auto stop = start + duration;
      uint64_t key = t;
      for (;;) {
        const auto before = std::chrono::steady_clock::now();
        if (before >= stop) break;
        if (put) {
          StampEnds(key, buffer.data, size);
          Status s = pool.Put(KeyOf(key), {buffer.data, size});
          if (!s.ok()) {
            status[t] = s.WithContext("put " + std::to_string(key));
            break;
          }
        } else {
          auto got = pool.Get(KeyOf(key), buffer.span());
          if (!got.ok()) {
            status[t] = got.status().WithContext("get " + std::to_string(key));
            break;
          }
        }
        const auto after = std::chrono::steady_clock::now();
        lat.push_back(std::chrono::duration<double, std::micro>(after - before).count());
        key += concurrency;
        if (key >= blocks) key = t;
      }
      ended[t] = std::chrono::steady_clock::now();
    });
  }
  while (ready.load() < concurrency) std::this_thread::yield();
  start = std::chrono::steady_clock::now();
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  for (const Status& s : status) TM_RETURN_IF_ERROR(s);
  ThroughputLatency r;
  r.value_bytes = size;
  r.concurrency = concurrency;
  std::vector<double> all;
  for (auto& l : latency) all.insert(all.end(), l.begin(), l.end());
  r.operations = all.size();
  r.seconds =
      std::chrono::duration<double>(*std::max_element(ended.begin(), ended.end()) - start).count();
  r.bytes_per_second = static_cast<double>(r.operations * size) / r.seconds;
  r.p50_us = Percentile(all, 0.50);
  r.p99_us = Percentile(all, 0.99);
  return r;
}

void WriteFigures(wire::JsonWriter& out, const char* key, const ThroughputLatency& r) {
  out.Key(key).BeginObject();
  out.DoubleField("bytes_per_second", r.bytes_per_second);
  out.DoubleField("p50_us", r.p50_us);
  out.DoubleField("p99_us", r.p99_us);
  out.UintField("ops", r.operations);
  out.DoubleField("seconds", r.seconds);
  out.EndObject();
}

std::string Fixed(double v, int digits = 2) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string Describe(const ThroughputLatency& r) {
  return HumanBytes(r.bytes_per_second) + "/s p50 " + Fixed(r.p50_us, 0) + " us p99 " +
         Fixed(r.p99_us, 0) + " us";
}

struct TokenmemCase {
  uint64_t block_size = 0;
  uint32_t concurrency = 0;
  uint64_t blocks = 0;
  ThroughputLatency get, put;
};

// One pass of every (size, concurrency) against `server`, with UCX's
// transports as the environment says when the clients connect.
Result<std::vector<TokenmemCase>> TokenmemPass(const RemoteBenchOptions& o,
                                               const ServerInfo& server, const std::string& label) {
  const uint32_t most = *std::max_element(o.concurrency.begin(), o.concurrency.end());
  const uint32_t client_count = o.client_per_thread ? most : 1;
  std::vector<std::unique_ptr<Client>> clients;
  for (uint32_t i = 0; i < client_count; ++i) {
    ClientOptions co;
    co.agent_address = server.address;
    co.lease_id = server.lease_id;
    co.lease_secret = server.lease_secret;
    TM_ASSIGN_OR_RETURN(auto client, Client::Connect(co));
    if (!client->remote()) {
      return Status(StatusCode::kInternal, "the client did not take the remote path");
    }
    clients.push_back(std::move(client));
  }
  std::vector<TokenmemCase> cases;
  std::mt19937_64 rng(7);
  for (uint64_t block : o.block_sizes) {
    const uint64_t blocks = BlocksFor(o, block);
    std::vector<std::shared_ptr<Pool>> attached;
    for (auto& c : clients) {
      TM_ASSIGN_OR_RETURN(auto pool, c->Attach(PoolName(block)));
      attached.push_back(std::move(pool));
    }
    std::vector<std::byte> pattern(block);
    for (auto& b : pattern) b = std::byte(static_cast<uint8_t>(rng()));
    Progress(label + " " + FormatByteSize(block) + ": putting " + std::to_string(blocks) +
             " blocks");
    {
      AlignedBuffer buffer(block);
      for (uint64_t i = 0; i < blocks; ++i) {
        Stamp(pattern, i, buffer.data);
        TM_RETURN_IF_ERROR(attached[0]->Put(KeyOf(i), {buffer.data, block}));
      }
    }
    TM_RETURN_IF_ERROR(Verify(*attached[0], pattern, blocks));
    for (uint32_t c : o.concurrency) {
      std::vector<std::shared_ptr<Pool>> pools(c);
      for (uint32_t t = 0; t < c; ++t) pools[t] = attached[t % attached.size()];
      TokenmemCase tc{.block_size = block, .concurrency = c, .blocks = blocks};
      TM_ASSIGN_OR_RETURN(tc.get, TimedPhase(false, pools, pattern, blocks, c, o.seconds));
      TM_ASSIGN_OR_RETURN(tc.put, TimedPhase(true, pools, pattern, blocks, c, o.seconds));
      TM_RETURN_IF_ERROR(Verify(*attached[0], pattern, blocks));
      Progress(label + " " + FormatByteSize(block) + " c" + std::to_string(c) + ": get " +
               Describe(tc.get) + "; put " + Describe(tc.put));
      cases.push_back(tc);
    }
  }
  return cases;
}

void WriteUcxEnvironment(wire::JsonWriter& out) {
  out.Key("ucx_env").BeginObject();
  std::vector<std::string> vars;
  for (char** e = environ; *e != nullptr; ++e) {
    if (std::strncmp(*e, "UCX_", 4) == 0) vars.emplace_back(*e);
  }
  std::sort(vars.begin(), vars.end());
  for (const std::string& v : vars) {
    const size_t eq = v.find('=');
    out.StringField(v.substr(0, eq), eq == std::string::npos ? "" : v.substr(eq + 1));
  }
  out.EndObject();
}

double Ratio(double a, double b) { return b > 0 ? a / b : 0; }

// `best` becomes `candidate` when that moved more bytes per second.
void KeepBest(ThroughputLatency& best, const ThroughputLatency& candidate) {
  if (candidate.bytes_per_second > best.bytes_per_second) best = candidate;
}

void WriteRounds(wire::JsonWriter& out, const char* key, const std::vector<double>& values) {
  out.Key(key).BeginArray();
  for (double v : values) out.Double(v);
  out.EndArray();
}

}  // namespace

Status RunRemoteBench(const RemoteBenchOptions& o, wire::JsonWriter& out) {
  if (o.block_sizes.empty() || o.concurrency.empty() || o.seconds <= 0) {
    return Status(StatusCode::kInvalidArgument, "nothing to measure");
  }
  for (uint32_t c : o.concurrency) {
    if (c == 0) return Status(StatusCode::kInvalidArgument, "concurrency 0");
  }
  // Both server children first: nothing in this process has a thread or a
  // UCX context yet.
  Progress("remote: starting the server (UCX_TLS=tcp)");
  TM_ASSIGN_OR_RETURN(auto tcp_server, ServerChild::Start(o, "tcp"));
  std::unique_ptr<ServerChild> shm_server;
  if (o.run_shm) {
    Progress("remote: starting the server (UCX default transports)");
    TM_ASSIGN_OR_RETURN(shm_server, ServerChild::Start(o, nullptr));
  }
  // Redis from this (the main) thread, which outlives it.
  std::unique_ptr<RedisServer> redis;
  std::string redis_note;
  if (o.run_redis) {
    auto started = RedisServer::Start();
    if (started.ok()) {
      redis = std::move(started).value();
    } else {
      redis_note = started.status().ToString();
      Progress("remote: no Redis baseline: " + redis_note);
    }
  }

  double iperf3 = 0;
  std::string iperf3_note;
  auto measure_iperf3 = [&] {
    if (!o.run_iperf3) return;
    auto bw = MeasureIperf3(o.seconds);
    if (bw.ok()) {
      iperf3 = std::max(iperf3, *bw);
      Progress("remote: iperf3 single stream " + HumanBytes(*bw) + "/s");
    } else {
      iperf3_note = bw.status().ToString();
      Progress("remote: no iperf3 baseline: " + iperf3_note);
    }
  };
  measure_iperf3();

  // tokenmem and Redis take turns `rounds` times and each keeps its best
  // figure per case: a slow spell of this (shared) machine then costs both
  // sides alike instead of whichever ran during it.
  ::setenv("UCX_TLS", "tcp", 1);
  std::vector<TokenmemCase> cases;
  std::vector<std::optional<RedisCase>> redis_cases;
  std::vector<std::vector<double>> get_by_round, redis_get_by_round;
  for (uint32_t round = 1; round <= o.rounds; ++round) {
    const std::string label =
        o.rounds > 1 ? "round " + std::to_string(round) + ": remote tcp" : "remote tcp";
    TM_ASSIGN_OR_RETURN(auto pass, TokenmemPass(o, tcp_server->info(), label));
    if (cases.empty()) {
      cases = pass;
      redis_cases.resize(cases.size());
      get_by_round.resize(cases.size());
      redis_get_by_round.resize(cases.size());
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      KeepBest(cases[i].get, pass[i].get);
      KeepBest(cases[i].put, pass[i].put);
      get_by_round[i].push_back(pass[i].get.bytes_per_second);
    }
    if (!redis) continue;
    for (size_t i = 0; i < cases.size(); ++i) {
      auto rc = MeasureRedis(redis->port(), cases[i].block_size, cases[i].concurrency, o.seconds);
      if (!rc.ok()) return rc.status().WithContext("redis");
      Progress((o.rounds > 1 ? "round " + std::to_string(round) + ": redis " : "redis ") +
               FormatByteSize(cases[i].block_size) + " c" + std::to_string(cases[i].concurrency) +
               ": get " + Describe(rc->get) + "; set " + Describe(rc->set));
      if (!redis_cases[i]) {
        redis_cases[i] = *rc;
      } else {
        KeepBest(redis_cases[i]->get, rc->get);
        KeepBest(redis_cases[i]->set, rc->set);
      }
      redis_get_by_round[i].push_back(rc->get.bytes_per_second);
    }
    // The loopback's limit between rounds and after the last; the best is the bar.
    measure_iperf3();
  }
  tcp_server.reset();
  redis.reset();

  std::vector<TokenmemCase> shm_cases;
  if (shm_server) {
    ::unsetenv("UCX_TLS");
    TM_ASSIGN_OR_RETURN(shm_cases, TokenmemPass(o, shm_server->info(), "remote shm"));
    shm_server.reset();
    ::setenv("UCX_TLS", "tcp", 1);
  }

  out.Key("remote").BeginObject();
  out.StringField("server", "child-process");
  out.StringField("transport", "tcp");
  out.StringField("clients", o.client_per_thread ? "per-thread" : "shared");
  out.UintField("server_workers", o.server_workers);
  out.DoubleField("seconds", o.seconds);
  out.UintField("rounds", o.rounds);
  out.UintField("working_set_bytes", o.working_set_bytes);
  WriteUcxEnvironment(out);
  if (iperf3 > 0) {
    out.DoubleField("iperf3_bytes_per_second", iperf3);
  } else {
    out.Key("iperf3_bytes_per_second").Null();
    if (!iperf3_note.empty()) out.StringField("iperf3_error", iperf3_note);
  }
  if (!redis_note.empty()) out.StringField("redis_error", redis_note);
  std::optional<double> target_iperf3_c1, target_iperf3_c8, target_redis_c1, target_redis_c8;
  bool all_vs_redis = true;
  out.Key("cases").BeginArray();
  for (size_t i = 0; i < cases.size(); ++i) {
    const TokenmemCase& c = cases[i];
    out.BeginObject();
    out.UintField("block_size", c.block_size);
    out.UintField("concurrency", c.concurrency);
    out.UintField("blocks", c.blocks);
    out.Key("tokenmem").BeginObject();
    WriteFigures(out, "get", c.get);
    WriteFigures(out, "put", c.put);
    WriteRounds(out, "get_bytes_per_second_by_round", get_by_round[i]);
    out.EndObject();
    const double vs_iperf3 = Ratio(c.get.bytes_per_second, iperf3);
    if (iperf3 > 0) out.DoubleField("get_vs_iperf3", vs_iperf3);
    std::optional<double> vs_redis;
    if (redis_cases[i]) {
      out.Key("redis").BeginObject();
      WriteFigures(out, "get", redis_cases[i]->get);
      WriteFigures(out, "set", redis_cases[i]->set);
      WriteRounds(out, "get_bytes_per_second_by_round", redis_get_by_round[i]);
      out.EndObject();
      vs_redis = Ratio(c.get.bytes_per_second, redis_cases[i]->get.bytes_per_second);
      out.DoubleField("get_vs_redis", *vs_redis);
      out.DoubleField("put_vs_redis",
                      Ratio(c.put.bytes_per_second, redis_cases[i]->set.bytes_per_second));
      if (*vs_redis < kRedisTarget) all_vs_redis = false;
    }
    out.EndObject();
    if (c.block_size == kTargetBlock) {
      if (c.concurrency == 1) {
        if (iperf3 > 0) target_iperf3_c1 = vs_iperf3;
        target_redis_c1 = vs_redis;
      } else if (c.concurrency == 8) {
        if (iperf3 > 0) target_iperf3_c8 = vs_iperf3;
        target_redis_c8 = vs_redis;
      }
    }
  }
  out.EndArray();

  // Targets: 1 MiB gets at concurrency 1 and 8.
  out.Key("targets").BeginObject();
  out.DoubleField("get_vs_iperf3_min", kIperf3Target);
  out.DoubleField("get_vs_redis_min", kRedisTarget);
  auto field = [&](const char* key, const std::optional<double>& v) {
    if (v) {
      out.DoubleField(key, *v);
    } else {
      out.Key(key).Null();
    }
  };
  field("get_vs_iperf3_1mib_c1", target_iperf3_c1);
  field("get_vs_iperf3_1mib_c8", target_iperf3_c8);
  field("get_vs_redis_1mib_c1", target_redis_c1);
  field("get_vs_redis_1mib_c8", target_redis_c8);
  const bool iperf3_met = target_iperf3_c1 && target_iperf3_c8 &&
                          *target_iperf3_c1 >= kIperf3Target && *target_iperf3_c8 >= kIperf3Target;
  const bool redis_met = target_redis_c1 && target_redis_c8 && *target_redis_c1 >= kRedisTarget &&
                         *target_redis_c8 >= kRedisTarget;
  out.BoolField("iperf3_target_met", iperf3_met);
  out.BoolField("redis_target_met", redis_met);
  out.BoolField("redis_target_met_every_case", redis_cases.front().has_value() && all_vs_redis);
  out.BoolField("met", iperf3_met && redis_met);
  out.EndObject();

  if (!shm_cases.empty()) {
    out.Key("shm").BeginObject();
    out.StringField("transport", "ucx-default");
    out.Key("cases").BeginArray();
    for (const TokenmemCase& c : shm_cases) {
      out.BeginObject();
      out.UintField("block_size", c.block_size);
      out.UintField("concurrency", c.concurrency);
      out.Key("tokenmem").BeginObject();
      WriteFigures(out, "get", c.get);
      WriteFigures(out, "put", c.put);
      out.EndObject();
      if (iperf3 > 0) out.DoubleField("get_vs_iperf3", Ratio(c.get.bytes_per_second, iperf3));
      out.EndObject();
    }
    out.EndArray();
    out.EndObject();
  }
  out.EndObject();

  auto show = [](const std::optional<double>& v) { return v ? Fixed(*v) : std::string("n/a"); };
  Progress("remote: 1MiB get vs iperf3 c1 " + show(target_iperf3_c1) + ", c8 " +
           show(target_iperf3_c8) + " (target " + Fixed(kIperf3Target) + "); vs Redis c1 " +
           show(target_redis_c1) + ", c8 " + show(target_redis_c8) + " (target " +
           Fixed(kRedisTarget) + ")" + (iperf3_met && redis_met ? ": met" : ": not met"));
  return Status::Ok();
}

}  // namespace tokenmem::bench
