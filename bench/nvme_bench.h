// `tokenmem-bench nvme`: the NVMe tier's read and write bandwidth beside
// fio with O_DIRECT on the same directory and block size, and the agent's
// restart time to serving with many small blocks on NVMe.
#pragma once

#include <filesystem>
#include <string>

#include "tokenmem/common/status.h"
#include "wire/json_writer.h"

namespace tokenmem::bench {

struct NvmeBenchOptions {
  std::filesystem::path directory;  // scratch space on the file system to measure
  uint64_t block_size = 1ull << 20;
  uint64_t bytes = 1ull << 30;  // data written, then read, per side
  int threads = 1;              // tokenmem threads = fio jobs, one I/O in flight each
  bool run_fio = true;
  int rounds = 3;                       // alternating tokenmem / fio rounds; best of each
  uint64_t restart_blocks = 1'000'000;  // 0: skip the restart measurement
  uint64_t restart_block_size = 4096;
  std::filesystem::path agent_binary;  // tokenmem-agent for the restart measurement
};

// Adds an "nvme" object to `out`; progress goes to stderr.
Status RunNvmeBench(const NvmeBenchOptions& options, wire::JsonWriter& out);

}  // namespace tokenmem::bench
