"""tokenmem.connector: reuse stored KV in an inference engine.

Engine-neutral core (this package needs numpy, and torch for the KV
tensors): token IDs become per-layer chains of block keys
(ConnectorScheduler.lookup answers how many leading tokens are stored with
one lookup_prefix); each step's StepPlan says which blocks to load into
which pages and which new full blocks to save; ConnectorWorker moves them
layer by layer with the scatter-gather calls, loading ahead of the forward
and saving behind it. A block that is missing or fails is recomputed,
never used. See docs/engine-integration.md.

Adapters for engines, imported only on demand (the engines are optional):
tokenmem.connector.vllm_adapter, tokenmem.connector.trtllm_adapter.
"""

from .config import ConnectorConfig, default_connect
from .core import TokenmemConnector
from .layout import KVLayout
from .plan import BlockRange, StepPlan
from .scheduler import ConnectorScheduler
from .session import PoolSession
from .worker import ConnectorWorker, TransferStats

__all__ = [
    "BlockRange",
    "ConnectorConfig",
    "ConnectorScheduler",
    "ConnectorWorker",
    "KVLayout",
    "PoolSession",
    "StepPlan",
    "TokenmemConnector",
    "TransferStats",
    "default_connect",
]
