#include "tokenmem/cuda_pool.h"

#include <cuda_runtime_api.h>

#include <string>
#include <vector>

namespace tokenmem::cuda {

Result<RegisteredRanges> RegisterPool(const tokenmem::Pool& pool) {
  if (pool.remote()) {
    return Status(StatusCode::kFailedPrecondition, "a remote pool maps no memory to register");
  }
  std::vector<HostRange> ranges;
  for (const IoVec& region : pool.MappedRegions()) ranges.push_back({region.data, region.len});
  return RegisteredRanges::Register(ranges);
}

Result<size_t> GetToDevice(tokenmem::Pool& pool, const BlockKey& key, void* device_dst,
                           size_t capacity, void* stream) {
  auto s = static_cast<cudaStream_t>(stream);
  return pool.ReadInPlace(key, [&](std::span<const std::byte> bytes) -> Status {
    if (bytes.size() > capacity) {
      return Status(StatusCode::kInvalidArgument, "block of " + std::to_string(bytes.size()) +
                                                      " bytes, room for " +
                                                      std::to_string(capacity));
    }
    // Waited for here: the in-place read checks the block after the copy.
    cudaError_t err =
        cudaMemcpyAsync(device_dst, bytes.data(), bytes.size(), cudaMemcpyHostToDevice, s);
    if (err == cudaSuccess) err = cudaStreamSynchronize(s);
    if (err != cudaSuccess) {
      return Status(StatusCode::kInternal,
                    std::string("cudaMemcpyAsync to the device: ") + cudaGetErrorString(err));
    }
    return Status::Ok();
  });
}

}  // namespace tokenmem::cuda
