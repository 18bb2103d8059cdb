"""SGLang's HiCache storage calls, replayed without SGLang.

What is imitated, and where it was read (sgl-project/sglang):
  - host KV pools and their layouts: MHA kv_buffer [2, L, tokens, H, D]
    (layer_first), [2, tokens, L, H, D] (page_first), [2, pages, L, P, H, D]
    (page_first_direct), [2, pages, H, P, L, D] (page_head); MLA [L, tokens,
    1, dim], [tokens, L, 1, dim], [pages, L, P, 1, dim]; flat data pages are
    the page's slice of kv_buffer flattened.
    python/sglang/srt/mem_cache/pool_host/mha.py @ 0047d999bb3a3ad311df5a4b6356bfb5586e0d66
    python/sglang/srt/mem_cache/pool_host/mla.py @ 01c0ede38cc9645488fd2847dbea8a2f6a9241d8
  - page hashes: a chain of get_hash_str over full pages, starting from the
    last hash of the prefix already cached (None at token 0).
    python/sglang/srt/mem_cache/hicache_storage.py @ bb424de23a4659f89cfd97dcad3aa1935a1e1d3e
  - the controller: storage config from the ranks (is_mla_model), backend
    made by StorageBackendFactory.create_backend(name, config, host pool) and
    then register_mem_pool_host; zero-copy get/set when the dynamic
    backend's extra_config has interface_v1; prefetch = batch_exists over
    batches of STORAGE_BATCH_SIZE pages stopping at the first short batch,
    MIN of the hit count over TP ranks, then page gets batch by batch that
    stop at the first page not returned, completed tokens MIN over ranks;
    backup = page sets batch by batch stopping at the first failed batch,
    skipped on MLA ranks other than 0.
    python/sglang/srt/managers/cache_controller.py @ 001067fffe33427bee0ed2f007fb7551a1d76b44
"""

import os
import sys
from typing import Callable, List, Optional, Sequence

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
for p in (os.path.join(HERE, "standins", "sglang"), os.path.join(os.path.dirname(os.path.dirname(HERE)),
                                                         "client_sdk", "python")):
    if p not in sys.path:
        sys.path.insert(0, p)

from sglang.srt.mem_cache.hicache_storage import (  # noqa: E402
    STORAGE_BATCH_SIZE, HiCacheStorageConfig, HiCacheStorageExtraInfo, get_hash_str)
from sglang.srt.mem_cache.storage import StorageBackendFactory  # noqa: E402

MHA_LAYOUTS = ("layer_first", "page_first", "page_first_direct", "page_head")
MLA_LAYOUTS = ("layer_first", "page_first", "page_first_direct")


def page_hashes(tokens: Sequence[int], page_size: int, last_hash: Optional[str] = None) -> List[str]:
    out = []
    for start in range(0, len(tokens) - page_size + 1, page_size):
        last_hash = get_hash_str(tokens[start:start + page_size], last_hash)
        out.append(last_hash)
    return out


class HostPool:
    """A host KV pool: kv_buffer in one of SGLang's layouts, page-aligned
    token slots. MHA pools hold K and V of head_num heads of head_dim;
    MLA pools one latent vector of head_dim per token and layer."""

    def __init__(self, layers: int, head_num: int, head_dim: int, pages: int, page_size: int,
                 layout: str, mla: bool = False, dtype=torch.float32):
        self.layer_num, self.head_num, self.head_dim = layers, head_num, head_dim
        self.page_size, self.page_num, self.size = page_size, pages, pages * page_size
        self.layout, self.mla, self.dtype = layout, mla, dtype
        L, S, P, H, D = layers, self.size, page_size, head_num, head_dim
        if mla:
            dims = {"layer_first": (L, S, 1, D), "page_first": (S, L, 1, D),
                    "page_first_direct": (pages, L, P, 1, D)}[layout]
        else:
            dims = {"layer_first": (2, L, S, H, D), "page_first": (2, S, L, H, D),
                    "page_first_direct": (2, pages, L, P, H, D),
                    "page_head": (2, pages, H, P, L, D)}[layout]
        self.kv_buffer = torch.zeros(dims, dtype=dtype)
        self.free_slots = list(range(0, self.size, page_size))

    def alloc(self, tokens: int) -> Optional[torch.Tensor]:
        n = tokens // self.page_size
        if n > len(self.free_slots):
            return None
        starts, self.free_slots = self.free_slots[:n], self.free_slots[n:]
        return torch.cat([torch.arange(s, s + self.page_size) for s in starts]) if n else \
            torch.empty(0, dtype=torch.int64)

    def free(self, indices: torch.Tensor) -> None:
        self.free_slots.extend(indices[::self.page_size].tolist())

    # Page-level views, as the controller's generic path uses them.
    def _page_slice(self, index: int):
        p = index // self.page_size
        s = slice(index, index + self.page_size)
        if self.mla:
            return {"layer_first": (slice(None), s), "page_first": (s,),
                    "page_first_direct": (slice(p, p + 1),)}[self.layout]
        return {"layer_first": (slice(None), slice(None), s), "page_first": (slice(None), s),
                "page_first_direct": (slice(None), slice(p, p + 1)),
                "page_head": (slice(None), slice(p, p + 1))}[self.layout]

    def get_data_page(self, index: int, flat: bool = True) -> torch.Tensor:
        page = self.kv_buffer[self._page_slice(int(index))]
        return page.flatten() if flat else page

    def get_dummy_flat_data_page(self) -> torch.Tensor:
        return torch.zeros(self.get_data_page(0).numel(), dtype=self.dtype)

    def set_from_flat_data_page(self, index: int, data: torch.Tensor) -> None:
        view = self.kv_buffer[self._page_slice(int(index))]
        view.copy_(data.reshape(view.shape))

    # Token-level access for one layer (the device<->host copies).
    def _token_index(self, layer: int, idx: torch.Tensor, kv: int):
        page, off = idx // self.page_size, idx % self.page_size
        if self.mla:
            return {"layer_first": (layer, idx), "page_first": (idx, layer),
                    "page_first_direct": (page, layer, off)}[self.layout]
        return {"layer_first": (kv, layer, idx), "page_first": (kv, idx, layer),
                "page_first_direct": (kv, page, layer, off),
                "page_head": (kv, page, slice(None), off, layer)}[self.layout]

    def write_tokens(self, layer: int, idx: torch.Tensor, k: torch.Tensor, v=None) -> None:
        self.kv_buffer[self._token_index(layer, idx, 0)] = k
        if not self.mla:
            self.kv_buffer[self._token_index(layer, idx, 1)] = v

    def read_tokens(self, layer: int, idx: torch.Tensor):
        k = self.kv_buffer[self._token_index(layer, idx, 0)]
        return k if self.mla else (k, self.kv_buffer[self._token_index(layer, idx, 1)])


