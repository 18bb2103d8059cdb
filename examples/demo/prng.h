// SplitMix64: a tiny, fast, seedable generator for the demo's token streams
// and block contents. Not for secrets. Not thread-safe (one per user).
#pragma once

#include <cstdint>

namespace tokenmem::demo {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed) : state_(seed) {}

  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }

  // Uniform enough in [0, bound) for bound much smaller than 2^64.
  uint32_t Below(uint32_t bound) { return static_cast<uint32_t>(Next() % bound); }

 private:
  uint64_t state_;
};

}  // namespace tokenmem::demo
