from .base import KVConnectorBase_V1, KVConnectorMetadata, KVConnectorRole  # noqa: F401
