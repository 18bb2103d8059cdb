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

from typing import List, NamedTuple, Optional, Sequence, Tuple

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

    def __init__(self, layers: Sequence[Sequence[object]], page_tokens: int, block_tokens: int,
                 recipe: Optional[Sequence[Tuple[int, int, int, int]]] = None):
        """recipe: the pieces of a stored block in order, each (page in
        block, region, byte offset in that region's page, bytes); None:
        every page's regions whole, page by page."""
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
        self.piece_sizes = np.array(sizes, dtype=np.uint64)   # bytes of each region's page
        self._bases = [np.array([r.base for r in regs], dtype=np.uint64) for regs in self.regions]
        self._strides = [np.array([r.stride for r in regs], dtype=np.uint64) for regs in self.regions]
        if recipe is None:
            recipe = [(j, r, 0, int(n)) for j in range(self.pages_per_block) for r, n in enumerate(sizes)]
        rec = np.array(recipe, dtype=np.uint64).reshape(-1, 4)
        if len(rec) == 0 or int(rec[:, 0].max()) >= self.pages_per_block or int(rec[:, 1].max()) >= len(sizes):
            raise ValueError("the block recipe names pages or regions the layout lacks")
        if any(int(o) + int(n) > sizes[int(r)] for _, r, o, n in rec):
            raise ValueError("the block recipe reaches past a page")
        self._rec_page, self._rec_region = rec[:, 0].astype(np.int64), rec[:, 1].astype(np.int64)
        self._rec_offset, self._rec_length = rec[:, 2], rec[:, 3]
        self.block_bytes = int(self._rec_length.sum())

    @property
    def pieces_per_block(self) -> int:
        return len(self._rec_length)

    def iov(self, layer: int, pages: np.ndarray) -> np.ndarray:
        """tm_iovec array [blocks * pieces_per_block, 2] (address, length)
        for the blocks whose pages are pages[b] (shape [blocks, pages_per_block])."""
        p = pages.astype(np.uint64)[:, self._rec_page]             # [b, pieces]
        bases = self._bases[layer][self._rec_region]
        strides = self._strides[layer][self._rec_region]
        return self._pieces(bases + p * strides)

    def staged_iov(self, buffers, blocks: int) -> np.ndarray:
        """The same pieces in staging buffers: buffers[r] holds region r's
        pages as rows, block b's page j in row b * pages_per_block + j."""
        rows = (np.arange(blocks, dtype=np.uint64)[:, None] * np.uint64(self.pages_per_block)
                + self._rec_page.astype(np.uint64)[None, :])
        bases = np.array([b.data_ptr() for b in buffers], dtype=np.uint64)[self._rec_region]
        widths = np.array([b.shape[1] for b in buffers], dtype=np.uint64)[self._rec_region]
        return self._pieces(bases + rows * widths)

    def _pieces(self, starts: np.ndarray) -> np.ndarray:
        out = np.empty(starts.shape + (2,), dtype=np.uint64)
        out[..., 0] = starts + self._rec_offset
        out[..., 1] = self._rec_length
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
