// The C ABI of the CUDA path (tokenmem/tokenmem_cuda.h), over libtokenmem's
// public C ABI only.
#include <cuda_runtime_api.h>

#include <algorithm>
#include <map>
#include <mutex>
#include <vector>

#include "tokenmem/tokenmem_cuda.h"

namespace {

std::mutex registered_mu;
// Per pool: the start addresses registered, so a second call skips them.
std::map<tm_pool*, std::vector<void*>> registered;

struct Scatter {
  const tm_iovec* pieces;
  size_t count;
  cudaStream_t stream;
  size_t needed = 0;
  bool too_small = false;
};

// tm_copy_fn: the block's bytes, from the pool, into the device pieces.
int CopyToPieces(void* ctx, const void* src, size_t len) {
  auto* s = static_cast<Scatter*>(ctx);
  size_t room = 0;
  for (size_t i = 0; i < s->count; ++i) room += s->pieces[i].len;
  if (room < len) {
    s->too_small = true;
    s->needed = len;
    return 1;
  }
  const auto* from = static_cast<const char*>(src);
  size_t left = len;
  for (size_t i = 0; i < s->count && left > 0; ++i) {
    const size_t n = std::min(left, s->pieces[i].len);
    if (cudaMemcpyAsync(s->pieces[i].data, from, n, cudaMemcpyHostToDevice, s->stream) !=
        cudaSuccess) {
      return 1;
    }
    from += n;
    left -= n;
  }
  // Finished before the read is validated: the pool may reuse the slot after.
  return cudaStreamSynchronize(s->stream) == cudaSuccess ? 0 : 1;
}

}  // namespace

extern "C" {

int tm_cuda_register_pool(tm_pool* pool) {
  int devices = 0;
  if (cudaGetDeviceCount(&devices) != cudaSuccess || devices == 0) return TM_FAILED_PRECONDITION;
  size_t count = 0;
  int rc = tm_pool_mapped_regions(pool, nullptr, 0, &count);
  if (rc != TM_OK) return rc;
  std::vector<tm_iovec> regions(count);
  rc = tm_pool_mapped_regions(pool, regions.data(), regions.size(), &count);
  if (rc != TM_OK) return rc;
  regions.resize(std::min(count, regions.size()));
  std::lock_guard lock(registered_mu);
  auto& done = registered[pool];
  for (const tm_iovec& r : regions) {
    if (std::find(done.begin(), done.end(), r.data) != done.end()) continue;
    if (cudaHostRegister(r.data, r.len, cudaHostRegisterPortable) != cudaSuccess) {
      return TM_INTERNAL;
    }
    done.push_back(r.data);
  }
  return TM_OK;
}

void tm_cuda_unregister_pool(tm_pool* pool) {
  std::lock_guard lock(registered_mu);
  auto it = registered.find(pool);
  if (it == registered.end()) return;
  for (void* p : it->second) cudaHostUnregister(p);
  registered.erase(it);
}

int tm_cuda_get_many(tm_pool* pool, size_t n, const tm_key* keys, const size_t* iovcnt,
                     const tm_iovec* iov, int* codes, size_t* lengths, void* stream) {
  if (pool == nullptr ||
      (n > 0 && (keys == nullptr || iovcnt == nullptr || iov == nullptr || codes == nullptr))) {
    return TM_INVALID_ARGUMENT;
  }
  int first = TM_OK;
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    Scatter s{iov + at, iovcnt[i], static_cast<cudaStream_t>(stream)};
    at += iovcnt[i];
    size_t length = 0;
    int rc = tm_read_in_place(pool, &keys[i], &CopyToPieces, &s, &length);
    if (s.too_small) {
      rc = TM_INVALID_ARGUMENT;
      length = s.needed;
    }
    codes[i] = rc;
    if (lengths != nullptr) lengths[i] = length;
    if (rc != TM_OK && rc != TM_NOT_FOUND && first == TM_OK) first = rc;
  }
  return first;
}

}  // extern "C"
