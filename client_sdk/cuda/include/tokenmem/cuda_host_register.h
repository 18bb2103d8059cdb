// Pinning tokenmem's mapped pool memory for CUDA, so that host-to-device
// copies of KV blocks go straight from the pool's segments to GPU memory
// (one DMA, no bounce through a staging buffer).
//
//   auto pinned = tokenmem::cuda::RegisteredRanges::Register(ranges);
//   if (!pinned.ok()) ...;                         // no device, or CUDA refused
//   TM_RETURN_IF_ERROR(tokenmem::cuda::CopyToDevice(dst, src, len, stream));
//
// The ranges are the pool's mapped DRAM/CXL segments (page-aligned
// MAP_SHARED mappings). cudaHostRegister pins their pages; while registered
// the pages stay resident, so register only what the pool maps and release
// it (destructor) before the pool is unmapped.
//
// Thread safety: RegisteredRanges is not shared between threads while it is
// moved or destroyed; CopyToDevice may be called from any thread.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include "tokenmem/common/status.h"

namespace tokenmem::cuda {

struct HostRange {
  void* data = nullptr;
  size_t len = 0;
};

// Number of CUDA devices; 0 when the runtime finds none (no driver, no GPU).
int DeviceCount();

class RegisteredRanges {
 public:
  // Registers every range with cudaHostRegister (portable, mapped).
  // kFailedPrecondition when there is no CUDA device; kInternal with CUDA's
  // message when a range is refused (the ones already registered are
  // released again). Empty ranges are skipped.
  static Result<RegisteredRanges> Register(std::span<const HostRange> ranges);

  RegisteredRanges() = default;
  RegisteredRanges(RegisteredRanges&& other) noexcept;
  RegisteredRanges& operator=(RegisteredRanges&& other) noexcept;
  RegisteredRanges(const RegisteredRanges&) = delete;
  RegisteredRanges& operator=(const RegisteredRanges&) = delete;
  // Unregisters every range.
  ~RegisteredRanges();

  // True when [p, p + len) lies inside one registered range.
  bool Contains(const void* p, size_t len) const;
  size_t size() const { return ranges_.size(); }

 private:
  void Release();
  std::vector<HostRange> ranges_;
};

// cudaMemcpyAsync host -> device on stream (nullptr: the default stream).
// kInternal with CUDA's message on failure.
Status CopyToDevice(void* device_dst, const void* host_src, size_t len, void* stream);

}  // namespace tokenmem::cuda
