"""Shared set-up for the engine tests and the benchmark: a real agent, a
lease, and engines whose connector talks to it."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
for p in (HERE, os.path.join(REPO, "client_sdk", "python")):
    if p not in sys.path:
        sys.path.insert(0, p)

import torch  # noqa: E402

from agent_harness import Agent  # noqa: E402
from refmodel import Engine, Model, ModelConfig  # noqa: E402
from tokenmem.connector import ConnectorConfig, TokenmemConnector  # noqa: E402


def connector_config(agent: Agent, cfg: ModelConfig, remote=False, **over) -> ConnectorConfig:
    """remote: reach the agent over its remote listener (Agent(remote=True))
    instead of its data socket."""
    fields = dict(
        model="refllama",
        revision="seed-%d" % cfg.seed,
        kv_dtype=cfg.kv_dtype_name,
        kv_layout=cfg.kv_layout,
        block_tokens=16,
        pool=agent.pool,
        socket=agent.data,
        lease=agent.lease,
        timeout_s=5.0,
        reconnect_interval_s=0.0,
    )
    if remote:
        if agent.address is None:
            raise RuntimeError("the agent has no remote listener (Agent(remote=True))")
        fields.update(socket=None, agent_address=agent.address)
    fields.update(over)
    return ConnectorConfig(**fields)


def make_engine(agent: Agent, cfg: ModelConfig, num_pages=256, chunk_tokens=16, model=None,
                **config_over) -> Engine:
    ccfg = connector_config(agent, cfg, **config_over)
    return Engine(cfg, num_pages,
                  lambda cache: TokenmemConnector(ccfg, cache.tensors_by_layer(), cfg.page_tokens),
                  chunk_tokens=chunk_tokens, model=model)


def plain_engine(cfg: ModelConfig, num_pages=256, chunk_tokens=16, model=None) -> Engine:
    return Engine(cfg, num_pages, None, chunk_tokens=chunk_tokens, model=model)


def kv_block_bytes(cfg: ModelConfig, block_tokens=16) -> int:
    return block_tokens * 2 * cfg.kv_heads * cfg.head_dim * torch.tensor([], dtype=cfg.dtype).element_size()
