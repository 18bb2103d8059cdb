"""Block keys of a request, for every layer, as one numpy array.

keys[b, l] is the 128-bit key of token block b in layer l: layer l's chain
(tokenmem.keys.chain_keys over the request's tokens, seeded with the
layer's namespace). The array is laid out as the C ABI's tm_key (hi, lo as
native uint64), block-major, so one tm_lookup_prefix over keys.reshape(-1, 2)
counts the leading blocks present in every layer, and keys[:, l] feeds a
per-layer batch without converting a key to a Python object.
"""

import ctypes
import dataclasses
from typing import List, Optional, Sequence

import numpy as np

from .. import _lib
from .config import ConnectorConfig
from .request_extras import RequestExtras, mix_seed, multimodal_breaks, request_seed

_chain = _lib.lib["tm_chain_keys"]  # own function object: argtypes as addresses
_chain.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint32, ctypes.c_void_p,
                   ctypes.c_void_p, ctypes.c_size_t]
_chain.restype = ctypes.c_size_t


class KeySchedule:
    """The per-layer seeds of one configuration; makes request keys.

    tp_ranks: the tensor-parallel ranks whose keys to make (None: only
    config.tp_rank). With several, the layer axis of keys() is rank-major:
    column r * num_layers + l is rank tp_ranks[r]'s layer l, so one
    lookup_prefix asks for every rank's shard of a block at once.
    """

    def __init__(self, config: ConnectorConfig, num_layers: int,
                 tp_ranks: Optional[Sequence[int]] = None):
        if config.block_tokens < 1:
            raise ValueError("block_tokens must be at least 1")
        self.block_tokens = config.block_tokens
        ranks = list(tp_ranks) if tp_ranks is not None else [config.tp_rank]
        configs = [dataclasses.replace(config, tp_rank=r) for r in ranks]
        seeds = [c.layer_seed(layer) for c in configs for layer in range(num_layers)]
        self.num_layers = len(seeds)
        self._seeds = np.array([[s.hi, s.lo] for s in seeds], dtype=np.uint64)

    def keys(self, token_ids, extras: Optional[RequestExtras] = None) -> np.ndarray:
        """uint64 array [blocks, layers, 2] for the full blocks of token_ids;
        extras (cache salt, LoRA adapter, multimodal inputs) change the
        chain as request_extras.py describes."""
        tokens = np.ascontiguousarray(token_ids, dtype=np.uint32)
        if tokens.ndim != 1:
            raise ValueError("token_ids must be one-dimensional")
        blocks = len(tokens) // self.block_tokens
        out = np.empty((self.num_layers, blocks, 2), dtype=np.uint64)
        if blocks:
            breaks = multimodal_breaks(extras, self.block_tokens, blocks)
            for layer in range(self.num_layers):
                seed = request_seed(self._seeds[layer], extras)
                self._chain(tokens, seed, out[layer], breaks)
        return np.ascontiguousarray(out.transpose(1, 0, 2))

    def _chain(self, tokens, seed, out, breaks) -> None:
        """Keys of every block into out (a C-contiguous [blocks, 2] array),
        the chain re-seeded at each multimodal break: a segment's seed is
        the key before it (the request's seed for the first), mixed with
        the identifiers of the inputs starting there."""
        mixes = dict(breaks)
        bounds = [0] + [b for b, _ in breaks if b > 0] + [len(out)]
        for at, stop in zip(bounds, bounds[1:]):
            base = seed if at == 0 else out[at - 1]
            for ident in mixes.get(at, ()):
                base = mix_seed(base, b"mm", ident)
            base = np.ascontiguousarray(base, dtype=np.uint64)
            part = np.ascontiguousarray(tokens[at * self.block_tokens:stop * self.block_tokens])
            got = _chain(part.ctypes.data, len(part), self.block_tokens, base.ctypes.data,
                         out[at:stop].ctypes.data, stop - at)
            if got != stop - at:
                raise RuntimeError("tm_chain_keys gave %d keys for %d blocks" % (got, stop - at))


def key_list(keys: np.ndarray) -> List[tuple]:
    """(hi, lo) tuples of a [n, 2] key array, for the checked Pool calls."""
    return [(int(hi), int(lo)) for hi, lo in keys.reshape(-1, 2)]


__all__: Sequence[str] = ["KeySchedule", "key_list"]
