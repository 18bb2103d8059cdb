"""Stand-in: the package exports the factory, as upstream's does
(python/sglang/srt/mem_cache/storage/__init__.py; HiCacheController imports
StorageBackendFactory from here)."""

from .backend_factory import StorageBackendFactory

__all__ = ["StorageBackendFactory"]
