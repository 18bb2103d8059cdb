// tokenmem-bench: measures tokenmem against the machine's own limits in the
// same run and prints one JSON object (--json) or a summary.
//
//   tokenmem-bench [--json] nvme [--dir D] [--block-size S] [--bytes S]
//                  [--threads N] [--restart-blocks N] [--no-fio]
//   tokenmem-bench [--json] remote [--seconds S] [--working-set SIZE] ...
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "local_bench.h"
#include "nvme_bench.h"
#include "remote_bench.h"
#include "tokenmem/common/units.h"
#include "wire/json_writer.h"

namespace {

constexpr const char* kUsage = R"(usage: tokenmem-bench [--json] COMMAND [options]

commands:
  local   the local shared-memory path (SDK) beside single-thread memcpy: get and
          put bandwidth for 4KiB..4MiB blocks, 4KiB get latency, lookup_prefix
            --working-set SIZE    bytes per block size, default 512MiB
            --samples N           single 4KiB gets timed, default 200000
            --index-blocks N      4KiB blocks put to measure the index's bytes per
                                  block, default 200000 (0 skips it)
  nvme    NVMe tier bandwidth beside fio (O_DIRECT, same directory, block size
          and concurrency), and the agent's restart time with many NVMe blocks
            --dir DIR             scratch directory on the file system to measure
                                  (default /var/tmp/tokenmem-bench)
            --block-size SIZE     default 1MiB
            --bytes SIZE          data per phase, default 1GiB
            --threads N           default 1
            --restart-blocks N    default 1000000 (0 skips the restart)
            --rounds N            tokenmem and fio take turns N times; best of each
                                  (default 3)
            --no-fio              skip fio
            --agent PATH          tokenmem-agent (default: beside this binary)
  remote  the remote (UCX) path over loopback, client and agent server in separate
          processes, UCX held to TCP: get and put bandwidth and p50/p99 latency for
          64KiB, 1MiB and 4MiB blocks at concurrency 1 and 8, beside iperf3 (one
          TCP stream) and Redis (redis-server, persistence off) at the same value
          sizes and concurrency
            --seconds S           per timed phase, default 2
            --working-set SIZE    distinct blocks per block size, default 128MiB
            --sizes LIST          block sizes, comma-separated (default 64KiB,1MiB,4MiB)
            --concurrency LIST    comma-separated (default 1,8)
            --workers N           the server's executor threads, default 4
            --rounds N            tokenmem and Redis take turns N times; best of each
                                  (default 3)
            --client-per-thread   one Client per thread (default: one shared Client)
            --shm                 a second tokenmem pass over UCX's default transports
                                  (shared memory), reported as "shm"
            --no-iperf3           skip iperf3
            --no-redis            skip Redis

Figures go to stdout (one JSON object with --json); progress to stderr.
)";

std::filesystem::path BesideSelf(const std::string& name) {
  char self[4096];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n <= 0) return name;
  self[n] = '\0';
  return std::filesystem::path(self).parent_path().parent_path() / "agent" / name;
}

