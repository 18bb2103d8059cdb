"""Block keys of a request, for every layer, as one numpy array.

keys[b, l] is the 128-bit key of token block b in layer l: layer l's chain
(tokenmem.keys.chain_keys over the request's tokens, seeded with the
layer's namespace). The array is laid out as the C ABI's tm_key (hi, lo as
native uint64), block-major, so one tm_lookup_prefix over keys.reshape(-1, 2)
counts the leading blocks present in every layer, and keys[:, l] feeds a
per-layer batch without converting a key to a Python object.
"""

import ctypes
from typing import List, Sequence

import numpy as np

from .. import _lib
from .config import ConnectorConfig

_chain = _lib.lib["tm_chain_keys"]  # own function object: argtypes as addresses
_chain.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_size_t]
_chain.restype = ctypes.c_size_t


class KeySchedule:
    """The per-layer seeds of one configuration; makes request keys."""

    def __init__(self, config: ConnectorConfig, num_layers: int):
        if config.block_tokens < 1:
            raise ValueError("block_tokens must be at least 1")
        self.block_tokens = config.block_tokens
        self.num_layers = num_layers
        seeds = [config.layer_seed(layer) for layer in range(num_layers)]
        self._seeds = np.array([[s.hi, s.lo] for s in seeds], dtype=np.uint64)

    def keys(self, token_ids) -> np.ndarray:
        """uint64 array [blocks, layers, 2] for the full blocks of token_ids."""
        tokens = np.ascontiguousarray(token_ids, dtype=np.uint32)
        if tokens.ndim != 1:
            raise ValueError("token_ids must be one-dimensional")
        blocks = len(tokens) // self.block_tokens
        out = np.empty((self.num_layers, blocks, 2), dtype=np.uint64)
        if blocks:
            for layer in range(self.num_layers):
                got = _chain(tokens.ctypes.data, len(tokens), self.block_tokens,
                             self._seeds[layer].ctypes.data, out[layer].ctypes.data, blocks)
                if got != blocks:
                    raise RuntimeError("tm_chain_keys gave %d keys for %d blocks" % (got, blocks))
        return np.ascontiguousarray(out.transpose(1, 0, 2))


def key_list(keys: np.ndarray) -> List[tuple]:
    """(hi, lo) tuples of a [n, 2] key array, for the checked Pool calls."""
    return [(int(hi), int(lo)) for hi, lo in keys.reshape(-1, 2)]


__all__: Sequence[str] = ["KeySchedule", "key_list"]
