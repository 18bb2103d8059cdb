// KV blocks from a tokenmem pool straight into GPU memory.
//
//   auto pinned = tokenmem::cuda::RegisterPool(*pool);   // once the pool is attached
//   auto n = tokenmem::cuda::GetToDevice(*pool, key, device_ptr, capacity, stream);
//
// RegisterPool pins the pool's mapped segments (cudaHostRegister), so the
// device reads them by DMA. GetToDevice reads the block in place
// (Pool::ReadInPlace): one cudaMemcpyAsync from the mapped slot into device
// memory, waited for on `stream`, then the block is checked not to have
// changed during the copy (and copied again if it did). A block in a
// segment that was not registered still copies correctly; CUDA stages it.
//
// Thread safety: as tokenmem::Pool; the stream is the caller's.
#pragma once

#include <cstddef>

#include "tokenmem/client.h"
#include "tokenmem/common/block_key.h"
#include "tokenmem/common/status.h"
#include "tokenmem/cuda_host_register.h"

namespace tokenmem::cuda {

// The pool's segments mapped now, registered with CUDA. kFailedPrecondition
// without a CUDA device or for a remote pool.
Result<RegisteredRanges> RegisterPool(const tokenmem::Pool& pool);

// Copies block `key` into device memory at `device_dst` (`capacity` bytes)
// and returns its length. kNotFound on a miss; kInvalidArgument when the
// block is larger than `capacity` (nothing copied); kInternal with CUDA's
// message when the copy fails. `stream`: a cudaStream_t, or nullptr for the
// default stream.
Result<size_t> GetToDevice(tokenmem::Pool& pool, const BlockKey& key, void* device_dst,
                           size_t capacity, void* stream);

}  // namespace tokenmem::cuda
