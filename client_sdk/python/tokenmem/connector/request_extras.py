"""What besides the tokens changes a request's KV: its cache salt, its LoRA
adapter and its multimodal inputs.

Two requests with equal token IDs share KV only when all of these agree:
a cache salt is a tenant's wish not to share (vLLM's `cache_salt`), a LoRA
adapter changes every layer's K and V, and a multimodal input's
placeholder tokens carry no information about the image behind them.

Mixing into the key chain (KeySchedule.keys):
- salt and adapter change the request's seed, so every block differs;
- each multimodal input changes the chain from the first block that
  holds one of its placeholder tokens: blocks before it are still shared
  with requests that have the same text prefix and another image (a
  system prompt stays reusable), blocks from it on are not.
Mixing is BLAKE2b-128 over the previous key and a tagged value, so a salt
can never collide with an adapter name or an input hash.
"""

import dataclasses
import hashlib
from typing import Optional, Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class MultimodalInput:
    offset: int       # position of its first placeholder token
    length: int       # placeholder tokens
    identifier: str   # the engine's content hash of the input


@dataclasses.dataclass(frozen=True)
class RequestExtras:
    cache_salt: Optional[str] = None
    lora: Optional[str] = None
    multimodal: Tuple[MultimodalInput, ...] = ()

    @property
    def empty(self) -> bool:
        return not self.cache_salt and not self.lora and not self.multimodal


def mix_seed(seed: np.ndarray, tag: bytes, value: str) -> np.ndarray:
    """A new (hi, lo) uint64 pair from seed and a tagged value."""
    h = hashlib.blake2b(digest_size=16)
    h.update(int(seed[0]).to_bytes(8, "big") + int(seed[1]).to_bytes(8, "big"))
    data = value.encode("utf-8", "surrogatepass")
    h.update(tag + len(data).to_bytes(4, "big") + data)
    d = h.digest()
    return np.array([int.from_bytes(d[:8], "big"), int.from_bytes(d[8:], "big")], dtype=np.uint64)


def request_seed(seed: np.ndarray, extras: Optional[RequestExtras]) -> np.ndarray:
    if extras is None:
        return seed
    if extras.cache_salt:
        seed = mix_seed(seed, b"salt", extras.cache_salt)
    if extras.lora:
        seed = mix_seed(seed, b"lora", extras.lora)
    return seed


def multimodal_breaks(extras: Optional[RequestExtras], block_tokens: int,
                      blocks: int) -> Sequence[Tuple[int, Tuple[str, ...]]]:
    """[(first block, input identifiers starting there)], sorted, for the
    inputs that start within the first `blocks` blocks."""
    if extras is None or not extras.multimodal:
        return []
    starts = {}
    for mm in extras.multimodal:
        if mm.offset < 0 or mm.length < 0:
            raise ValueError("a multimodal input's offset and length must not be negative")
        block = mm.offset // block_tokens
        if block < blocks:
            starts.setdefault(block, []).append(mm.identifier)
    return [(b, tuple(sorted(ids))) for b, ids in sorted(starts.items())]


__all__ = ["MultimodalInput", "RequestExtras", "mix_seed", "multimodal_breaks", "request_seed"]
