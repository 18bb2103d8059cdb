"""Reads the page layout of an engine's KV cache tensor from its shape and
strides, and cuts it into per-page byte views that KVLayout moves.

Attention backends allocate one tensor per layer, in one of these logical
shapes (N pages of T tokens, H KV heads of D elements):

    K/V first     [2, N, T, H, D]     (FlashAttention-style)
    blocks first  [N, 2, T, H, D]     (FlashInfer-style)
    latent (MLA)  [N, T, D]

and may store it permuted (HND keeps heads outside tokens). Nothing here
is assumed: the page axis is the one of size N, the K/V axis the one of
size 2, and the physical order of the others comes from the strides.

A stored block has one canonical byte order whatever the engine's layout:
all of K, then all of V, each [block tokens, heads, head size] (a latent
cache: [block tokens, dim]). `recipe` lists the pieces of the engine's
pages that make it up, in that order, merged where they are contiguous:
NHD layouts need two pieces per page, HND layouts one per (token, head).
So the scheduler can name the bytes from the KV cache spec alone, and
engines whose attention backends differ still share blocks.

A tensor whose page is not one dense run of bytes (after splitting off
an outer K/V axis) cannot be moved with one copy per piece and is refused
with the shape and strides in the message.
"""

import dataclasses
from typing import List, Optional, Sequence, Tuple

_NAMES_MHA = ("T", "H", "D")
_NAMES_MLA = ("T", "D")


class LayoutError(ValueError):
    """The tensor's layout cannot be moved page by page."""


@dataclasses.dataclass(frozen=True)
class PageSpec:
    """What the engine's KV cache spec says one page holds."""

    num_pages: int          # pages in the tensor (kernel blocks)
    page_tokens: int        # T
    head_size: int          # D
    num_kv_heads: int = 0   # H; 0 for a latent (MLA) cache
    latent: bool = False


@dataclasses.dataclass(frozen=True)
class PagedTensor:
    views: List[object]     # per region of a page: uint8 [N, region bytes], rows contiguous
    descriptor: str         # physical byte order of a page, e.g. "KV.H.T.D=2x8x16x128"
    # per region: its K/V index when the K/V axis lies outside the page (else None),
    # and the byte stride within a row of each label (KV, T, H, D) inside it
    region_kv: List[Optional[int]]
    row_strides: dict
    sizes: dict             # label -> size
    elem: int


def canonical_descriptor(spec: PageSpec, block_tokens: int) -> str:
    """What a stored block holds, from the spec alone (see the module doc)."""
    if spec.latent:
        return "T.D=%dx%d" % (block_tokens, spec.head_size)
    return "KV.T.H.D=2x%dx%dx%d" % (block_tokens, spec.num_kv_heads, spec.head_size)


def recipe(paged: PagedTensor, pages_per_block: int):
    """[(page in block, region, byte offset in the row, bytes)] building one
    stored block in canonical order, contiguous pieces merged."""
    s, n, elem = paged.row_strides, paged.sizes, paged.elem
    latent = "KV" not in n
    pieces = []
    for kv in ([None] if latent else range(2)):
        for j in range(pages_per_block):
            for t in range(n["T"]):
                for h in ([None] if latent else range(n["H"])):
                    region, off = 0, 0
                    if kv is not None:
                        if paged.region_kv[0] is not None:
                            region = paged.region_kv.index(kv)
                        else:
                            off += kv * s["KV"]
                    off += t * s["T"] + (h * s["H"] if h is not None else 0)
                    length = n["D"] * elem
                    last = pieces[-1] if pieces else None
                    if last and last[0] == j and last[1] == region and last[2] + last[3] == off:
                        pieces[-1] = (j, region, last[2], last[3] + length)
                    else:
                        pieces.append((j, region, off, length))
    return pieces


