"""The CUDA path from Python: KV blocks from the mapped pool straight into
device memory, through libtokenmem_cuda.so (client_sdk/cuda, built when a
CUDA toolkit is found). load() returns None when the library or a CUDA
device is missing; callers then stage through host memory.

    direct = tokenmem.cuda.load()
    if direct is not None:
        direct.register_pool(pool)          # pin the pool's mapped segments
        rc = direct.get_many_raw(pool, n, keys, iovcnt, iov, codes, lengths, stream)

iov holds device addresses (tensor.data_ptr()); stream is a cudaStream_t
as an int (torch.cuda.Stream().cuda_stream), or 0 for the default stream.
"""

import ctypes
import ctypes.util
import os
from typing import Optional

from . import _lib

_LIBRARY = "libtokenmem_cuda.so"


class CudaPath:
    def __init__(self, lib):
        self._lib = lib
        p, s = ctypes.c_void_p, ctypes.c_size_t
        lib.tm_cuda_register_pool.argtypes = [p]
        lib.tm_cuda_register_pool.restype = ctypes.c_int
        lib.tm_cuda_unregister_pool.argtypes = [p]
        lib.tm_cuda_unregister_pool.restype = None
        lib.tm_cuda_get_many.argtypes = [p, s, p, p, p, p, p, p]
        lib.tm_cuda_get_many.restype = ctypes.c_int

    def register_pool(self, pool) -> int:
        """Pins the pool's segments mapped now (again after it grew); a tm_status."""
        pool._check()
        return self._lib.tm_cuda_register_pool(pool._h)

    def unregister_pool(self, pool) -> None:
        self._lib.tm_cuda_unregister_pool(pool._h)

    def get_many_raw(self, pool, n: int, keys: int, iovcnt: int, iov: int, codes: int,
                     lengths: int = 0, stream: int = 0) -> int:
        """tm_cuda_get_many over caller-built arrays (addresses); a tm_status."""
        pool._check()
        return self._lib.tm_cuda_get_many(pool._h, n, keys, iovcnt, iov, codes,
                                          lengths or None, stream or None)


def _candidates():
    explicit = os.environ.get("TOKENMEM_CUDA_LIBRARY")
    if explicit:
        return [explicit]
    here = os.path.dirname(getattr(_lib, "path", "") or "")
    found = [os.path.join(here, _LIBRARY), os.path.join(here, "cuda", _LIBRARY)] if here else []
    system = ctypes.util.find_library("tokenmem_cuda")
    if system:
        found.append(system)
    return found


def load() -> Optional[CudaPath]:
    """The CUDA path, or None (no library, or it does not load)."""
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            continue
        try:
            return CudaPath(ctypes.CDLL(path))
        except (OSError, AttributeError):
            continue
    return None
