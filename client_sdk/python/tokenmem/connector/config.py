"""What a connector needs to know about the engine and the store.

ConnectorConfig names the model and everything that makes KV bytes differ
(weights, KV dtype and layout, parallel ranks, tokens per block): each goes
into the key namespace, so two engines share blocks only when their KV
bytes would be equal. Each layer has its own namespace (the layer index
goes into kv_layout), so every layer of a request is its own key chain and
can be loaded and saved on its own.
"""

import dataclasses
import os
from typing import Callable, Optional

from ..keys import Key, KeyNamespace, namespace_seed


@dataclasses.dataclass(frozen=True)
class ConnectorConfig:
    """Identity of the KV and where to keep it.

    model, revision: the weights (a revision also covers a seed, a
      fine-tune, a quantization of the weights).
    kv_dtype, kv_layout: how one page of KV is laid out in bytes
      (e.g. "float32", "[2,16,8,128]"); engines with different bytes must
      not share blocks.
    tp_rank/tp_size, pp_rank/pp_size: which shard of the KV this process holds.
    block_tokens: tokens per stored block (a multiple of the engine's page).
    pool: the tokenmem pool (None: TOKENMEM_DEFAULT_POOL).
    socket, lease: the agent's data socket and "ID:SECRET" (None: from the
      environment, TOKENMEM_AGENT_SOCKET and TOKENMEM_LEASE).
    agent_address: "host:port" of an agent's remote listener
      (docs/remote.md); when set, the connector reaches the agent over the
      remote path instead of a socket (socket is then ignored). The KV
      keys do not depend on the path, so blocks saved over one are found
      over the other.
    reconnect_interval_s: after the agent went away, how long to wait
      between attempts to connect again (requests meanwhile recompute).
    """

    model: str
    revision: str = ""
    kv_dtype: str = ""
    kv_layout: str = ""
    tp_rank: int = 0
    tp_size: int = 1
    pp_rank: int = 0
    pp_size: int = 1
    block_tokens: int = 16
    tenant_salt: str = ""
    pool: Optional[str] = None
    socket: Optional[str] = None
    lease: Optional[str] = None
    timeout_s: float = 10.0
    reconnect_interval_s: float = 1.0
    agent_address: Optional[str] = None

    def layer_namespace(self, layer: int) -> KeyNamespace:
        return KeyNamespace(
            model=self.model,
            revision=self.revision,
            kv_dtype=self.kv_dtype,
            kv_layout="%s;layer=%d" % (self.kv_layout, layer),
            tp_rank=self.tp_rank,
            tp_size=self.tp_size,
            pp_rank=self.pp_rank,
            pp_size=self.pp_size,
            block_tokens=self.block_tokens,
            tenant_salt=self.tenant_salt,
        )

    def layer_seed(self, layer: int) -> Key:
        return namespace_seed(self.layer_namespace(layer))


def default_connect(config: ConnectorConfig):
    """Connects and attaches as config says; returns (client, pool)."""
    from ..client import Client

    socket = config.socket or os.environ.get("TOKENMEM_AGENT_SOCKET")
    lease = config.lease or os.environ.get("TOKENMEM_LEASE")
    if config.agent_address:
        if not lease:
            raise ValueError("agent_address needs a lease (config.lease or TOKENMEM_LEASE)")
        client = Client.connect_remote(config.agent_address, lease, timeout=config.timeout_s)
    elif socket and lease:
        client = Client.connect(socket, lease, timeout=config.timeout_s)
    else:
        client = Client.from_env()
    try:
        pool = client.attach(config.pool)
    except Exception:
        client.close()
        raise
    return client, pool


Connect = Callable[[ConnectorConfig], tuple]
__all__ = ["ConnectorConfig", "default_connect"]
