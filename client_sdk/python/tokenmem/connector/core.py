"""One object for an engine that schedules and runs in the same process.

    conn = TokenmemConnector(config, kv_tensors_by_layer, page_tokens=16)
    n = conn.scheduler.lookup(req, tokens)
    ...
    conn.worker.bind(conn.scheduler.build_plan(...))

Split engines (scheduler and workers in different processes, as vLLM and
TensorRT-LLM run) make a ConnectorScheduler and a ConnectorWorker each with
its own PoolSession; StepPlan is what travels between them.
"""

from typing import Callable, Optional, Sequence

from .config import ConnectorConfig
from .layout import KVLayout
from .scheduler import ConnectorScheduler
from .session import PoolSession
from .worker import ConnectorWorker


class TokenmemConnector:
    def __init__(self, config: ConnectorConfig, kv_layers: Sequence[Sequence[object]],
                 page_tokens: Optional[int] = None,
                 connect: Optional[Callable[[ConnectorConfig], tuple]] = None):
        page_tokens = page_tokens or config.block_tokens
        self.config = config
        self.session = PoolSession(config, connect)
        self.layout = KVLayout(kv_layers, page_tokens, config.block_tokens)
        self.scheduler = ConnectorScheduler(config, self.layout.num_layers, self.session, page_tokens)
        self.worker = ConnectorWorker(self.layout, self.session)

    def close(self) -> None:
        self.worker.close()
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


__all__ = ["TokenmemConnector"]
