"""TensorRT-LLM's side of a KV cache connector, replayed without the engine.

The stand-in package (standins/trtllm) provides the interface modules and
KvCacheConnectorConfig; this file is the executor: a block manager with its
own block reuse, chunked prefill, the connector manager's calls in the
engine's order, and the KV pool layout the worker is given. Model compute
reuses refmodel's weights and arithmetic, with the KV heads split over TP
ranks, each rank's heads in its own pool. Each imitated behaviour cites the
upstream file and commit it was read from.
"""

import importlib
import math
import os
import pickle
import sys
from typing import Dict, List, Optional

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "standins", "trtllm")
if STANDIN not in sys.path:
    sys.path.insert(0, STANDIN)

import torch  # noqa: E402
from refmodel import Weights, _rms_norm, _rope, _rope_table  # noqa: E402
from tensorrt_llm import _utils  # noqa: E402

CTX, DONE = "CONTEXT_INIT", "GENERATION_COMPLETE"


class Request:
    """The LlmRequest fields the connector path reads."""

    def __init__(self, request_id: int, tokens: List[int], chunk: int):
        self.request_id = request_id
        self.py_request_id = request_id
        self.tokens = list(tokens)
        self.prompt_len = len(tokens)
        self.context_current_position = 0
        self.context_chunk_size = min(chunk, self.prompt_len)
        self.state = CTX
        self.is_generation_only_request = False
        self.blocks: List[int] = []
        self.logits: List[torch.Tensor] = []
        self.first_computed = None

    def get_tokens(self, beam: int) -> List[int]:
        return list(self.tokens)

    @property
    def context_remaining_length(self) -> int:
        return self.prompt_len - self.context_current_position

    def set_prepopulated_prompt_len(self, n: int, tokens_per_block: int) -> None:
        # cpp/include/tensorrt_llm/batch_manager/llmRequest.h @ d879430b040ea30c65220c9171a8a70607398748:
        # setPrepopulatedPromptLen checks n < prompt length, moves the context
        # position to n and shortens the chunk so that it ends on a block boundary.
        assert n < self.prompt_len, "prepopulatedPromptLen >= promptLen"
        if n > 0:
            chunk = self.context_chunk_size
            if n + chunk < self.prompt_len:
                chunk = (n + chunk) // tokens_per_block * tokens_per_block - n
            self.context_current_position = n
            # setContextChunkSize clamps to the remaining length.
            self.context_chunk_size = min(chunk, self.prompt_len - n)


