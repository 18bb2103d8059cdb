from .llm_args import KvCacheConfig, KvCacheConnectorConfig, TorchLlmArgs  # noqa: F401
