// tokenmem-bench: measures tokenmem against the machine's own limits in the
// same run and prints one JSON object (--json) or a summary.
//
//   tokenmem-bench [--json] nvme [--dir D] [--block-size S] [--bytes S]
//                  [--threads N] [--restart-blocks N] [--no-fio]
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include "local_bench.h"
#include "nvme_bench.h"
#include "tokenmem/common/units.h"
#include "wire/json_writer.h"

namespace {

constexpr const char* kUsage = R"(usage: tokenmem-bench [--json] COMMAND [options]

commands:
  local   the local shared-memory path (SDK) beside single-thread memcpy: get and
          put bandwidth for 4KiB..4MiB blocks, 4KiB get latency, lookup_prefix
            --working-set SIZE    bytes per block size, default 512MiB
            --samples N           single 4KiB gets timed, default 200000
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
  std::vector<std::string> args(argv + 1, argv + argc);
  bool json = false;
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
