"""The llm_args fields a connector reads.

# tensorrt_llm/llmapi/llm_args.py @ fcd3f31682808ae56118ae43c1d7864a3a945e6f:
# KvCacheConnectorConfig names connector_module, connector_scheduler_class and
# connector_worker_class (a preset name `connector` fills them); all three are
# required once presets are resolved. No free-form extra-config dict exists.
"""

import dataclasses
from typing import Optional


@dataclasses.dataclass
class KvCacheConnectorConfig:
    connector_module: Optional[str] = None
    connector_scheduler_class: Optional[str] = None
    connector_worker_class: Optional[str] = None
    connector: Optional[str] = None
    server_url: Optional[str] = None

    def __post_init__(self):
        for field in ("connector_module", "connector_scheduler_class", "connector_worker_class"):
            if getattr(self, field) is None:
                raise ValueError("%s is required" % field)


@dataclasses.dataclass
class KvCacheConfig:
    tokens_per_block: int = 32
    dtype: str = "auto"
    enable_block_reuse: bool = True
    enable_partial_reuse: bool = False


@dataclasses.dataclass
class TorchLlmArgs:
    model: str = ""
    revision: Optional[str] = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    kv_cache_config: KvCacheConfig = dataclasses.field(default_factory=KvCacheConfig)
    kv_connector_config: Optional[KvCacheConnectorConfig] = None
