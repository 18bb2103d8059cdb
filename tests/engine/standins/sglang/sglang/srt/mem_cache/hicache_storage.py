"""Stand-in for the HiCache storage interface.

Read from python/sglang/srt/mem_cache/hicache_storage.py
@ 001067fffe33427bee0ed2f007fb7551a1d76b44 (config fields, abstract methods,
batch_exists default, register_mem_pool_host, v1 methods raising) and
@ bb424de23a4659f89cfd97dcad3aa1935a1e1d3e (get_hash_str, one page per call).
"""

import dataclasses
import hashlib
from abc import ABC, abstractmethod
from typing import Any, List, Optional

# Pages per batched storage call (same constant name and value upstream).
STORAGE_BATCH_SIZE = 128


def get_hash_str(token_ids: List[int], prior_hash: Optional[str] = None) -> str:
    """One page's hash: SHA-256 over the previous page's digest (bytes of its
    hex) and then every token id as 4 bytes little-endian unsigned; hex."""
    h = hashlib.sha256(bytes.fromhex(prior_hash) if prior_hash else b"")
    h.update(b"".join(int(t).to_bytes(4, "little", signed=False) for t in token_ids))
    return h.hexdigest()


@dataclasses.dataclass
class HiCacheStorageConfig:
    tp_rank: int
    tp_size: int
    pp_rank: int
    pp_size: int
    attn_cp_rank: int
    attn_cp_size: int
    is_mla_model: bool
    enable_storage_metrics: bool
    is_page_first_layout: bool
    model_name: Optional[str]
    dp_rank: int = 0
    dp_size: int = 1
    tp_lcm_size: Optional[int] = None
    should_split_heads: bool = False
    extra_config: Optional[dict] = None


@dataclasses.dataclass
class HiCacheStorageExtraInfo:
    prefix_keys: Optional[List[str]] = None
    extra_info: Optional[dict] = None


class HiCacheStorage(ABC):
    def register_mem_pool_host(self, mem_pool_host) -> None:
        self.mem_pool_host = mem_pool_host

    # Upstream raises here so that a backend lacking them fails loudly.
    def batch_get_v1(self, keys: List[str], host_indices, extra_info=None) -> List[bool]:
        raise NotImplementedError()

    def batch_set_v1(self, keys: List[str], host_indices, extra_info=None) -> List[bool]:
        raise NotImplementedError()

    @abstractmethod
    def get(self, key: str, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None):
        ...

    @abstractmethod
    def batch_get(self, keys: List[str], target_locations: Optional[Any] = None,
                  target_sizes: Optional[Any] = None):
        ...

    @abstractmethod
    def set(self, key: str, value: Optional[Any] = None, target_location: Optional[Any] = None,
            target_sizes: Optional[Any] = None) -> bool:
        ...

    @abstractmethod
    def batch_set(self, keys: List[str], values: Optional[Any] = None,
                  target_locations: Optional[Any] = None, target_sizes: Optional[Any] = None) -> bool:
        ...

    @abstractmethod
    def exists(self, key: str) -> bool:
        ...

    def batch_exists(self, keys: List[str], extra_info=None) -> int:
        """How many leading keys exist (stops at the first absent one)."""
        for i, key in enumerate(keys):
            if not self.exists(key):
                return i
        return len(keys)

    def clear(self) -> None:
        pass

    def get_stats(self):
        return None
