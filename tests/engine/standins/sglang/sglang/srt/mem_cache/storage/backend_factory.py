"""Stand-in for the storage backend factory.

Read from python/sglang/srt/mem_cache/storage/backend_factory.py
@ 001067fffe33427bee0ed2f007fb7551a1d76b44: a registry of named backends,
and the "dynamic" backend whose extra_config names backend_name,
module_path and class_name; the class must subclass HiCacheStorage and is
built as cls(storage_config, kwargs) (kwargs: a dict, here empty), the host
pool being handed over afterwards by register_mem_pool_host.
"""

import importlib
from typing import Any, Dict

from sglang.srt.mem_cache.hicache_storage import HiCacheStorage, HiCacheStorageConfig


class StorageBackendFactory:
    _registry: Dict[str, Dict[str, str]] = {}

    @staticmethod
    def _load_backend_class(module_path: str, class_name: str, backend_name: str):
        try:
            cls = getattr(importlib.import_module(module_path), class_name)
        except ImportError as e:
            raise ImportError("Failed to import backend '%s' from '%s': %s"
                              % (backend_name, module_path, e)) from e
        except AttributeError as e:
            raise AttributeError("Class '%s' not found in module '%s': %s"
                                 % (class_name, module_path, e)) from e
        if not issubclass(cls, HiCacheStorage):
            raise TypeError("Backend class %s must inherit from HiCacheStorage" % class_name)
        return cls

    @classmethod
    def register_backend(cls, name: str, module_path: str, class_name: str) -> None:
        cls._registry[name] = {"module_path": module_path, "class_name": class_name}

    @classmethod
    def create_backend(cls, backend_name: str, storage_config: HiCacheStorageConfig,
                       mem_pool_host: Any, **kwargs) -> HiCacheStorage:
        if backend_name in cls._registry:
            entry = cls._registry[backend_name]
            backend = cls._load_backend_class(entry["module_path"], entry["class_name"],
                                              backend_name)
            # Built-in backends that take the host pool get it second.
            return backend(storage_config, mem_pool_host)
        if backend_name == "dynamic" and storage_config.extra_config is not None:
            conf = storage_config.extra_config
            for field in ("backend_name", "module_path", "class_name"):
                if field not in conf:
                    raise ValueError("Missing required field '%s' in backend config for "
                                     "'dynamic' backend" % field)
            backend = cls._load_backend_class(conf["module_path"], conf["class_name"],
                                              conf["backend_name"])
            return backend(storage_config, kwargs)
        raise ValueError("Unknown storage backend '%s'. Registered backends: %s. "
                         % (backend_name, list(cls._registry)))
