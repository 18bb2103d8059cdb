"""tokenmem as an SGLang HiCache L3 storage backend (HiCacheStorage).

SGLang loads it through its storage backend factory ("dynamic" backend):

    --enable-hierarchical-cache --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "tokenmem",
        "module_path": "tokenmem.connector.sglang_backend",
        "class_name": "TokenmemHiCacheStorage", "interface_v1": 1,
        "tokenmem_pool": "kv"}'

"interface_v1": 1 makes HiCacheController call batch_get_v1/batch_set_v1
with host pool indices; pages then move between SGLang's host KV pool and
tokenmem in one scatter-gather call per batch, with no copy in Python.
Without it the controller uses get/set/batch_get/batch_set on flat page
tensors; both paths store the same bytes under the same keys.

Stored bytes: one block per page, the page's bytes in the order of the host
pool's flat data page (get_data_page(flat=True)), so they depend on the
host layout; the layout is part of the key namespace.

Keys: SGLang names a page by its chained SHA-256 hex string. The tokenmem
key is blake2b(page hash, digest 16 bytes, key = namespace digest), whose
namespace covers the model (model_name, tokenmem_revision), the KV dtype,
host layout and page shape, the attention TP rank and size (left out for
MLA, whose KV is the same on every rank; SGLang then backs up from rank 0
only), PP and attention-CP ranks when used, and tokenmem_salt.

Configuration (extra config, else environment): tokenmem_pool
(TOKENMEM_DEFAULT_POOL), tokenmem_socket (TOKENMEM_AGENT_SOCKET),
tokenmem_lease (TOKENMEM_LEASE), tokenmem_address (an agent's remote
listener), tokenmem_revision, tokenmem_salt, tokenmem_timeout_s,
tokenmem_reconnect_interval_s.

Failures: a page that misses, fails, or comes back with the wrong length is
reported as not there (SGLang recomputes it); when the agent goes away the
calls report misses and failures, and a later call connects again
(PoolSession). Never raises into SGLang's prefetch and backup threads.
"""

import hashlib
import logging
import os
from typing import Any, List, Optional

import numpy as np
import torch

from sglang.srt.mem_cache.hicache_storage import HiCacheStorage, HiCacheStorageConfig

from ..client import StatusCode, TokenmemError, get_many_raw, lookup_prefix_raw, put_many_raw
from .config import ConnectorConfig
from .session import PoolSession

_log = logging.getLogger("tokenmem.sglang")
_UNAVAILABLE = int(StatusCode.UNAVAILABLE)

# Host layouts handled, by (MLA, layout): the kv_buffer rank they have and
# whether a page is its own index along the page dimension ("direct") or a
# run of page_size token rows.
_LAYOUTS = {
    (False, "layer_first"): (5, False),        # [2, L, tokens, H, D]
    (False, "page_first"): (5, False),         # [2, tokens, L, H, D]
    (False, "page_first_direct"): (6, True),   # [2, pages, L, P, H, D]
    (False, "page_head"): (6, True),           # [2, pages, H, P, L, D]
    (True, "layer_first"): (4, False),         # [L, tokens, 1, dim]
    (True, "page_first"): (4, False),          # [tokens, L, 1, dim]
    (True, "page_first_direct"): (5, True),    # [pages, L, P, 1, dim]
}


class UnsupportedHostPool(ValueError):
    pass


def _page_view(buf: torch.Tensor, mla: bool, layout: str, page: int, size: int):
    """The slice of buf holding host page `page` (size tokens per page)."""
    lo, hi = page * size, (page + 1) * size
    if mla:
        if layout == "layer_first":
            return buf[:, lo:hi]
        if layout == "page_first":
            return buf[lo:hi]
        return buf[page:page + 1]
    if layout == "layer_first":
        return buf[:, :, lo:hi]
    if layout == "page_first":
        return buf[:, lo:hi]
    return buf[:, page:page + 1]


