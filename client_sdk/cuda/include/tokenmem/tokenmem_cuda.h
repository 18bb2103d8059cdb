/* tokenmem's CUDA path as a C ABI (libtokenmem_cuda.so), for engines in any
 * language: KV blocks go from the mapped pool straight into device memory.
 * Built on libtokenmem's public C ABI (tm_read_in_place,
 * tm_pool_mapped_regions); return values are tm_status codes.
 *
 * Thread safety: as the tm_pool the calls are given. */
#ifndef TOKENMEM_CUDA_H_
#define TOKENMEM_CUDA_H_

#include <stddef.h>

#include "tokenmem/tokenmem.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Registers the pool's segments mapped now with CUDA (cudaHostRegister), so
 * copies from them are direct DMA. Segments registered before are skipped;
 * call again after the pool grew. TM_FAILED_PRECONDITION without a CUDA
 * device or for a remote pool. */
TM_API int tm_cuda_register_pool(tm_pool* pool);

/* Unregisters everything tm_cuda_register_pool registered for this pool;
 * call before closing the pool. */
TM_API void tm_cuda_unregister_pool(tm_pool* pool);

/* As tm_get_many, but iov holds device addresses: block i's bytes are
 * copied (cudaMemcpyAsync on stream, a cudaStream_t or NULL, waited for)
 * from where they lie in the pool into its pieces, then validated; a block
 * that changed during its copy is copied again. codes[i]: TM_OK,
 * TM_NOT_FOUND, TM_INVALID_ARGUMENT (pieces too small; lengths[i] = bytes
 * needed) or TM_INTERNAL (CUDA failed; tm_last_error is not set for it).
 * Returns TM_OK when every block succeeded or missed, else the first
 * failing code. */
TM_API int tm_cuda_get_many(tm_pool* pool, size_t n, const tm_key* keys, const size_t* iovcnt,
                            const tm_iovec* iov, int* codes, size_t* lengths, void* stream);

#ifdef __cplusplus
}
#endif

#endif /* TOKENMEM_CUDA_H_ */