int Usage(const std::string& error) {
  std::cerr << "tokenmem-bench: " << error << "\n" << kUsage;
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace tokenmem;
  // Benchmarks send traffic to loopback only; UCX otherwise stripes over
  // every interface (inflating the remote figures). The agents the
  // benchmark starts inherit it. An operator's setting wins.
  ::setenv("UCX_NET_DEVICES", "lo", 0);
  std::vector<std::string> args(argv + 1, argv + argc);
  bool json = false;
  // --json is taken after the command too (`tokenmem-bench remote --json`).
  for (auto it = args.begin(); it != args.end();) {
    if (*it == "--json") {
      json = true;
      it = args.erase(it);
    } else {
      ++it;
    }
  }
  size_t i = 0;
  for (; i < args.size() && args[i].rfind("--", 0) == 0; ++i) {
    if (args[i] == "--json") {
      json = true;
    } else if (args[i] == "--help") {
      std::cout << kUsage;
      return 0;
    } else {
      return Usage("unknown option " + args[i]);
    }
  }
  if (i == args.size()) return Usage("no command");
  const std::string command = args[i++];
  wire::JsonWriter out;
  out.BeginObject();
  if (command == "local") {
    bench::LocalBenchOptions o;
    for (; i < args.size(); ++i) {
      const std::string& a = args[i];
      const std::string* v = i + 1 < args.size() ? &args[i + 1] : nullptr;
      if (!v) return Usage("missing value for " + a);
      ++i;
      if (a == "--working-set") {
        auto parsed = ParseByteSize(*v);
        if (!parsed.ok() || *parsed == 0) return Usage("bad --working-set");
        o.working_set_bytes = *parsed;
      } else if (a == "--samples") {
        o.latency_samples = std::strtoull(v->c_str(), nullptr, 10);
        if (o.latency_samples == 0) return Usage("bad --samples");
      } else if (a == "--index-blocks") {
        char* end = nullptr;
        o.index_blocks = std::strtoull(v->c_str(), &end, 10);
        if (end == v->c_str() || *end != '\0') return Usage("bad --index-blocks");
      } else {
        return Usage("unknown local option " + a);
      }
    }
    Status s = bench::RunLocalBench(o, out);
    if (!s.ok()) {
      std::cerr << "tokenmem-bench: " << s.ToString() << "\n";
      return 1;
    }
  } else if (command == "nvme") {
    bench::NvmeBenchOptions o;
    o.directory = "/var/tmp/tokenmem-bench";
    o.agent_binary = BesideSelf("tokenmem-agent");
    for (; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto value = [&]() -> const std::string* {
        return i + 1 < args.size() ? &args[++i] : nullptr;
      };
      auto size = [&](uint64_t* dst) -> bool {
        const std::string* v = value();
        if (!v) return false;
        auto parsed = ParseByteSize(*v);
        if (!parsed.ok()) return false;
        *dst = *parsed;
        return true;
      };
      bool ok = true;
      if (a == "--dir") {
        const std::string* v = value();
        ok = v != nullptr;
        if (ok) o.directory = *v;
      } else if (a == "--block-size") {
        ok = size(&o.block_size);
      } else if (a == "--bytes") {
        ok = size(&o.bytes);
      } else if (a == "--threads") {
        const std::string* v = value();
        ok = v != nullptr && std::atoi(v->c_str()) > 0;
        if (ok) o.threads = std::atoi(v->c_str());
      } else if (a == "--restart-blocks") {
        const std::string* v = value();
        ok = v != nullptr;
        if (ok) o.restart_blocks = std::strtoull(v->c_str(), nullptr, 10);
      } else if (a == "--rounds") {
        const std::string* v = value();
        ok = v != nullptr && std::atoi(v->c_str()) > 0;
        if (ok) o.rounds = std::atoi(v->c_str());
      } else if (a == "--no-fio") {
        o.run_fio = false;
      } else if (a == "--agent") {
        const std::string* v = value();
        ok = v != nullptr;
        if (ok) o.agent_binary = *v;
      } else {
        return Usage("unknown nvme option " + a);
      }
      if (!ok) return Usage("bad or missing value for " + a);
    }
    Status s = bench::RunNvmeBench(o, out);
    if (!s.ok()) {
      std::cerr << "tokenmem-bench: " << s.ToString() << "\n";
      return 1;
    }
  } else if (command == "remote") {
    bench::RemoteBenchOptions o;
    for (; i < args.size(); ++i) {
      const std::string& a = args[i];
      auto value = [&]() -> const std::string* {
        return i + 1 < args.size() ? &args[++i] : nullptr;
      };
      bool ok = true;
      if (a == "--seconds") {
        const std::string* v = value();
        ok = v != nullptr && std::atof(v->c_str()) > 0;
        if (ok) o.seconds = std::atof(v->c_str());
      } else if (a == "--working-set") {
        const std::string* v = value();
        ok = v != nullptr;
        if (ok) {
          auto parsed = ParseByteSize(*v);
          ok = parsed.ok() && *parsed > 0;
          if (ok) o.working_set_bytes = *parsed;
        }
      } else if (a == "--sizes" || a == "--concurrency") {
        const std::string* v = value();
        ok = v != nullptr;
        std::vector<uint64_t> items;
        for (size_t start = 0; ok && start <= v->size();) {
          size_t comma = v->find(',', start);
          if (comma == std::string::npos) comma = v->size();
          const std::string item = v->substr(start, comma - start);
          auto parsed = ParseByteSize(item);
          ok = parsed.ok() && *parsed > 0;
          if (ok) items.push_back(*parsed);
          start = comma + 1;
        }
        if (ok && a == "--sizes") o.block_sizes = items;
        if (ok && a == "--concurrency") {
          o.concurrency.clear();
          for (uint64_t c : items) {
            ok = ok && c <= 1024;
            o.concurrency.push_back(static_cast<uint32_t>(c));
          }
        }
      } else if (a == "--workers") {
        const std::string* v = value();
        ok = v != nullptr && std::atoi(v->c_str()) > 0;
        if (ok) o.server_workers = std::atoi(v->c_str());
      } else if (a == "--rounds") {
        const std::string* v = value();
        ok = v != nullptr && std::atoi(v->c_str()) > 0 && std::atoi(v->c_str()) <= 100;
        if (ok) o.rounds = static_cast<uint32_t>(std::atoi(v->c_str()));
      } else if (a == "--client-per-thread") {
        o.client_per_thread = true;
      } else if (a == "--shm") {
        o.run_shm = true;
      } else if (a == "--no-iperf3") {
        o.run_iperf3 = false;
      } else if (a == "--no-redis") {
        o.run_redis = false;
      } else {
        return Usage("unknown remote option " + a);
      }
      if (!ok) return Usage("bad or missing value for " + a);
    }
    Status s = bench::RunRemoteBench(o, out);
    if (!s.ok()) {
      std::cerr << "tokenmem-bench: " << s.ToString() << "\n";
      return 1;
    }
  } else {
    return Usage("unknown command " + command);
  }
  out.EndObject();
  // The human summary went to stderr as the run went; stdout carries the
  // figures (only them with --json, so they can be piped).
  if (!json) std::cout << "figures: ";
  std::cout << out.str() << "\n";
  return 0;
}