def _runs(view: torch.Tensor, base: int):
    """(offsets from base, lengths) of the contiguous byte runs of view, in
    its element order."""
    item = view.element_size()
    shape, strides = list(view.shape), list(view.stride())
    inner, expect = len(shape), 1
    while inner > 0 and (shape[inner - 1] == 1 or strides[inner - 1] == expect):
        expect *= shape[inner - 1]
        inner -= 1
    run = expect * item
    offs = np.zeros(1, dtype=np.int64)
    for n, s in zip(shape[:inner], strides[:inner]):
        offs = (offs[:, None] + np.arange(n, dtype=np.int64)[None, :] * s * item).reshape(-1)
    offs += view.data_ptr() - base
    # Adjacent runs make one piece.
    starts = np.ones(len(offs), dtype=bool)
    starts[1:] = offs[1:] != offs[:-1] + run
    idx = np.flatnonzero(starts)
    counts = np.diff(np.append(idx, len(offs)))
    return offs[idx].astype(np.uint64), (counts * run).astype(np.uint64)


class _PageMap:
    """Where each host page lies: per page, pieces at base + off + page * step."""

    def __init__(self, pool, mla: bool):
        layout = getattr(pool, "layout", None)
        buf = getattr(pool, "kv_buffer", None)
        spec = _LAYOUTS.get((mla, layout))
        if spec is None:
            raise UnsupportedHostPool(
                "tokenmem: host pool layout %r (%s) is not supported; use one of %s"
                % (layout, "MLA" if mla else "MHA",
                   sorted(l for m, l in _LAYOUTS if m == mla)))
        if not isinstance(buf, torch.Tensor) or buf.dim() != spec[0]:
            raise UnsupportedHostPool(
                "tokenmem: host pool %s has no single kv_buffer of rank %d for layout %r "
                "(split K/V or extra pools are not supported)"
                % (type(pool).__name__, spec[0], layout))
        if buf.device.type != "cpu":
            raise UnsupportedHostPool("tokenmem: the host KV pool must be in CPU memory, got %s"
                                      % buf.device)
        self.page_size = int(pool.page_size)
        self.direct = spec[1]
        self.base = buf.data_ptr()
        first = _page_view(buf, mla, layout, 0, self.page_size)
        self.offsets, self.lengths = _runs(first, self.base)
        if self.direct:
            pages = buf.shape[0] if mla else buf.shape[1]
        else:
            token_dim = {(True, "layer_first"): 1, (True, "page_first"): 0,
                         (False, "layer_first"): 2, (False, "page_first"): 1}[(mla, layout)]
            pages = buf.shape[token_dim] // self.page_size
        self.pages = int(pages)
        if self.pages > 1:
            self.step = _page_view(buf, mla, layout, 1, self.page_size).data_ptr() - first.data_ptr()
        else:
            self.step = 0
        self.page_bytes = int(first.numel() * first.element_size())
        self.pieces = len(self.offsets)
        self.dtype = str(buf.dtype).replace("torch.", "")
        self.shape = "x".join(str(int(d)) for d in first.shape)
        self._buf = buf   # keeps the memory the addresses point into alive

    def iov(self, pages: np.ndarray) -> np.ndarray:
        """[len(pages) * pieces, 2] (address, length) for host pages `pages`."""
        addr = (np.uint64(self.base) + self.offsets[None, :]
                + pages.astype(np.uint64)[:, None] * np.uint64(self.step))
        out = np.empty((len(pages), self.pieces, 2), dtype=np.uint64)
        out[:, :, 0] = addr
        out[:, :, 1] = self.lengths[None, :]
        return out.reshape(-1, 2)


def _option(extra: dict, name: str, env: Optional[str] = None, default=None):
    value = extra.get(name)
    if value is None and env is not None:
        value = os.environ.get(env)
    return default if value is None else value