class BlockManager:
    """Device blocks with prefix reuse: full blocks of finished contexts stay
    matchable until their block is needed again (LRU)."""

    def __init__(self, num_blocks: int, tokens_per_block: int, reuse: bool = True):
        self.tpb = tokens_per_block
        self.reuse = reuse
        self.free = list(range(num_blocks))
        self.refs: Dict[int, int] = {}
        self.by_prefix: Dict[tuple, int] = {}   # token prefix ending a block -> block
        self.prefix_of: Dict[int, tuple] = {}
        self.reused: Dict[int, List[int]] = {}  # request -> blocks it shares

    def add_sequence(self, req: Request) -> int:
        # cpp/tensorrt_llm/batch_manager/kvCacheManager.cpp @ b35ac1b64368513d215c57d2ed01d62d910df8da:
        # addSequence matches the prompt but its last token against stored
        # blocks (loadOrAllocateBlocks), allocates the rest, and returns the
        # matched length, which it then passes to the connector.
        n, matched = req.prompt_len, []
        if self.reuse:
            for b in range((n - 1) // self.tpb):
                block = self.by_prefix.get(tuple(req.tokens[:(b + 1) * self.tpb]))
                if block is None:
                    break
                matched.append(block)
        for block in matched:
            if block in self.free:
                self.free.remove(block)
            self.refs[block] = self.refs.get(block, 0) + 1
        fresh = [self._take() for _ in range(-(-n // self.tpb) - len(matched))]
        req.blocks = matched + fresh
        self.reused[req.request_id] = matched
        return len(matched) * self.tpb

    def _take(self) -> int:
        block = self.free.pop(0)   # least recently freed first: evicts old reusable blocks
        prefix = self.prefix_of.pop(block, None)
        if prefix is not None:
            del self.by_prefix[prefix]
        self.refs[block] = 1
        return block

    def store_context(self, req: Request) -> None:
        # kvCacheManager.cpp @ b35ac1b6...: the context's full blocks become
        # reusable once the context phase is done (storeContextBlocks).
        if not self.reuse:
            return
        for b, block in enumerate(req.blocks[:req.prompt_len // self.tpb]):
            prefix = tuple(req.tokens[:(b + 1) * self.tpb])
            if prefix not in self.by_prefix and block not in self.prefix_of:
                self.by_prefix[prefix] = block
                self.prefix_of[block] = prefix

    def release(self, req: Request) -> None:
        for block in req.blocks:
            self.refs[block] -= 1
            if self.refs[block] == 0:
                self.free.append(block)


class ConnectorManager:
    """KvCacheConnectorManager's bookkeeping, in the engine's call order."""

    def __init__(self, schedulers, workers):
        self.scheduler = schedulers
        self.workers = workers          # rank -> worker
        self.external_loads: Dict[int, int] = {}
        self.seen: Dict[int, int] = {}  # request -> block ids already reported
        self.new_saving: Dict[int, Request] = {}
        self.pending: Dict[int, Request] = {}
        self.local_done = {r: set() for r in workers}
        self.calls: List[str] = []

    def on_leader(self, f):
        # kv_cache_connector.py @ 5a06f334...: _run_on_leader runs the scheduler
        # on rank 0 and broadcasts the (pickled) result to every rank.
        return pickle.loads(pickle.dumps(f()))

    def get_num_new_matched_tokens(self, req: Request, computed: int) -> int:
        self.calls.append("get_num_new_matched_tokens")
        n, is_async = self.on_leader(lambda: self.scheduler.get_num_new_matched_tokens(req, computed))
        assert not is_async, "the harness replays synchronous loads only"
        self.external_loads[req.request_id] = n
        return n

    def update_state_after_alloc(self, req: Request) -> None:
        self.calls.append("update_state_after_alloc")
        self.scheduler.update_state_after_alloc(req, list(req.blocks))

    def build_scheduler_output(self, context_requests: List[Request]):
        # kv_cache_connector.py @ 00fdcbff...: KvCacheConnectorSchedulerOutputManager:
        # new_block_ids are the blocks since the request's last appearance (all
        # of them the first time); computed_position is context_current_position
        # less the connector's matched tokens on the first appearance;
        # num_scheduled_tokens = min(remaining, chunk).
        from tensorrt_llm._interface import RequestData, SchedulerOutput

        out = SchedulerOutput()
        for req in context_requests:
            is_new = req.request_id not in self.seen
            start = self.seen.get(req.request_id, 0)
            self.seen[req.request_id] = len(req.blocks)
            pos = req.context_current_position - self.external_loads.pop(req.request_id, 0)
            data = RequestData(req.request_id, req.tokens if is_new else [], req.blocks[start:], pos,
                               min(req.context_remaining_length, req.context_chunk_size))
            (out.new_requests if is_new else out.cached_requests).append(data)
        return out

    def handle_metadata(self, scheduler_output) -> None:
        self.calls.append("build_connector_meta")
        meta = self.on_leader(lambda: self.scheduler.build_connector_meta(scheduler_output))
        for w in self.workers.values():
            w.bind_connector_meta(meta)

    def request_finished(self, req: Request) -> bool:
        self.calls.append("request_finished")
        saving = self.on_leader(lambda: self.scheduler.request_finished(req, list(req.blocks)))
        if saving:
            self.new_saving[req.request_id] = req
        return saving

    def get_finished(self) -> List[Request]:
        # kv_cache_connector.py @ 00fdcbff...: new saving requests are passed
        # once to every worker's get_finished; ids a worker returns are taken
        # out of the pending set (an id returned twice, or never passed in,
        # is a KeyError there); a request is done once every rank returned it.
        self.calls.append("get_finished")
        new = list(self.new_saving)
        self.pending.update(self.new_saving)
        self.new_saving = {}
        for rank, w in self.workers.items():
            _utils.set_rank(rank)
            saved, loaded = w.get_finished(new, [])
            assert not loaded
            for rid in saved:
                if rid not in self.pending or rid in self.local_done[rank]:
                    raise KeyError("rank %d reported request %s finished again or unasked" % (rank, rid))
                self.local_done[rank].add(rid)
        _utils.set_rank(0)
        done = set.intersection(*self.local_done.values())
        for rank in self.local_done:
            self.local_done[rank] -= done
        return [self.pending.pop(rid) for rid in sorted(done)]


def load_connector(config):
    """What py_executor_creator does with a KvCacheConnectorConfig."""
    # tensorrt_llm/_torch/pyexecutor/py_executor_creator.py @ bab0f2e6eea19bcce16c805101420ef7d9d62d75:
    # import_module(connector_module); getattr both class names; worker_cls(llm_args)
    # on every rank, scheduler_cls(llm_args) on rank 0 only.
    module = importlib.import_module(config.connector_module)
    return (getattr(module, config.connector_scheduler_class),
            getattr(module, config.connector_worker_class))


class Engine:
    """Executor loop over context requests (each ends after its prompt)."""

    def __init__(self, cfg, llm_args=None, tp: int = 1, num_blocks: int = 64, chunk: int = 16,
                 reuse: bool = True, weights: Optional[Weights] = None, worker_hook=None):
        self.cfg, self.tp, self.chunk = cfg, tp, chunk
        self.tpb = cfg.page_tokens
        self.w = weights or Weights(cfg)
        self.kvh = cfg.kv_heads // tp
        self.bm = BlockManager(num_blocks, self.tpb, reuse)
        # kvCacheManager.cpp @ b35ac1b6...: the primary pool is
        # [blocks, layers, kv factor, tokens_per_block * heads * head_dim];
        # each rank's pool holds its own KV heads.
        # tensorrt_llm/_torch/pyexecutor/resource_manager.py @ d2a5560abdadfbdf496ce057696103e0509a71ed:
        # get_buffers views a layer as [blocks, kv factor, tokens, heads, head_dim].
        self.pools = [torch.zeros(num_blocks, cfg.layers, 2, self.tpb * self.kvh * cfg.head_dim,
                                  dtype=cfg.dtype) for _ in range(tp)]
        self.manager = None
        if llm_args is not None:
            sched_cls, worker_cls = load_connector(llm_args.kv_connector_config)
            workers = {}
            for rank in range(tp):
                _utils.set_rank(rank)
                workers[rank] = worker_cls(llm_args)
                # tensorrt_llm/_torch/pyexecutor/py_executor.py @ 9521caf4696c1fb79b0f946f0d980f8f0ebd3e64:
                # register_kv_caches(kv_cache_manager.get_unique_primary_pool())
                # once, then a pre-hook (wait_for_layer_load) and a post-hook
                # (save_kv_layer) on every decoder layer; no pipeline parallelism.
                workers[rank].register_kv_caches(self.pools[rank])
            _utils.set_rank(0)
            self.manager = ConnectorManager(sched_cls(llm_args), workers)
        self.worker_hook = worker_hook
        self.waiting: List[Request] = []
        self.active: List[Request] = []
        self.saving: List[Request] = []
        self.done: List[Request] = []

    def layer_view(self, rank: int, layer: int):
        return self.pools[rank][:, layer].view(-1, 2, self.tpb, self.kvh, self.cfg.head_dim)

    def submit(self, req: Request) -> None:
        self.waiting.append(req)

    def step(self) -> None:
        mgr = self.manager
        for req in self.waiting:   # resource_manager prepare_resources, first chunk
            # resource_manager.py @ d2a5560a...: add_sequence (the C++ side asks the
            # connector inside it), then update_state_after_alloc(req, all block ids).
            reused = self.bm.add_sequence(req)
            matched = mgr.get_num_new_matched_tokens(req, reused) if mgr else 0
            req.set_prepopulated_prompt_len(reused + matched, self.tpb)
            req.first_computed = req.context_current_position
            if mgr:
                mgr.update_state_after_alloc(req)
            self.active.append(req)
        self.waiting = []
        batch = list(self.active)
        if batch and mgr:
            mgr.handle_metadata(mgr.build_scheduler_output(batch))
        if batch:
            self.forward(batch)
        for req in batch:
            req.context_current_position += req.context_chunk_size
            req.context_chunk_size = min(self.chunk, req.context_remaining_length)
            if req.context_remaining_length == 0:
                req.state = DONE
                self.active.remove(req)
                self.bm.store_context(req)
                if mgr and mgr.request_finished(req):
                    self.saving.append(req)   # blocks stay until every rank is done
                else:
                    self.finish(req)
        if mgr:
            for req in mgr.get_finished():
                self.saving.remove(req)
                self.finish(req)

    def finish(self, req: Request) -> None:
        self.bm.release(req)
        self.done.append(req)

    def run(self, max_steps: int = 1000) -> None:
        for _ in range(max_steps):
            if not (self.waiting or self.active):
                return self.drain()
            self.step()
        raise RuntimeError("requests did not finish")

    def drain(self) -> None:
        """Waits for the workers' saves, then runs get_finished until quiet."""
        for _ in range(100):
            if not self.saving:
                return
            for w in self.manager.workers.values():
                w.impl.core.wait_for_save()
            self.step()
        raise RuntimeError("saves did not finish")

    # -- the forward, layer-major over the batch --------------------------

    @torch.no_grad()
    def forward(self, batch: List[Request]) -> None:
        cfg, w = self.cfg, self.w
        workers = self.manager.workers if self.manager else {}
        for rank, wk in workers.items():
            _utils.set_rank(rank)
            wk.start_load_kv(None)
        states = []
        for req in batch:
            start, T = req.context_current_position, req.context_chunk_size
            tokens = torch.tensor(req.tokens[start:start + T])
            pos = torch.arange(start, start + T)
            states.append((req, start, T, pos, _rope_table(pos, cfg.head_dim, cfg.rope_theta), w.embed[tokens]))
        xs = [s[5] for s in states]
        for l, lw in enumerate(w.layers):
            for rank, wk in workers.items():
                _utils.set_rank(rank)
                if self.worker_hook:
                    self.worker_hook("before", rank, l)
                wk.wait_for_layer_load(l, None)
            for i, (req, start, T, pos, (cos, sin), _) in enumerate(states):
                xs[i] = self.layer(l, lw, req, start, T, pos, cos, sin, xs[i])
            for rank, wk in workers.items():
                _utils.set_rank(rank)
                wk.save_kv_layer(l, None)
        for rank, wk in workers.items():
            _utils.set_rank(rank)
            wk.wait_for_save(None)
        _utils.set_rank(0)
        for (req, *_), x in zip(states, xs):
            req.logits.append((_rms_norm(x, w.final_norm, cfg.eps) @ w.lm_head).float())

    def layer(self, l, lw, req, start, T, pos, cos, sin, x):
        cfg = self.cfg
        end = start + T
        q_dim, kv_dim, group = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim, cfg.heads // cfg.kv_heads
        pages = torch.tensor(req.blocks[:-(-end // self.tpb)])
        slot_page, slot_off = pages[pos // self.tpb], pos % self.tpb
        mask = torch.full((T, end), float("-inf")).triu(start + 1).repeat(group, 1)
        h = _rms_norm(x, lw["attn_norm"], cfg.eps)
        qkv = h @ lw["wqkv"]
        q = _rope(qkv[:, :q_dim].reshape(T, cfg.heads, cfg.head_dim), cos, sin)
        k = _rope(qkv[:, q_dim:q_dim + kv_dim].reshape(T, cfg.kv_heads, cfg.head_dim), cos, sin)
        v = qkv[:, q_dim + kv_dim:].reshape(T, cfg.kv_heads, cfg.head_dim)
        outs = []
        for rank in range(self.tp):   # each rank: its KV heads and their query heads
            hs = slice(rank * self.kvh, (rank + 1) * self.kvh)
            kv = self.layer_view(rank, l)
            kv[slot_page, 0, slot_off] = k[:, hs]
            kv[slot_page, 1, slot_off] = v[:, hs]
            ctx = kv[pages].transpose(0, 1).reshape(2, -1, self.kvh, cfg.head_dim)[:, :end]
            keys, vals = ctx[0].permute(1, 2, 0), ctx[1].transpose(0, 1)
            qr = q[:, rank * self.kvh * group:(rank + 1) * self.kvh * group]
            qg = qr.reshape(T, self.kvh, group, cfg.head_dim).permute(1, 2, 0, 3)
            qg = qg.reshape(self.kvh, group * T, cfg.head_dim)
            scores = torch.baddbmm(mask.to(cfg.dtype), qg, keys, alpha=1.0 / math.sqrt(cfg.head_dim))
            probs = torch.softmax(scores.float(), dim=-1).to(cfg.dtype)
            attn = (probs @ vals).reshape(self.kvh, group, T, cfg.head_dim)
            outs.append(attn.permute(2, 0, 1, 3).reshape(T, -1))
        x = x + torch.cat(outs, dim=1) @ lw["wo"]
        h = _rms_norm(x, lw["mlp_norm"], cfg.eps)
        gate, up = (h @ lw["w_gate_up"]).split(cfg.ffn, dim=-1)
        return x + (torch.nn.functional.silu(gate) * up) @ lw["w_down"]

    def close(self) -> None:
        if self.manager:
            for w in self.manager.workers.values():
                w.impl.close()
            self.manager.scheduler.impl.close()
