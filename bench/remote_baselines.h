// Baselines for the remote (UCX) path: what plain TCP over loopback carries
// (iperf3, one stream) and what Redis serves over loopback for the same
// value sizes and concurrency.
//
// The servers are child processes owned by the objects below: each listens
// on 127.0.0.1 at a port picked free (binding port 0), is restarted on
// another port when the bind races with someone else, and is stopped on
// destruction (SIGTERM, SIGKILL after 3 s) and reaped. Children also die
// with SIGKILL when the thread that started them exits (PR_SET_PDEATHSIG),
// so start them from a thread that outlives the object (main, usually).
//
// Thread safety: the objects are not shared; MeasureRedis starts its own
// threads and joins them before returning.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string_view>

#include "tokenmem/common/status.h"

namespace tokenmem::bench {

// One measured case.
struct ThroughputLatency {
  uint64_t value_bytes = 0;
  uint32_t concurrency = 0;
  uint64_t operations = 0;
  double seconds = 0;  // wall time from the common start until the last thread stopped
  double bytes_per_second = 0;
  double p50_us = 0;  // per-operation latency, nearest rank over all threads
  double p99_us = 0;
};

// True when `program` is an executable file in a $PATH directory.
bool ProgramOnPath(std::string_view program);

// A one-off iperf3 server (`iperf3 -s -1 -B 127.0.0.1 -p PORT`): it serves
// one test and exits by itself.
class Iperf3Server {
 public:
  // Ready once the port is in LISTEN state (read from /proc/net/tcp, since a
  // probing connection would use up the one-off server). kNotFound when
  // iperf3 is not installed; kUnavailable when it does not come up.
  static Result<std::unique_ptr<Iperf3Server>> Start();
  ~Iperf3Server();
  Iperf3Server(const Iperf3Server&) = delete;
  Iperf3Server& operator=(const Iperf3Server&) = delete;

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }

 private:
  Iperf3Server(pid_t pid, uint16_t port) : pid_(pid), port_(port) {}
  pid_t pid_;
  uint16_t port_;
};

// Runs `iperf3 -c 127.0.0.1 -p PORT -t SECONDS -J` (one stream) and returns
// end.sum_received.bits_per_second / 8. iperf3 takes whole seconds only:
// `seconds` is rounded up, at least 1. The client is killed if it runs
// 15 s past that. kUnavailable with iperf3's message when it reports an
// error; kIoError for unreadable output.
Result<double> RunIperf3Client(uint16_t port, double seconds);

// Starts an Iperf3Server, runs the client against it and stops the server:
// single-stream TCP loopback bandwidth in bytes per second.
Result<double> MeasureIperf3(double seconds);

// Redis (the installed redis-server) on 127.0.0.1, persistence off
// (--save "" --appendonly no), working directory and log in a temporary
// directory removed on destruction; output buffers for normal clients are
// unlimited, so multi-MiB values are fine (proto-max-bulk-len is 512 MiB).
class RedisServer {
 public:
  // Ready once it answers PING. kNotFound when redis-server is not
  // installed; kUnavailable (with its last log line) when it does not come up.
  static Result<std::unique_ptr<RedisServer>> Start();
  ~RedisServer();
  RedisServer(const RedisServer&) = delete;
  RedisServer& operator=(const RedisServer&) = delete;

  uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  const std::filesystem::path& directory() const { return directory_; }

 private:
  RedisServer(pid_t pid, uint16_t port, std::filesystem::path directory)
      : pid_(pid), port_(port), directory_(std::move(directory)) {}
  pid_t pid_;
  uint16_t port_;
  std::filesystem::path directory_;
};

struct RedisCase {
  ThroughputLatency get;
  ThroughputLatency set;
};

// Drives the Redis at 127.0.0.1:port with `concurrency` threads, each on its
// own connection. Empties the database (FLUSHALL) first and last. Each
// thread SETs `keys_per_thread` distinct keys of `value_bytes` (timed: the
// `set` figures), checks one value byte for byte, then for `seconds` GETs
// its keys in turn with one request outstanding per connection (the `get`
// figures). keys_per_thread 0 picks about 256 MiB in all, clamped to 4..1024
// per thread. kInvalidArgument for a zero size, concurrency or duration;
// the first thread's error otherwise (a short or wrong value is kCorruption).
Result<RedisCase> MeasureRedis(uint16_t port, uint64_t value_bytes, uint32_t concurrency,
                               double seconds, uint32_t keys_per_thread = 0);

}  // namespace tokenmem::bench
