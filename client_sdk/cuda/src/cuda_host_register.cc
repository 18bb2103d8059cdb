#include "tokenmem/cuda_host_register.h"

#include <cuda_runtime_api.h>

#include <string>
#include <utility>

namespace tokenmem::cuda {

namespace {

Status CudaError(const std::string& what, cudaError_t err) {
  return Internal(what + ": " + cudaGetErrorString(err));
}

}  // namespace

int DeviceCount() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky "no device" error
    return 0;
  }
  return n;
}

Result<RegisteredRanges> RegisteredRanges::Register(std::span<const HostRange> ranges) {
  if (DeviceCount() == 0) return FailedPrecondition("no CUDA device");
  RegisteredRanges out;
  for (const HostRange& r : ranges) {
    if (r.data == nullptr || r.len == 0) continue;
    cudaError_t err =
        cudaHostRegister(r.data, r.len, cudaHostRegisterPortable | cudaHostRegisterMapped);
    if (err != cudaSuccess) {
      return CudaError("cudaHostRegister of " + std::to_string(r.len) + " bytes", err);
    }
    out.ranges_.push_back(r);
  }
  return out;
}

RegisteredRanges::RegisteredRanges(RegisteredRanges&& other) noexcept
    : ranges_(std::exchange(other.ranges_, {})) {}

RegisteredRanges& RegisteredRanges::operator=(RegisteredRanges&& other) noexcept {
  if (this != &other) {
    Release();
    ranges_ = std::exchange(other.ranges_, {});
  }
  return *this;
}

RegisteredRanges::~RegisteredRanges() { Release(); }

void RegisteredRanges::Release() {
  for (const HostRange& r : ranges_) (void)cudaHostUnregister(r.data);
  ranges_.clear();
}

bool RegisteredRanges::Contains(const void* p, size_t len) const {
  const auto* b = static_cast<const std::byte*>(p);
  for (const HostRange& r : ranges_) {
    const auto* s = static_cast<const std::byte*>(r.data);
    if (b >= s && len <= r.len && b - s <= static_cast<ptrdiff_t>(r.len - len)) return true;
  }
  return false;
}

Status CopyToDevice(void* device_dst, const void* host_src, size_t len, void* stream) {
  cudaError_t err = cudaMemcpyAsync(device_dst, host_src, len, cudaMemcpyHostToDevice,
                                    static_cast<cudaStream_t>(stream));
  if (err != cudaSuccess) return CudaError("cudaMemcpyAsync", err);
  return Status::Ok();
}

}  // namespace tokenmem::cuda
