#include "nvme_bench.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <thread>
#include <vector>

#include "bench_util.h"
#include "nvme/nvme_store.h"
#include "pool/pool_meta.h"
#include "tokenmem/common/units.h"

namespace tokenmem::bench {
namespace {

// Runs `fn(thread, first, count)` over [0, total) split across threads.
template <typename Fn>
Status Split(int threads, uint64_t total, Fn fn) {
  std::vector<std::thread> workers;
  std::vector<Status> results(threads);
  for (int t = 0; t < threads; ++t) {
    uint64_t first = total * t / threads;
    uint64_t last = total * (t + 1) / threads;
    workers.emplace_back([&, t, first, last] { results[t] = fn(t, first, last - first); });
  }
  for (auto& w : workers) w.join();
  for (const auto& r : results) TM_RETURN_IF_ERROR(r);
  return Status::Ok();
}

struct Bandwidth {
  double write_bytes_per_s = 0;
  double read_bytes_per_s = 0;
};

Result<Bandwidth> MeasureStore(const NvmeBenchOptions& o) {
  const auto dir = o.directory / "tokenmem-bw";
  std::filesystem::remove_all(dir);
  nvme::NvmeStoreOptions so;
  so.directory = dir;
  so.block_size = o.block_size;
  so.capacity_bytes = o.bytes;
  so.io_rings = static_cast<uint32_t>(o.threads);
  std::vector<nvme::RecoveredBlock> recovered;
  TM_ASSIGN_OR_RETURN(auto store, nvme::NvmeStore::Open(so, &recovered));
  const uint64_t blocks = store->capacity_slots();
  std::vector<uint32_t> slots(blocks);
  for (auto& s : slots) {
    TM_ASSIGN_OR_RETURN(s, store->Allocate());
  }
  // Engines write from aligned (pinned) buffers; so does this.
  std::vector<std::unique_ptr<std::byte, decltype(&std::free)>> owned;
  std::vector<std::span<const std::byte>> buffers;
  for (int t = 0; t < o.threads; ++t) {
    auto* raw = static_cast<std::byte*>(std::aligned_alloc(4096, o.block_size));
    owned.emplace_back(raw, &std::free);
    for (size_t i = 0; i < o.block_size; ++i) raw[i] = static_cast<std::byte>(i * 31 + 7);
    buffers.emplace_back(raw, o.block_size);
  }
  Bandwidth bw;
  Progress("tokenmem NVMe tier: writing " + HumanBytes(static_cast<double>(blocks * o.block_size)));
  auto start = std::chrono::steady_clock::now();
  TM_RETURN_IF_ERROR(Split(o.threads, blocks, [&](int t, uint64_t first, uint64_t count) -> Status {
    for (uint64_t i = first; i < first + count; ++i) {
      TM_RETURN_IF_ERROR(store->Write(slots[i], BlockKey{1, i}, i + 1, 0, buffers[t]));
    }
    return Status::Ok();
  }));
  bw.write_bytes_per_s = static_cast<double>(blocks * o.block_size) / SecondsSince(start);
  Progress("tokenmem NVMe tier: reading it back");
  start = std::chrono::steady_clock::now();
  TM_RETURN_IF_ERROR(Split(o.threads, blocks, [&](int t, uint64_t first, uint64_t count) -> Status {
    // Engines read into aligned buffers (pinned or huge pages); so does this.
    auto* raw = static_cast<std::byte*>(std::aligned_alloc(4096, o.block_size));
    std::unique_ptr<std::byte, decltype(&std::free)> holder(raw, &std::free);
    std::span<std::byte> out(raw, o.block_size);
    for (uint64_t i = first; i < first + count; ++i) {
      auto n = store->Read(slots[i], BlockKey{1, i}, out);
      if (!n.ok()) return n.status();
    }
    (void)t;
    return Status::Ok();
  }));
  bw.read_bytes_per_s = static_cast<double>(blocks * o.block_size) / SecondsSince(start);
  store.reset();
  std::filesystem::remove_all(dir);
  return bw;
}

Result<Bandwidth> MeasureFio(const NvmeBenchOptions& o) {
  const auto dir = o.directory / "fio";
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  auto run = [&](const char* rw) -> Result<double> {
    std::vector<std::string> argv = {"fio",
                                     "--name=tokenmem",
                                     "--directory=" + dir.string(),
                                     std::string("--rw=") + rw,
                                     "--bs=" + std::to_string(o.block_size),
                                     "--size=" + std::to_string(o.bytes / o.threads),
                                     "--numjobs=" + std::to_string(o.threads),
                                     "--direct=1",
                                     "--ioengine=io_uring",
                                     "--iodepth=1",
                                     "--group_reporting",
                                     "--output-format=json"};
    TM_ASSIGN_OR_RETURN(std::string json, RunTool(argv));
    return JsonNumberAfter(json, std::string("\"") + (rw[0] == 'w' ? "write" : "read") + "\" : {",
                           "bw_bytes");
  };
  Progress("fio: O_DIRECT write and read, same directory, block size and jobs");
  Bandwidth bw;
  TM_ASSIGN_OR_RETURN(bw.write_bytes_per_s, run("write"));
  TM_ASSIGN_OR_RETURN(bw.read_bytes_per_s, run("read"));
  std::filesystem::remove_all(dir);
  return bw;
}

bool DataSocketAnswers(const std::filesystem::path& path) {
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(fd);
  return ok;
}

struct Restart {
  double seconds = 0;
  uint64_t blocks = 0;
  std::string log_tail;
};

// Fills a pool's NVMe directory with small blocks, then times a real
// agent from exec until its data socket (opened after every pool was
// reopened) accepts connections.
Result<Restart> MeasureRestart(const NvmeBenchOptions& o) {
  const auto root = o.directory / "restart";
  std::filesystem::remove_all(root);
  const auto nvme_root = root / "nvme";
  const auto pool_dir = nvme_root / "bench";
  std::filesystem::create_directories(pool_dir);
  const uint64_t segment = 256ull << 20;
  pool::PoolSpec spec{.name = "bench",
                      .block_size = o.restart_block_size,
                      .capacity = {.nvme = o.restart_blocks * o.restart_block_size}};
  TM_RETURN_IF_ERROR(pool::WritePoolMeta(pool_dir, spec));
  {
    nvme::NvmeStoreOptions so;
    so.directory = pool_dir;
    so.block_size = spec.block_size;
    so.capacity_bytes = spec.capacity.nvme;
    so.segment_bytes = segment;
    // Filling is set-up, not the measurement: many writers keep the device busy.
    constexpr int kFillThreads = 16;
    so.io_rings = kFillThreads;
    std::vector<nvme::RecoveredBlock> recovered;
    TM_ASSIGN_OR_RETURN(auto store, nvme::NvmeStore::Open(so, &recovered));
    std::vector<uint32_t> slots(o.restart_blocks);
    for (auto& s : slots) {
      TM_ASSIGN_OR_RETURN(s, store->Allocate());
    }
    Progress("restart: writing " + std::to_string(o.restart_blocks) + " blocks of " +
             FormatByteSize(o.restart_block_size));
    std::atomic<uint64_t> done{0};
    TM_RETURN_IF_ERROR(
        Split(kFillThreads, slots.size(), [&](int, uint64_t first, uint64_t count) -> Status {
          std::vector<std::byte> data(o.restart_block_size, std::byte{0x5a});
          for (uint64_t i = first; i < first + count; ++i) {
            TM_RETURN_IF_ERROR(store->Write(slots[i], BlockKey{2, i}, i + 1, 1, data));
            if (done.fetch_add(1) % 100000 == 99999)
              Progress("restart: " + std::to_string(done.load()) + " blocks written");
          }
          return Status::Ok();
        }));
  }
  uint64_t tier = (spec.capacity.nvme + segment - 1) / segment * segment;
  const auto config = root / "agent.yaml";
  std::ofstream(config) << "log_level: info\n"
                        << "control: {socket: " << (root / "agent.sock").string() << "}\n"
                        // No HTTP server: the default port may belong to a running agent.
                        << "http: {listen: \"\"}\n"
                        << "tiers:\n  dram: {capacity: 64MiB}\n"
                        << "  nvme: {directory: " << nvme_root.string() << ", capacity: " << tier
                        << ", segment_size: " << segment << "}\n"
                        << "pools: []\n";
  const auto data_socket = root / "agent-data.sock";
  const auto log = root / "agent.log";
  Progress("restart: starting the agent");
  auto start = std::chrono::steady_clock::now();
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ::dup2(fd, STDERR_FILENO);
    ::dup2(fd, STDOUT_FILENO);
    ::execl(o.agent_binary.c_str(), o.agent_binary.c_str(), "--config", config.c_str(), nullptr);
    ::_exit(127);
  }
  if (pid < 0) return ErrnoError("fork", errno);
  Restart r;
  bool up = false;
  while (SecondsSince(start) < 300) {
    if (DataSocketAnswers(data_socket)) {
      up = true;
      break;
    }
    int status;
    if (::waitpid(pid, &status, WNOHANG) == pid) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  r.seconds = SecondsSince(start);
  ::kill(pid, SIGTERM);
  ::waitpid(pid, nullptr, 0);
  std::ifstream in(log);
  std::string line;
  while (std::getline(in, line)) {
    auto at = line.find(" blocks recovered");
    if (at != std::string::npos && line.find("ready") != std::string::npos) {
      auto from = line.rfind(' ', at - 1);
      r.blocks = std::strtoull(line.c_str() + from + 1, nullptr, 10);
    }
    r.log_tail = line;
  }
  if (!up) return Unavailable("the agent did not come up: " + r.log_tail);
  std::filesystem::remove_all(root);
  return r;
}

}  // namespace

Status RunNvmeBench(const NvmeBenchOptions& o, wire::JsonWriter& out) {
  if (o.block_size % 4096 != 0 || o.block_size == 0) {
    return InvalidArgument("--block-size must be a multiple of 4KiB");
  }
  if (o.bytes < o.block_size * static_cast<uint64_t>(o.threads)) {
    return InvalidArgument("--bytes must hold at least one block per thread");
  }
  std::error_code ec;
  std::filesystem::create_directories(o.directory, ec);
  if (ec) return IoError("cannot create " + o.directory.string() + ": " + ec.message());
  // A shared or virtual disk drifts a lot from minute to minute: tokenmem
  // and fio take turns, and each keeps its best round.
  Bandwidth tm, fio;
  for (int round = 0; round < o.rounds; ++round) {
    TM_ASSIGN_OR_RETURN(Bandwidth t, MeasureStore(o));
    tm.write_bytes_per_s = std::max(tm.write_bytes_per_s, t.write_bytes_per_s);
    tm.read_bytes_per_s = std::max(tm.read_bytes_per_s, t.read_bytes_per_s);
    if (o.run_fio) {
      TM_ASSIGN_OR_RETURN(Bandwidth f, MeasureFio(o));
      fio.write_bytes_per_s = std::max(fio.write_bytes_per_s, f.write_bytes_per_s);
      fio.read_bytes_per_s = std::max(fio.read_bytes_per_s, f.read_bytes_per_s);
    }
  }
  out.Key("nvme").BeginObject();
  out.IntField("rounds", o.rounds);
  out.StringField("directory", o.directory.string());
  out.UintField("block_size", o.block_size);
  out.UintField("bytes", o.bytes);
  out.IntField("threads", o.threads);
  out.DoubleField("write_bytes_per_second", tm.write_bytes_per_s);
  out.DoubleField("read_bytes_per_second", tm.read_bytes_per_s);
  if (o.run_fio) {
    out.DoubleField("fio_write_bytes_per_second", fio.write_bytes_per_s);
    out.DoubleField("fio_read_bytes_per_second", fio.read_bytes_per_s);
    out.DoubleField("write_ratio", tm.write_bytes_per_s / fio.write_bytes_per_s);
    out.DoubleField("read_ratio", tm.read_bytes_per_s / fio.read_bytes_per_s);
    out.BoolField("target_met", tm.write_bytes_per_s >= 0.8 * fio.write_bytes_per_s &&
                                    tm.read_bytes_per_s >= 0.8 * fio.read_bytes_per_s);
    Progress("tokenmem write " + HumanBytes(tm.write_bytes_per_s) + "/s vs fio " +
             HumanBytes(fio.write_bytes_per_s) + "/s; read " + HumanBytes(tm.read_bytes_per_s) +
             "/s vs fio " + HumanBytes(fio.read_bytes_per_s) + "/s");
  }
  if (o.restart_blocks > 0) {
    TM_ASSIGN_OR_RETURN(Restart r, MeasureRestart(o));
    out.Key("restart").BeginObject();
    out.UintField("blocks_written", o.restart_blocks);
    out.UintField("block_size", o.restart_block_size);
    out.UintField("blocks_recovered", r.blocks);
    out.DoubleField("seconds_to_serving", r.seconds);
    out.BoolField("target_met", r.seconds <= 5.0 && r.blocks == o.restart_blocks);
    out.EndObject();
    Progress("restart with " + std::to_string(r.blocks) + " NVMe blocks: serving after " +
             std::to_string(r.seconds) + " s");
  }
  out.EndObject();
  return Status::Ok();
}

}  // namespace tokenmem::bench
