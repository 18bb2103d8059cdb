// `tokenmem-bench local`: the local shared-memory path against the
// machine's own single-thread memcpy, in one run: get and put bandwidth per
// block size, single 4 KiB get latency, lookup_prefix over 8,192 keys, and
// the index's memory per block.
// The agent's pools and data server run in this process on a private
// socket; the client is the SDK, exactly as an engine uses it.
#pragma once

#include <filesystem>
#include <vector>

#include "tokenmem/common/status.h"
#include "wire/json_writer.h"

namespace tokenmem::bench {

struct LocalBenchOptions {
  std::vector<uint64_t> block_sizes = {4096, 64 << 10, 256 << 10, 1 << 20, 4 << 20};
  uint64_t working_set_bytes = 512ull << 20;  // per size: well past the CPU caches
  uint64_t latency_samples = 200'000;
  uint32_t prefix_keys = 8192;
  uint32_t prefix_rounds = 200;
  uint64_t index_blocks = 200'000;  // blocks put to measure the index's size; 0 skips it
};

// Adds a "local" object to `out`.
Status RunLocalBench(const LocalBenchOptions& options, wire::JsonWriter& out);

}  // namespace tokenmem::bench
