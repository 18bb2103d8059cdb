// Small pieces shared by the benchmarks: clocks, percentiles, running
// external tools and reading their JSON.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::bench {

inline double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// The q-quantile (0..1) of `samples` (sorted in place), nearest rank.
double Percentile(std::vector<double>& samples, double q);

// Runs a shell-free command line and returns its standard output; the exit
// status must be 0.
Result<std::string> RunTool(const std::vector<std::string>& argv);

// Finds "key": <number> after the first occurrence of `anchor` in a JSON
// text. Enough for reading fio's output without a JSON library.
Result<double> JsonNumberAfter(const std::string& json, const std::string& anchor,
                               const std::string& key);

// Progress lines go to stderr, so stdout stays one JSON document.
void Progress(const std::string& line);

}  // namespace tokenmem::bench