class TokenmemHiCacheStorage(HiCacheStorage):
    """HiCacheStorage over a tokenmem pool. The factory's dynamic path calls
    cls(storage_config, kwargs); the built-in path would pass the host pool
    second: both are accepted. The host pool arrives by
    register_mem_pool_host, which HiCacheController calls right after."""

    def __init__(self, storage_config: HiCacheStorageConfig, extra: Any = None):
        self.config = storage_config
        self.extra = dict(storage_config.extra_config or {})
        self.mla = bool(storage_config.is_mla_model)
        if getattr(storage_config, "should_split_heads", False):
            raise UnsupportedHostPool("tokenmem: heterogeneous TP (tp_lcm_size, split heads) "
                                      "is not supported")
        ex = self.extra
        self.session = PoolSession(ConnectorConfig(
            model=storage_config.model_name or "",
            pool=_option(ex, "tokenmem_pool", "TOKENMEM_DEFAULT_POOL"),
            socket=_option(ex, "tokenmem_socket", "TOKENMEM_AGENT_SOCKET"),
            lease=_option(ex, "tokenmem_lease", "TOKENMEM_LEASE"),
            agent_address=_option(ex, "tokenmem_address"),
            timeout_s=float(_option(ex, "tokenmem_timeout_s", default=10.0)),
            reconnect_interval_s=float(_option(ex, "tokenmem_reconnect_interval_s", default=1.0)),
        ))
        self.pages: Optional[_PageMap] = None
        self._ns: Optional[bytes] = None
        self._too_small_logged = False
        if extra is not None and not isinstance(extra, dict) and hasattr(extra, "kv_buffer"):
            self.register_mem_pool_host(extra)

    # -- set-up ------------------------------------------------------------

    def register_mem_pool_host(self, mem_pool_host) -> None:
        self.mem_pool_host = mem_pool_host
        self.pages = _PageMap(mem_pool_host, self.mla)
        self._ns = hashlib.blake2b(self.namespace().encode(), digest_size=16,
                                   person=b"tm-sglang-ns").digest()

    def namespace(self) -> str:
        """Everything that makes two page blocks' bytes differ for one page hash."""
        c, p = self.config, self.pages
        parts = ["tokenmem-sglang-v1",
                 "model=%s" % (c.model_name or ""),
                 "revision=%s" % self.extra.get("tokenmem_revision", ""),
                 "dtype=%s" % p.dtype,
                 "layout=%s;%s;page=%s" % (self.mem_pool_host.layout, "mla" if self.mla else "mha",
                                           p.shape),
                 "tp=shared" if self.mla else "tp=%d/%d" % (c.tp_rank, c.tp_size)]
        if getattr(c, "pp_size", 1) > 1:
            parts.append("pp=%d/%d" % (c.pp_rank, c.pp_size))
        if getattr(c, "attn_cp_size", 1) > 1:
            parts.append("cp=%d/%d" % (c.attn_cp_rank, c.attn_cp_size))
        parts.append("salt=%s" % self.extra.get("tokenmem_salt", ""))
        return "|".join(parts)

    def keys_of(self, page_hashes: List[str]) -> np.ndarray:
        """[n, 2] uint64 (hi, lo) tokenmem keys of SGLang page hashes."""
        if self._ns is None:
            raise UnsupportedHostPool("tokenmem: no host pool registered yet")
        raw = b"".join(hashlib.blake2b(h.encode(), digest_size=16, key=self._ns).digest()
                       for h in page_hashes)
        return np.frombuffer(raw, dtype=">u8").astype(np.uint64).reshape(-1, 2)

    def _pool(self):
        if self.pages is None:
            return None
        pool = self.session.pool()
        if pool is not None and pool.block_size < self.pages.page_bytes:
            if not self._too_small_logged:
                _log.error("tokenmem: pool %s holds blocks of %d bytes; a host page is %d bytes",
                           pool.name, pool.block_size, self.pages.page_bytes)
                self._too_small_logged = True
            return None
        return pool

    def _page_indices(self, keys, host_indices) -> Optional[np.ndarray]:
        size = self.pages.page_size
        idx = host_indices.detach().to("cpu", torch.int64).numpy() if isinstance(
            host_indices, torch.Tensor) else np.asarray(host_indices, dtype=np.int64)
        if len(idx) != len(keys) * size:
            _log.error("tokenmem: %d host indices for %d pages of %d tokens",
                       len(idx), len(keys), size)
            return None
        starts = idx[::size]
        if (starts % size).any() or (starts < 0).any() or (starts // size >= self.pages.pages).any():
            _log.error("tokenmem: host indices are not whole pages of the host pool")
            return None
        return starts // size

    # -- zero-copy (interface_v1) -----------------------------------------

    def batch_get_v1(self, keys: List[str], host_indices: torch.Tensor,
                     extra_info=None) -> List[bool]:
        return self._transfer(keys, host_indices, get=True)

    def batch_set_v1(self, keys: List[str], host_indices: torch.Tensor,
                     extra_info=None) -> List[bool]:
        return self._transfer(keys, host_indices, get=False)

    def _transfer(self, keys, host_indices, get: bool) -> List[bool]:
        n = len(keys)
        if n == 0:
            return []
        pool = self._pool()
        pages = self._page_indices(keys, host_indices) if pool is not None else None
        if pages is None:
            return [False] * n
        try:
            k = np.ascontiguousarray(self.keys_of(keys))
            iov = np.ascontiguousarray(self.pages.iov(pages))
            iovcnt = np.full(n, self.pages.pieces, dtype=np.uint64)
            codes = np.zeros(n, dtype=np.int32)
            lengths = np.zeros(n, dtype=np.uint64)
            fn = get_many_raw if get else put_many_raw
            fn(pool, n, k.ctypes.data, iovcnt.ctypes.data, iov.ctypes.data,
               codes.ctypes.data, lengths.ctypes.data)
        except Exception:  # a failed batch is a batch of misses
            _log.exception("tokenmem: batch %s failed", "get" if get else "set")
            return [False] * n
        if (codes == _UNAVAILABLE).any():
            self.session.mark_broken(pool)
        ok = codes == 0
        if get:
            ok &= lengths == self.pages.page_bytes
        return ok.tolist()

    # -- presence ----------------------------------------------------------

    def batch_exists(self, keys: List[str], extra_info=None) -> int:
        pool = self._pool()
        if pool is None or not keys:
            return 0
        try:
            k = np.ascontiguousarray(self.keys_of(keys))
            return int(lookup_prefix_raw(pool, k.ctypes.data, len(keys)))
        except Exception:
            _log.exception("tokenmem: lookup failed")
            return 0

    def exists(self, key: str) -> bool:
        return self.batch_exists([key]) == 1

    # -- flat page tensors (the controller's generic path) ----------------

    def get(self, key: str, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None):
        return self.batch_get([key], [target_location])[0]

    def batch_get(self, keys: List[str], target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None):
        pool = self._pool()
        if pool is None or target_locations is None:
            return [None] * len(keys)
        out = []
        k = self.keys_of(keys)
        for (hi, lo), target in zip(k.tolist(), target_locations):
            out.append(self._get_one(pool, (hi, lo), target))
        return out

    def _get_one(self, pool, key, target):
        if target is None or not target.is_contiguous() or target.device.type != "cpu":
            return None
        want = target.numel() * target.element_size()
        try:
            n = pool.get(key, out=target.view(torch.uint8).numpy())
        except TokenmemError as e:
            if e.code == StatusCode.UNAVAILABLE:
                self.session.mark_broken(pool)
            return None
        except Exception:
            _log.exception("tokenmem: get failed")
            return None
        return target if n == want else None

    def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> bool:
        return self.batch_set([key], [value])

    def batch_set(self, keys: List[str], values: Optional[Any] = None,
                  target_locations: Optional[Any] = None, target_sizes: Optional[Any] = None) -> bool:
        pool = self._pool()
        if pool is None or values is None:
            return False
        items = [((hi, lo), v.detach().contiguous().view(torch.uint8).numpy())
                 for (hi, lo), v in zip(self.keys_of(keys).tolist(), values)]
        try:
            pool.put_many(items)
        except TokenmemError as e:
            if e.code == StatusCode.UNAVAILABLE or (
                    e.codes and StatusCode.UNAVAILABLE in e.codes):
                self.session.mark_broken(pool)
            return False
        except Exception:
            _log.exception("tokenmem: put failed")
            return False
        return True

    # -- lifetime ----------------------------------------------------------

    def clear(self) -> None:
        # The pool is shared and its keys cannot be listed from here; blocks
        # age out by the pool's eviction.
        _log.info("tokenmem: clear() leaves the pool as it is")

    def close(self) -> None:
        self.session.close()


__all__ = ["TokenmemHiCacheStorage", "UnsupportedHostPool"]
