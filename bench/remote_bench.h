// `tokenmem-bench remote`: the remote (UCX) data path against what the same
// loopback carries otherwise, in one run: get and put bandwidth and p50/p99
// latency per block size and concurrency, beside iperf3 (one TCP stream) and
// Redis (the installed redis-server, persistence off) at the same value
// sizes and concurrency.
//
// The agent side is the real RemoteServer over real pools, in a child
// process forked before this process creates any thread or UCX context, so
// client and server are separate processes as in production. The client
// side is the SDK (tokenmem::Client over agent_address). UCX is held to TCP
// (UCX_TLS=tcp, in both processes) so that the comparison with iperf3 is
// like for like; an optional second pass uses UCX's default transports
// (shared memory on one host) and is reported apart as "shm".
//
// Thread safety: RunRemoteBench starts and joins its own threads; call it
// from the main thread before anything else has started threads (it forks).
#pragma once

#include <cstdint>
#include <vector>

#include "tokenmem/common/status.h"
#include "wire/json_writer.h"

namespace tokenmem::bench {

struct RemoteBenchOptions {
  std::vector<uint64_t> block_sizes = {64ull << 10, 1ull << 20, 4ull << 20};
  std::vector<uint32_t> concurrency = {1, 8};
  double seconds = 2.0;                       // per timed phase
  uint64_t working_set_bytes = 128ull << 20;  // distinct blocks per size
  uint32_t rounds = 3;                        // tokenmem and Redis take turns; each keeps its best
  uint32_t server_workers = 4;                // RemoteServer executor threads
  bool client_per_thread = false;             // false: all threads share one Client
  bool run_iperf3 = true;
  bool run_redis = true;
  bool run_shm = false;  // a second tokenmem pass over UCX's default transports
};

// Adds a "remote" object to `out` (fields in docs/BENCHMARKS.md). Errors:
// the server child does not come up, a tokenmem call fails, or a verified
// block's bytes differ (kCorruption). A missing iperf3 or redis-server is
// not an error: its figures are left out and the run says so.
Status RunRemoteBench(const RemoteBenchOptions& options, wire::JsonWriter& out);

}  // namespace tokenmem::bench
