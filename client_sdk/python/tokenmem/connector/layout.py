"""Where each page of each layer's KV lives in the engine's memory.

An engine's paged KV cache is, per layer, one or more tensors whose first
dimension is the page: the reference engine's [pages, 2, tokens, heads,
dim], vLLM's K and V halves of [2, pages, tokens, heads, dim], one layer of
TensorRT-LLM's [blocks, layers, 2, ...] pool. Each page of each such tensor
must be contiguous; pages may be strided. A stored block of one layer is
the concatenation, in order, of its pages' pieces: page 0 region 0, page 0
region 1, ..., page 1 region 0, ...

CPU tensors are read and written in place by the library (their data
pointers go into the scatter-gather calls). Tensors on another device are
staged: gathered to / scattered from a host buffer with torch, which is
pinned when CUDA is available (see docs/engine-integration.md).
"""

from typing import List, NamedTuple, Sequence

import numpy as np


class Region(NamedTuple):
    """One tensor of one layer: page p is nbytes at base + p * stride."""

    base: int
    stride: int
    nbytes: int
    pages: int


def _region(t) -> Region:
    if t.dim() < 1:
        raise ValueError("a KV tensor needs a page dimension")
    page = t[0]
    if not page.is_contiguous():
        raise ValueError("each page of a KV tensor must be contiguous (shape %s, strides %s)"
                         % (tuple(t.shape), t.stride()))
    elem = t.element_size()
    return Region(t.data_ptr(), t.stride(0) * elem, page.numel() * elem, t.shape[0])


class KVLayout:
    """The engine's KV tensors, by layer.

    layers[l]: the tensors of layer l, each [pages, ...] as above; all
    layers alike in page count and piece sizes. page_tokens: tokens per
    engine page; block_tokens: tokens per stored block, a multiple of it.
    """

    def __init__(self, layers: Sequence[Sequence[object]], page_tokens: int, block_tokens: int):
        if not layers:
            raise ValueError("no KV layers")
        if page_tokens < 1 or block_tokens % page_tokens:
            raise ValueError("block_tokens (%d) must be a multiple of page_tokens (%d)"
                             % (block_tokens, page_tokens))
        self.tensors = [list(ts) for ts in layers]
        self.num_layers = len(self.tensors)
        self.page_tokens = page_tokens
        self.pages_per_block = block_tokens // page_tokens
        first = self.tensors[0][0]
        self.device = first.device
        self.staged = first.device.type != "cpu"
        self.regions: List[List[Region]] = [[_region(t) for t in ts] for ts in self.tensors]
        sizes = [r.nbytes for r in self.regions[0]]
        for l, regs in enumerate(self.regions):
            if [r.nbytes for r in regs] != sizes:
                raise ValueError("layer %d's pages differ in size from layer 0's" % l)
            for t in self.tensors[l]:
                if t.device != self.device:
                    raise ValueError("all KV tensors must be on one device")
        self.num_pages = min(r.pages for regs in self.regions for r in regs)
        self.piece_sizes = np.array(sizes, dtype=np.uint64)
        self.block_bytes = int(self.piece_sizes.sum()) * self.pages_per_block
        self._bases = [np.array([r.base for r in regs], dtype=np.uint64) for regs in self.regions]
        self._strides = [np.array([r.stride for r in regs], dtype=np.uint64) for regs in self.regions]

    @property
    def pieces_per_block(self) -> int:
        return self.pages_per_block * len(self.piece_sizes)

    def iov(self, layer: int, pages: np.ndarray) -> np.ndarray:
        """tm_iovec array [blocks * pieces_per_block, 2] (address, length)
        for the blocks whose pages are pages[b] (shape [blocks, pages_per_block])."""
        p = pages.astype(np.uint64)[..., None]                     # [b, k, 1]
        out = np.empty(p.shape[:2] + (len(self.piece_sizes), 2), dtype=np.uint64)
        out[..., 0] = self._bases[layer] + p * self._strides[layer]
        out[..., 1] = self.piece_sizes
        return out.reshape(-1, 2)

    def page_bytes_views(self, layer: int):
        """Per region, a [pages, page_bytes] uint8 view of the tensor (staging)."""
        import torch

        views = []
        for t in self.tensors[layer]:
            flat = t.flatten(1) if t.dim() > 1 else t.unsqueeze(1)
            views.append(flat.view(torch.uint8))
        return views


__all__ = ["KVLayout", "Region"]