class Controller:
    """One TP rank's HiCacheController, storage side only."""

    def __init__(self, host_pool: HostPool, backend: str = "dynamic", extra_config=None,
                 tp_rank: int = 0, tp_size: int = 1, model_name: str = "refllama"):
        self.host = host_pool
        self.page_size = host_pool.page_size
        self.extra_config = dict(extra_config or {})
        self.config = HiCacheStorageConfig(
            tp_rank=tp_rank, tp_size=tp_size, pp_rank=0, pp_size=1, attn_cp_rank=0,
            attn_cp_size=1, is_mla_model=host_pool.mla, enable_storage_metrics=False,
            is_page_first_layout=host_pool.layout == "page_first", model_name=model_name,
            extra_config=self.extra_config)
        self.backup_skip = host_pool.mla and tp_rank != 0
        self.storage = StorageBackendFactory.create_backend(backend, self.config, host_pool)
        self.storage.register_mem_pool_host(host_pool)
        self.zero_copy = backend == "dynamic" and bool(self.extra_config.get("interface_v1", 0))

    # -- prefetch ----------------------------------------------------------

    def hit_query(self, tokens, last_hash=None):
        """(hashes of the leading pages storage holds, their token count)."""
        hashes = page_hashes(tokens, self.page_size, last_hash)
        hits = []
        for start in range(0, len(hashes), STORAGE_BATCH_SIZE):
            batch = hashes[start:start + STORAGE_BATCH_SIZE]
            n = self.storage.batch_exists(batch, HiCacheStorageExtraInfo())
            hits.extend(batch[:n])
            if n < len(batch):
                break
        return hits, len(hits) * self.page_size

    def page_transfer(self, hashes: List[str], host_indices: torch.Tensor) -> int:
        """Pages read into host_indices, batch by batch, up to the first miss."""
        done = 0
        P = self.page_size
        for start in range(0, len(hashes), STORAGE_BATCH_SIZE):
            batch = hashes[start:start + STORAGE_BATCH_SIZE]
            idx = host_indices[start * P:(start + len(batch)) * P]
            hit = self._page_get(batch, idx)
            done += hit
            if hit != len(batch):
                break
        return done

    def _page_get(self, hashes, idx) -> int:
        if self.zero_copy:
            results = self.storage.batch_get_v1(hashes, idx, HiCacheStorageExtraInfo())
            count = 0
            for ok in results:
                if not ok:
                    break
                count += 1
            return count
        pages = self.storage.batch_get(hashes, [self.host.get_dummy_flat_data_page()
                                                for _ in hashes])
        count = 0
        for i, page in enumerate(pages or []):
            if page is None:
                break
            self.host.set_from_flat_data_page(int(idx[i * self.page_size]), page)
            count += 1
        return count

    # -- backup ------------------------------------------------------------

    def backup(self, host_indices: torch.Tensor, tokens, last_hash=None) -> int:
        """Tokens written to storage from host_indices (full pages of tokens)."""
        if self.backup_skip:
            return 0
        hashes = page_hashes(tokens, self.page_size, last_hash)
        done, P = 0, self.page_size
        for start in range(0, len(hashes), STORAGE_BATCH_SIZE):
            batch = hashes[start:start + STORAGE_BATCH_SIZE]
            idx = host_indices[start * P:(start + len(batch)) * P]
            if self.zero_copy:
                ok = all(self.storage.batch_set_v1(batch, idx, HiCacheStorageExtraInfo()))
            else:
                ok = self.storage.batch_set(batch, [self.host.get_data_page(int(idx[i * P]))
                                                    for i in range(len(batch))])
            if not ok:
                break
            done += len(batch) * P
        return done

    def close(self):
        self.storage.close()


def prefetch(ranks: List[Controller], tokens, between: Optional[Callable[[int], None]] = None):
    """A prefetch across TP ranks: [(host_indices, completed tokens)] per rank.
    between(hit_tokens) runs after the existence checks, before the reads."""
    queried = [c.hit_query(tokens) for c in ranks]
    hit = min(t for _, t in queried)                 # all_reduce MIN
    if between is not None:
        between(hit)
    out = []
    for c, (hashes, _) in zip(ranks, queried):
        hashes = hashes[:hit // c.page_size]
        idx = c.host.alloc(hit)
        out.append((idx, c.page_transfer(hashes, idx) * c.page_size))
    done = min(t for _, t in out) if out else 0      # all_reduce MIN
    return [(idx, done) for idx, _ in out]
