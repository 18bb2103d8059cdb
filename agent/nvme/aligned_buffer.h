// AlignedBuffer: an owned, zero-filled byte buffer whose address and size
// are multiples of 4096, as O_DIRECT I/O requires.
//
// Move-only. Not thread-safe: one owner at a time (the bytes may be shared
// by the caller's own synchronisation, as with any array).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <utility>

#include "tokenmem/common/status.h"

namespace tokenmem::nvme {

// Alignment of every O_DIRECT buffer, offset and length in this folder.
inline constexpr uint64_t kIoAlignment = 4096;

constexpr uint64_t AlignUp(uint64_t n) {
  return (n + kIoAlignment - 1) / kIoAlignment * kIoAlignment;
}
constexpr bool IsIoAligned(uint64_t n) { return n % kIoAlignment == 0; }
inline bool IsIoAligned(const void* p) { return IsIoAligned(reinterpret_cast<uintptr_t>(p)); }

class AlignedBuffer {
 public:
  AlignedBuffer() = default;  // empty: data() == nullptr, size() == 0

  // A buffer of `size` bytes rounded up to a multiple of 4096, all zero.
  // kResourceExhausted when memory is short.
  static Result<AlignedBuffer> Allocate(size_t size) {
    const size_t rounded = static_cast<size_t>(AlignUp(size));
    if (rounded == 0) return AlignedBuffer();
    void* p = std::aligned_alloc(kIoAlignment, rounded);
    if (p == nullptr) {
      return ResourceExhausted("cannot allocate an aligned buffer of " + std::to_string(rounded) +
                               " bytes");
    }
    std::memset(p, 0, rounded);
    return AlignedBuffer(static_cast<std::byte*>(p), rounded);
  }

  AlignedBuffer(AlignedBuffer&& other) noexcept
      : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  AlignedBuffer& operator=(AlignedBuffer&& other) noexcept {
    if (this != &other) {
      std::free(data_);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
    }
    return *this;
  }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  ~AlignedBuffer() { std::free(data_); }

  std::byte* data() { return data_; }
  const std::byte* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<std::byte> span() { return {data_, size_}; }
  std::span<const std::byte> span() const { return {data_, size_}; }

 private:
  AlignedBuffer(std::byte* data, size_t size) : data_(data), size_(size) {}

  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace tokenmem::nvme
