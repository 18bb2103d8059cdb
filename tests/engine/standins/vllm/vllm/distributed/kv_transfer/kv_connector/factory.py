"""KVConnectorFactory.create_connector, as vLLM loads an out-of-tree connector.

vllm/distributed/kv_transfer/kv_connector/factory.py @ a4cd9d0d28bdb41db8dfe0acdafac2bf2f608630:
- a connector name not in the registry is looked up as a class of that
  name in importlib.import_module(kv_connector_module_path);
- a class whose constructor takes no kv_cache_config keyword is built as
  cls(config, role) (the deprecated signature), else as
  cls(config, role, kv_cache_config);
- with the hybrid KV cache manager enabled, a class that is not SupportsHMA
  is refused.
The legacy flavour (v0.10-era factory) always builds cls(config, role).
"""

import importlib
import inspect

from vllm import FLAVOR
from vllm.distributed.kv_transfer.kv_connector.v1.base import supports_hma


class KVConnectorFactory:
    @classmethod
    def create_connector(cls, config, role, kv_cache_config=None):
        ktc = config.kv_transfer_config
        if ktc is None or ktc.kv_connector is None:
            raise ValueError("kv_transfer_config.kv_connector must be set")
        if ktc.kv_connector_module_path is None:
            raise ValueError("Unsupported connector type: %s" % ktc.kv_connector)
        module = importlib.import_module(ktc.kv_connector_module_path)
        try:
            connector_cls = getattr(module, ktc.kv_connector)
        except AttributeError as e:
            raise AttributeError("Class %s not found in %s" % (ktc.kv_connector,
                                                               ktc.kv_connector_module_path)) from e
        if FLAVOR == "legacy":
            return connector_cls(config, role)
        hma_enabled = not config.scheduler_config.disable_hybrid_kv_cache_manager
        if hma_enabled and not supports_hma(connector_cls):
            raise ValueError("Connector %s does not support HMA but HMA is enabled."
                             % connector_cls.__name__)
        if "kv_cache_config" not in inspect.signature(connector_cls.__init__).parameters:
            return connector_cls(config, role)
        return connector_cls(config, role, kv_cache_config)
