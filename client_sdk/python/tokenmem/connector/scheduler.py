"""The scheduler side: how much of a request is stored, and what each step
loads and saves.

    n = sched.lookup(req, tokens, num_computed_tokens)  # tokens loadable
    sched.allocated(req, page_table, n)                  # after pages are assigned
    plan = sched.build_plan([(req, page_table, computed, scheduled)])
    ... worker side runs the plan ...
    sched.load_failed(req, valid_tokens)                 # a load fell short: recompute
    sched.finished(req)

Thread safety: one thread (the engine's scheduler) drives an instance.
"""

from typing import Dict, Iterable, Optional, Sequence, Tuple

import numpy as np

from ..client import lookup_prefix_raw
from .block_keys import KeySchedule
from .config import ConnectorConfig
from .plan import BlockRange, StepPlan
from .request_extras import RequestExtras
from .session import PoolSession


class _Request:
    __slots__ = ("keys", "num_tokens", "hit_blocks", "load_from", "load_pending", "saved_upto",
                 "local_tokens", "expected_computed")

    def __init__(self, keys: np.ndarray, num_tokens: int, local_tokens: int):
        self.keys = keys
        self.num_tokens = num_tokens
        self.hit_blocks = 0      # leading blocks stored in every layer (at lookup)
        self.load_from = 0       # first block to load (those below were in pages already)
        self.load_pending = False
        self.saved_upto = 0      # blocks below are stored or queued for saving
        self.local_tokens = local_tokens      # what the engine had in its own pages at lookup
        self.expected_computed = None         # computed tokens the next step should report


class ConnectorScheduler:
    def __init__(self, config: ConnectorConfig, num_layers: int, session: PoolSession,
                 page_tokens: Optional[int] = None, tp_ranks: Optional[Sequence[int]] = None):
        """tp_ranks: make keys of these tensor-parallel ranks (block_keys.py),
        so a block counts as stored only when every rank's shard is; plans
        then carry every rank's keys and each worker takes its columns."""
        self.config = config
        self.block_tokens = config.block_tokens
        page_tokens = page_tokens or config.block_tokens
        if config.block_tokens % page_tokens:
            raise ValueError("block_tokens must be a multiple of the engine's page size")
        self.pages_per_block = config.block_tokens // page_tokens
        self.session = session
        self.keys = KeySchedule(config, num_layers, tp_ranks)
        self.num_layers = self.keys.num_layers   # key columns per block
        self._requests: Dict[str, _Request] = {}
        self.lookups = 0
        self.hit_tokens = 0
        self.unaligned_local_hits = 0   # lookups that loaded nothing: local hit off the block grid

    # -- lookup ----------------------------------------------------------

    def lookup(self, request_id: str, token_ids: Sequence[int], num_computed_tokens: int = 0,
               extras: Optional[RequestExtras] = None) -> int:
        """How many tokens after num_computed_tokens (what the engine has in
        its own pages) can be loaded from tokenmem: a whole number of blocks,
        leaving at least the last prompt token to compute. One
        lookup_prefix over every layer's keys: a block counts only when
        all its layers are stored. extras: what else changes the request's
        KV (request_extras.py).

        Loads never touch pages below num_computed_tokens (the engine's own
        prefix cache may share them with other requests), so when that
        count is not on a block boundary nothing is loaded: the block
        holding it would have to be written whole."""
        keys = self.keys.keys(token_ids, extras)
        req = _Request(keys, len(token_ids), num_computed_tokens)
        self._requests[request_id] = req
        usable = (len(token_ids) - 1) // self.block_tokens if len(token_ids) else 0
        hit = 0
        pool = self.session.pool()
        if pool is not None and usable > 0:
            flat = np.ascontiguousarray(keys[:usable]).reshape(-1, 2)
            hit = lookup_prefix_raw(pool, flat.ctypes.data, len(flat)) // self.num_layers
        req.hit_blocks = hit
        req.saved_upto = hit
        self.lookups += 1
        if num_computed_tokens % self.block_tokens:
            self.unaligned_local_hits += 1
            return 0
        new = max(0, hit * self.block_tokens - num_computed_tokens)
        self.hit_tokens += new
        return new

    def allocated(self, request_id: str, num_external_tokens: int,
                  num_computed_tokens: Optional[int] = None) -> None:
        """The engine accepted num_external_tokens from lookup and gave the
        request pages; the next plan loads them, from num_computed_tokens
        on (None: the count the lookup was given, which is what engines
        that call this before updating the request mean)."""
        req = self._requests.get(request_id)
        if req is None or num_external_tokens <= 0:
            return
        if num_computed_tokens is None:
            num_computed_tokens = req.local_tokens
        if num_computed_tokens % self.block_tokens:
            raise ValueError("request %s: loads must start on a block boundary (%d computed tokens, "
                             "blocks of %d)" % (request_id, num_computed_tokens, self.block_tokens))
        req.load_from = num_computed_tokens // self.block_tokens
        req.hit_blocks = (num_computed_tokens + num_external_tokens) // self.block_tokens
        req.load_pending = req.hit_blocks > req.load_from

    # -- steps -----------------------------------------------------------

    def build_plan(self, scheduled: Iterable[Tuple[str, Sequence[int], int, int]]) -> StepPlan:
        """scheduled: (request_id, page_table, num_computed_tokens,
        num_scheduled_tokens) of each request in this step, page_table
        being the request's engine pages in token order and
        num_computed_tokens counting tokens loaded in this step."""
        plan = StepPlan()
        for request_id, page_table, computed, scheduled_tokens in scheduled:
            req = self._requests.get(request_id)
            if req is None:
                continue
            table = np.asarray(page_table, dtype=np.int64)
            if req.expected_computed is not None and computed < req.expected_computed:
                # The engine rolled the request back (its recovery after a
                # failed load): blocks from there are computed again and
                # must be saved again.
                req.saved_upto = min(req.saved_upto, computed // self.block_tokens)
            req.expected_computed = computed + scheduled_tokens
            if req.load_pending:
                req.load_pending = False
                plan.loads.append(self._range(request_id, req, table, req.load_from, req.hit_blocks))
            full = min((computed + scheduled_tokens) // self.block_tokens, len(req.keys))
            if full > req.saved_upto:
                plan.saves.append(self._range(request_id, req, table, req.saved_upto, full))
                req.saved_upto = full
        return plan

    def _range(self, request_id, req, table, start, end) -> BlockRange:
        k = self.pages_per_block
        pages = table[start * k:end * k].reshape(end - start, k)
        return BlockRange(request_id, req.keys[start:end], pages, start, self.block_tokens)

    def load_failed(self, request_id: str, valid_tokens: int) -> None:
        """Loads gave only valid_tokens: blocks from there are recomputed
        and saved again."""
        req = self._requests.get(request_id)
        if req is None:
            return
        blocks = valid_tokens // self.block_tokens
        req.hit_blocks = min(req.hit_blocks, blocks)
        req.saved_upto = min(req.saved_upto, blocks)
        req.load_pending = False

    def known(self, request_id: str) -> bool:
        return request_id in self._requests

    def hit_blocks(self, request_id: str) -> int:
        req = self._requests.get(request_id)
        return req.hit_blocks if req else 0

    def finished(self, request_id: str) -> None:
        self._requests.pop(request_id, None)


__all__ = ["ConnectorScheduler"]