def _labels(t, spec: PageSpec) -> List[str]:
    shape = tuple(t.shape)
    if spec.latent:
        want = (spec.num_pages, spec.page_tokens, spec.head_size)
        if shape != want:
            raise LayoutError("latent KV cache: expected shape %s [pages, tokens, dim], got %s"
                              % (want, shape))
        return ["N"] + list(_NAMES_MLA)
    if len(shape) != 5:
        raise LayoutError("KV cache tensor of shape %s: expected 5 dimensions "
                          "([2, N, T, H, D] or [N, 2, T, H, D])" % (shape,))
    tail = (spec.page_tokens, spec.num_kv_heads, spec.head_size)
    if shape[2:] != tail:
        raise LayoutError("KV cache tensor of shape %s: expected its last dimensions to be "
                          "(tokens, kv heads, head size) = %s" % (shape, tail))
    if spec.num_pages == 2:
        raise LayoutError("a KV cache of 2 pages cannot tell its page axis from its K/V axis")
    if shape[:2] == (2, spec.num_pages):
        return ["KV", "N"] + list(_NAMES_MHA)
    if shape[:2] == (spec.num_pages, 2):
        return ["N", "KV"] + list(_NAMES_MHA)
    raise LayoutError("KV cache tensor of shape %s: neither [2, %d, ...] nor [%d, 2, ...]"
                      % (shape, spec.num_pages, spec.num_pages))


def analyse(t, spec: PageSpec) -> PagedTensor:
    """Per-page byte views of t and the descriptor of their byte order."""
    import torch

    labels = _labels(t, spec)
    shape, strides = list(t.shape), list(t.stride())
    page = labels.index("N")
    outer = [i for i, s in enumerate(strides) if i != page and s > strides[page] and shape[i] > 1]
    for i in outer:
        if labels[i] != "KV":
            raise LayoutError("KV cache tensor of shape %s, strides %s: dimension %s lies outside "
                              "the page" % (tuple(shape), tuple(strides), labels[i]))
    inner = [i for i in range(len(shape)) if i != page and i not in outer]
    # Dense check: by increasing stride each dimension's stride is the
    # product of the sizes inside it (size-1 dimensions are free).
    dense = 1
    for i in sorted(inner, key=lambda i: (strides[i], -i)):
        if shape[i] == 1:
            continue
        if strides[i] != dense:
            raise LayoutError("KV cache tensor of shape %s, strides %s: a page is not one dense "
                              "run of memory" % (tuple(shape), tuple(strides)))
        dense *= shape[i]
    if strides[page] < dense:
        raise LayoutError("KV cache tensor of shape %s, strides %s: pages overlap"
                          % (tuple(shape), tuple(strides)))
    order = [i for i in outer] + sorted(inner, key=lambda i: (-strides[i], i))
    descriptor = "%s=%s" % (".".join(labels[i] for i in order),
                            "x".join(str(shape[i]) for i in order))

    views, region_kv = [], []
    elem = t.element_size()
    for idx in _outer_indices([shape[i] for i in outer]):
        offset = t.storage_offset() + sum(k * strides[i] for k, i in zip(idx, outer))
        rows = t.as_strided((shape[page], dense), (strides[page], 1), offset)
        views.append(rows.view(torch.uint8))   # same memory, a row per page
        region_kv.append(idx[0] if outer else None)
    row_strides = {labels[i]: strides[i] * elem for i in inner}
    sizes = {labels[i]: shape[i] for i in range(len(shape)) if i != page}
    return PagedTensor(views, descriptor, region_kv, row_strides, sizes, elem)


def _outer_indices(sizes: Sequence[int]) -> List[Tuple[int, ...]]:
    out: List[Tuple[int, ...]] = [()]
    for n in sizes:
        out = [idx + (k,) for idx in out for k in range(n)]
    return out


def analyse_layers(tensors: Sequence[object], spec: PageSpec) -> Tuple[List[List[object]], PagedTensor]:
    """Views per layer, and layer 0's analysis (every layer shares its
    layout; one that differs is refused: one stored block size per pool)."""
    views: List[List[object]] = []
    first: Optional[PagedTensor] = None
    for n, t in enumerate(tensors):
        paged = analyse(t, spec)
        if first is not None and paged.descriptor != first.descriptor:
            raise LayoutError("layer %d's KV layout %s differs from layer 0's %s"
                              % (n, paged.descriptor, first.descriptor))
        if first is None:
            first = paged
        views.append(paged.views)
    if first is None:
        raise LayoutError("no KV cache tensors")
    return views, first


__all__ = ["LayoutError", "PageSpec", "PagedTensor", "analyse", "analyse_layers"]
