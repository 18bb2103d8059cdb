// CRC32C (Castagnoli), the checksum of every stored block.
// Uses the SSE4.2 instruction when the CPU has it, a table otherwise;
// both give the same value. Thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

namespace tokenmem {

// Extends `crc` (0 to start) over `data`.
uint32_t Crc32c(std::span<const std::byte> data, uint32_t crc = 0);

}  // namespace tokenmem
