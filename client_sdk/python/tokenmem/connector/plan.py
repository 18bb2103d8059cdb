"""What moves in one engine step: built by the scheduler side, carried to
the worker side (picklable: numpy arrays and ints only).

A BlockRange names blocks [start, end) of one request: their keys
(keys[b, layer] as tm_key pairs) and the engine pages that hold them
(pages[b], pages_per_block page ids).
"""

import dataclasses
from typing import List

import numpy as np


@dataclasses.dataclass
class BlockRange:
    request_id: str
    keys: np.ndarray    # uint64 [blocks, layers, 2], blocks [start, end) of the request
    pages: np.ndarray   # int64 [blocks, pages_per_block]
    start: int          # block index of keys[0] within the request
    block_tokens: int

    @property
    def end(self) -> int:
        return self.start + len(self.keys)

    def head(self, end: int) -> "BlockRange":
        """The blocks below end (block index within the request)."""
        n = max(0, min(len(self.keys), end - self.start))
        return dataclasses.replace(self, keys=self.keys[:n], pages=self.pages[:n])


@dataclasses.dataclass
class StepPlan:
    """loads: blocks to bring into pages before attention reads them;
    saves: blocks that become full in this step and are not stored yet."""

    loads: List[BlockRange] = dataclasses.field(default_factory=list)
    saves: List[BlockRange] = dataclasses.field(default_factory=list)


__all__ = ["BlockRange", "StepPlan"]
