"""vLLM V1 as its KV connector meets it: the scheduler, its block manager
with a prefix cache, and one model runner per tensor-parallel rank,
replaying vLLM's call sequence on the stand-in modules of
standins/vllm (docs/engine-integration.md, "Proof without the engines").

Upstream files (github.com/vllm-project/vllm) and what is imitated:
- vllm/v1/core/sched/scheduler.py @ 00024d314514900f361ad072af6931e403b7f589:
  running requests first, preempting the last running one when slots run
  out (_preempt_request frees its blocks, sets num_computed_tokens to 0,
  puts it first in the waiting queue); waiting requests only when nothing
  was preempted; for a request with num_computed_tokens == 0, the local
  prefix-cache hit (get_computed_blocks) is passed to
  get_num_new_matched_tokens, allocate_slots gets the local and external
  counts, update_state_after_alloc(request, get_blocks(request_id),
  num_external) runs BEFORE request.num_computed_tokens is set;
  build_connector_meta after the SchedulerOutput is made; num_computed_tokens
  advanced in _update_after_schedule; invalid_block_ids handled by
  _update_requests_with_invalid_blocks (computed tokens truncated at the
  first failed block of the blocks below num_cached_tokens, the step's
  output for the request skipped) under kv_load_failure_policy "recompute";
  request_finished at finish, blocks freed when the workers report
  finished_sending.
- vllm/v1/core/kv_cache_utils.py @ bbf906a88ba1a39104884c88c9811a4f968e4659:
  prefix-cache block hashes and their extra keys (Request.block_hashes).
- vllm/v1/core/sched/output.py @ a9b169409e5f3a8fa67b462c064c4080e93b82b7:
  NewRequestData (block_ids a tuple of lists, num_computed_tokens),
  CachedRequestData (resumed_req_ids: new_block_ids replace the blocks;
  otherwise they are appended), SchedulerOutput.preempted_req_ids.
- vllm/v1/worker/kv_connector_model_runner_mixin.py @
  23ec7c7fab7aa8edb1c14195c048113e210683fa: per step bind_connector_metadata,
  start_load_kv, the forward (wait_for_layer_load before each attention
  layer, save_kv_layer after), wait_for_save, get_finished(finished_req_ids),
  get_block_ids_with_load_errors, clear_connector_metadata; and the v2
  runner (vllm/v1/worker/gpu/kv_connector.py, as quoted by the index) calls
  handle_preemptions(metadata) after binding and before start_load_kv.
- KV layouts: FlashAttention's (2, num_blocks, block_size, num_kv_heads,
  head_size) (vllm/v1/attention/backends/flash_attn.py @
  5704f34f361c6c59a9c092c4e1e96730cc6dc14d, get_kv_cache_shape); FlashInfer's
  (num_blocks, 2, block_size, num_kv_heads, head_size) allocated in HND
  stride order when get_kv_cache_layout() is "HND"
  (vllm/v1/attention/backends/flashinfer.py @
  5314c90d9f16e7c14523f496b0b8f883693951d4); MLA's latent
  (num_blocks, block_size, head_size); a kernel block size that divides
  the scheduler's block size, the tensor then holding ratio x num_blocks
  kernel pages.

The model is refmodel's weights run one token row at a time, so every
product has the same shape whatever the chunking, preemption or reuse:
logits with reuse are bitwise those of recompute in every schedule.
"""

import dataclasses
import importlib
import math
import os
import sys
import time
from collections import deque
from typing import Dict, List, Optional

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
STANDIN = os.path.join(HERE, "standins", "vllm")


def load_vllm(flavor: str = "current"):
    """Imports the stand-in vLLM of that flavour (fresh, with the adapter)."""
    os.environ["TM_VLLM_STANDIN"] = flavor
    if STANDIN not in sys.path:
        sys.path.insert(0, STANDIN)
    for name in list(sys.modules):
        if name == "vllm" or name.startswith("vllm.") or name == "tokenmem.connector.vllm_adapter":
            del sys.modules[name]
    importlib.import_module("vllm.distributed.kv_transfer.kv_connector.factory")
    return importlib.import_module("vllm")


# ---- configuration objects the connector reads ----------------------------

@dataclasses.dataclass
class ModelConfig:
    model: str
    dtype: torch.dtype
    heads: int
    kv_heads: int
    head_dim: int
    layers: int
    use_mla: bool = False
    latent_dim: int = 0
    revision: Optional[str] = None
    quantization: Optional[str] = None

    def get_head_size(self):
        return self.latent_dim if self.use_mla else self.head_dim

    def get_num_kv_heads(self, pc):
        return 1 if self.use_mla else max(1, self.kv_heads // pc.tensor_parallel_size)

    def get_total_num_hidden_layers(self):
        return self.layers


@dataclasses.dataclass
class CacheConfig:
    block_size: int = 16
    cache_dtype: str = "auto"
    enable_prefix_caching: bool = True
    num_gpu_blocks: int = 64


@dataclasses.dataclass
class ParallelConfig:
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1


@dataclasses.dataclass
class SchedulerConfig:
    max_num_batched_tokens: int = 16
    max_num_seqs: int = 8
    enable_chunked_prefill: bool = True
    disable_hybrid_kv_cache_manager: bool = True


@dataclasses.dataclass
class KVTransferConfig:
    kv_connector: str = "TokenmemConnectorV1"
    kv_connector_module_path: str = "tokenmem.connector.vllm_adapter"
    kv_role: str = "kv_both"
    kv_connector_extra_config: dict = dataclasses.field(default_factory=dict)
    kv_load_failure_policy: str = "recompute"
    engine_id: str = "harness"


@dataclasses.dataclass
class VllmConfig:
    model_config: ModelConfig
    cache_config: CacheConfig
    parallel_config: ParallelConfig
    scheduler_config: SchedulerConfig
    kv_transfer_config: Optional[KVTransferConfig]


# vllm/v1/kv_cache_interface.py: spec classes the connector tells apart by name.
@dataclasses.dataclass
class FullAttentionSpec:
    block_size: int
    num_kv_heads: int
    head_size: int
    dtype: torch.dtype


class MLAAttentionSpec(FullAttentionSpec):
    pass


@dataclasses.dataclass
class SlidingWindowSpec:
    block_size: int
    num_kv_heads: int
    head_size: int
    dtype: torch.dtype
    sliding_window: int = 128


@dataclasses.dataclass
class KVCacheGroupSpec:
    layer_names: List[str]
    kv_cache_spec: object


@dataclasses.dataclass
class KVCacheConfig:
    num_blocks: int
    kv_cache_groups: List[KVCacheGroupSpec]


# ---- requests ---------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class LoRARequest:
    lora_name: str
    lora_int_id: int


@dataclasses.dataclass(frozen=True)
class PlaceholderRange:
    offset: int
    length: int


@dataclasses.dataclass(frozen=True)
class MultiModalFeatureSpec:
    identifier: str
    mm_position: PlaceholderRange


WAITING, RUNNING, PREEMPTED, FINISHED = "WAITING", "RUNNING", "PREEMPTED", "FINISHED"


class Request:
    def __init__(self, request_id, prompt, max_tokens=4, cache_salt=None, lora=None,
                 images=(), legacy=False):
        self.request_id = request_id
        self.prompt_token_ids = list(prompt)
        self.output_token_ids: List[int] = []
        self.max_tokens = max_tokens
        self.cache_salt = cache_salt
        self.lora_request = lora
        self.images = list(images)   # [(offset, length, identifier)]
        if legacy:   # v0.10-era Request: parallel lists
            self.mm_hashes = [i for _, _, i in self.images]
            self.mm_positions = [PlaceholderRange(o, n) for o, n, _ in self.images]
        else:
            self.mm_features = [MultiModalFeatureSpec(i, PlaceholderRange(o, n)) for o, n, i in self.images]
        self.status = WAITING
        self.num_computed_tokens = 0
        self.num_cached_tokens = -1
        self.num_external_computed_tokens = 0
        self.num_preemptions = 0

    @property
    def all_token_ids(self):
        return self.prompt_token_ids + self.output_token_ids

    @property
    def num_tokens(self):
        return len(self.prompt_token_ids) + len(self.output_token_ids)

    def block_hashes(self, block_size):
        """Prefix-cache hashes of the full blocks, as
        vllm/v1/core/kv_cache_utils.py @ bbf906a88ba1a39104884c88c9811a4f968e4659
        makes them: hash_block_tokens(parent, the block's tokens, extra
        keys), where generate_block_hash_extra_keys adds the LoRA adapter
        (its id there, its name in later versions), the hashes of the
        multimodal inputs overlapping the block, and the cache salt on the
        block that starts at token 0."""
        out, parent = [], None
        toks = self.all_token_ids
        for b in range(len(toks) // block_size):
            lo, hi = b * block_size, (b + 1) * block_size
            extra = [i for o, n, i in self.images if o < hi and o + n > lo]
            if self.lora_request:
                extra.append(self.lora_request.lora_name)
            if b == 0 and self.cache_salt:
                extra.append(self.cache_salt)
            parent = hash((parent, tuple(toks[lo:hi]), tuple(extra)))
            out.append(parent)
        return out


# ---- block manager (KVCacheManager with a prefix cache) ---------------------

class KVCacheBlocks:
    def __init__(self, ids):
        self._ids = list(ids)

    def get_block_ids(self, allow_none=False):
        if allow_none and not self._ids:
            return None
        return (list(self._ids),)


class BlockManager:
    def __init__(self, num_blocks, block_size, caching=True):
        self.block_size = block_size
        self.caching = caching
        self.ref = [0] * num_blocks
        self.hash_of: Dict[int, int] = {}
        self.cached: Dict[int, int] = {}
        self.free = deque(range(num_blocks))   # LRU: reuse from the left
        self.blocks: Dict[str, List[int]] = {}
        self.handed_out: List[int] = []   # blocks given to a new owner this step

    def get_computed_blocks(self, req):
        if not self.caching:
            return [], 0
        hits = []
        limit = (req.num_tokens - 1) // self.block_size   # leave the last token to compute
        for h in req.block_hashes(self.block_size)[:limit]:
            b = self.cached.get(h)
            if b is None:
                break
            hits.append(b)
        return hits, len(hits) * self.block_size

    def allocate_slots(self, req, num_new_tokens, num_new_computed_tokens=0, new_computed_blocks=(),
                       num_external_computed_tokens=0):
        have = self.blocks.setdefault(req.request_id, [])
        total = req.num_computed_tokens + num_new_computed_tokens + num_external_computed_tokens + num_new_tokens
        need = -(-total // self.block_size) - len(have) - len(new_computed_blocks)
        free_after_touch = len(self.free) - sum(1 for b in new_computed_blocks if self.ref[b] == 0)
        if need > free_after_touch:
            if not have:
                del self.blocks[req.request_id]
            return None
        for b in new_computed_blocks:
            if self.ref[b] == 0:
                self.free.remove(b)
            self.ref[b] += 1
            have.append(b)
        for _ in range(max(0, need)):
            b = self.free.popleft()
            h = self.hash_of.pop(b, None)
            if h is not None and self.cached.get(h) == b:
                del self.cached[h]
            self.ref[b] = 1
            have.append(b)
            self.handed_out.append(b)
        # Blocks full after this step are cached now (their tokens are computed
        # in it): scheduler.py @ 00024d314514900f361ad072af6931e403b7f589 passes
        # allocate_slots delay_cache_blocks only for asynchronous loads.
        if self.caching:
            hashes = req.block_hashes(self.block_size)
            for i in range(min(total // self.block_size, len(hashes), len(have))):
                b = have[i]
                if b not in self.hash_of and hashes[i] not in self.cached:
                    self.hash_of[b] = hashes[i]
                    self.cached[hashes[i]] = b
        return KVCacheBlocks(have[len(have) - max(0, need):] if need > 0 else [])

    def get_blocks(self, request_id):
        return KVCacheBlocks(self.blocks.get(request_id, []))

    def free_request(self, req):
        # Freed tail first, so a prefix stays cached longest: "Free blocks in
        # reverse order so that the tail blocks are freed first"
        # (vllm/v1/core/single_type_kv_cache_manager.py, free(); commit
        # 129ab7c60cbb8eb11e875373e67f7e521b74aa30 as the index lists it,
        # the passage read from excerpts). The free queue hands out its
        # least recently freed block first.
        for b in reversed(self.blocks.pop(req.request_id, [])):
            self.ref[b] -= 1
            if self.ref[b] == 0:
                self.free.append(b)


# ---- scheduler --------------------------------------------------------------

@dataclasses.dataclass
class NewRequestData:
    req_id: str
    prompt_token_ids: List[int]
    block_ids: tuple
    num_computed_tokens: int
    lora_request: object = None


@dataclasses.dataclass
class CachedRequestData:
    req_ids: List[str]
    new_block_ids: List[Optional[tuple]]
    num_computed_tokens: List[int]
    resumed_req_ids: Optional[set] = None           # current vLLM
    resumed_from_preemption: Optional[List[bool]] = None   # v0.10-era


@dataclasses.dataclass
class SchedulerOutput:
    scheduled_new_reqs: List[NewRequestData]
    scheduled_cached_reqs: CachedRequestData
    num_scheduled_tokens: Dict[str, int]
    finished_req_ids: set
    preempted_req_ids: Optional[set] = None
    kv_connector_metadata: object = None


class Scheduler:
    def __init__(self, vcfg: VllmConfig, kv_cache_config: KVCacheConfig, legacy=False):
        from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
        from vllm.distributed.kv_transfer.kv_connector.v1 import KVConnectorRole

        self.cfg = vcfg
        self.legacy = legacy
        self.bs = vcfg.cache_config.block_size
        self.kv = BlockManager(kv_cache_config.num_blocks, self.bs, vcfg.cache_config.enable_prefix_caching)
        self.connector = None
        if vcfg.kv_transfer_config is not None:
            self.connector = KVConnectorFactory.create_connector(vcfg, KVConnectorRole.SCHEDULER,
                                                                 kv_cache_config)
        self.waiting: deque = deque()
        self.running: List[Request] = []
        self.requests: Dict[str, Request] = {}
        self.finished_req_ids: set = set()
        self.prev_scheduled: set = set()
        self.held: Dict[str, Request] = {}   # finished, blocks kept for saves
        self.preemptions = 0
        self.hits: Dict[str, tuple] = {}   # request -> (local, external) tokens at its last admission
        self.external_hits = 0
        self.local_hits = 0

    def add(self, req):
        self.requests[req.request_id] = req
        self.waiting.append(req)

    def has_work(self):
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        budget = self.cfg.scheduler_config.max_num_batched_tokens
        scheduled: Dict[str, int] = {}
        new_blocks: Dict[str, KVCacheBlocks] = {}
        running_sched, new_sched, resumed_sched, preempted = [], [], [], []
        i = 0
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            n = min(req.num_tokens - req.num_computed_tokens, budget)
            if n <= 0:
                i += 1
                continue
            while True:
                blocks = self.kv.allocate_slots(req, n)
                if blocks is not None:
                    break
                victim = self.running.pop()
                self._preempt(victim)
                preempted.append(victim)
                if victim in running_sched:
                    running_sched.remove(victim)
                    budget += scheduled.pop(victim.request_id)
                if victim is req:
                    break
            if blocks is None:
                break
            running_sched.append(req)
            new_blocks[req.request_id] = blocks
            scheduled[req.request_id] = n
            budget -= n
            i += 1
        if not preempted:
            while self.waiting and budget > 0 and len(self.running) < self.cfg.scheduler_config.max_num_seqs:
                req = self.waiting[0]
                ext = 0
                if req.num_computed_tokens == 0:
                    local_blocks, local = self.kv.get_computed_blocks(req)
                    if self.connector is not None:
                        ext, load_async = self.connector.get_num_new_matched_tokens(req, local)
                        assert load_async is False
                        req.num_external_computed_tokens = ext
                    computed = local + ext
                else:
                    local_blocks, local, computed = [], 0, req.num_computed_tokens
                n = min(req.num_tokens - computed, budget)
                blocks = self.kv.allocate_slots(req, n, local, local_blocks, ext)
                if blocks is None:
                    break
                if self.connector is not None:
                    self.connector.update_state_after_alloc(req, self.kv.get_blocks(req.request_id), ext)
                self.waiting.popleft()
                self.running.append(req)
                (new_sched if req.status == WAITING else resumed_sched).append(req)
                self.local_hits += local
                self.external_hits += ext
                self.hits[req.request_id] = (local, ext)
                scheduled[req.request_id] = n
                budget -= n
                req.status = RUNNING
                req.num_computed_tokens = computed
                if req.num_cached_tokens < 0:
                    req.num_cached_tokens = computed
        out = self._output(new_sched, running_sched, resumed_sched, scheduled, new_blocks, preempted)
        if self.connector is not None:
            out.kv_connector_metadata = self.connector.build_connector_meta(out)
        for rid, n in scheduled.items():
            self.requests[rid].num_computed_tokens += n
        self.prev_scheduled = set(scheduled)
        self.finished_req_ids = set()
        return out

    def _output(self, new_sched, running_sched, resumed_sched, scheduled, new_blocks, preempted):
        new = [NewRequestData(r.request_id, r.prompt_token_ids,
                              self.kv.get_blocks(r.request_id).get_block_ids(), r.num_computed_tokens,
                              r.lora_request) for r in new_sched]
        ids, blocks, computed, resumed = [], [], [], set()
        for r in running_sched + resumed_sched:
            ids.append(r.request_id)
            if r in resumed_sched:
                resumed.add(r.request_id)
                blocks.append(self.kv.get_blocks(r.request_id).get_block_ids())
            else:
                blocks.append(new_blocks[r.request_id].get_block_ids(allow_none=True))
            computed.append(r.num_computed_tokens)
        cached = CachedRequestData(ids, blocks, computed)
        if self.legacy:
            cached.resumed_from_preemption = [i in resumed for i in ids]
        else:
            cached.resumed_req_ids = resumed
        return SchedulerOutput(new, cached, scheduled, set(self.finished_req_ids),
                               None if self.legacy else {r.request_id for r in preempted})

    def _preempt(self, req):
        self.kv.free_request(req)
        req.status = PREEMPTED
        req.num_computed_tokens = 0
        req.num_preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(req)

    def update(self, out: SchedulerOutput, result) -> set:
        """Applies a step's result; returns the requests whose output was
        skipped because a load failed (they are recomputed)."""
        skip = set()
        if result.invalid_block_ids:
            skip = self._invalid_blocks(result.invalid_block_ids)
        for rid in out.num_scheduled_tokens:
            req = self.requests[rid]
            if rid in skip or req.status != RUNNING:
                continue
            token = result.sampled.get(rid)
            if token is None:
                continue   # a prefill chunk: no token yet
            req.output_token_ids.append(token)
            if len(req.output_token_ids) >= req.max_tokens:
                self._finish(req)
        if self.connector is not None:
            self.connector.update_connector_output(result)
        for rid in result.finished_sending or ():
            req = self.held.pop(rid)
            self.kv.free_request(req)
        return skip

    def _invalid_blocks(self, invalid):
        affected = set()
        for req in self.running:
            ids = self.kv.blocks.get(req.request_id, [])
            n = -(-req.num_cached_tokens // self.bs)
            for idx, b in zip(range(n), ids):
                if b in invalid:
                    req.num_computed_tokens = idx * self.bs
                    affected.add(req.request_id)
                    break
        return affected

    def _finish(self, req):
        self.running.remove(req)
        req.status = FINISHED
        self.finished_req_ids.add(req.request_id)
        delay = False
        if self.connector is not None:
            delay, _ = self.connector.request_finished(req, self.kv.get_blocks(req.request_id).get_block_ids()[0])
        if delay:
            self.held[req.request_id] = req
        else:
            self.kv.free_request(req)


# ---- model runner (one per TP rank) ----------------------------------------

@dataclasses.dataclass
class StepResult:
    sampled: Dict[str, int]
    logits: Dict[str, torch.Tensor]
    finished_sending: Optional[set]
    invalid_block_ids: set


def layer_name(l):
    return "model.layers.%d.self_attn.attn" % l


def make_kv(backend, layers, num_blocks, block_size, kv_heads, head_dim, dtype, kernel_block=None):
    """Per layer the tensor the backend allocates (logical shape, physical strides)."""
    kb = kernel_block or block_size
    n = num_blocks * (block_size // kb)
    out = {}
    for l in range(layers):
        if backend == "flash_attn":
            t = torch.zeros(2, n, kb, kv_heads, head_dim, dtype=dtype)
        elif backend == "flashinfer_nhd":
            t = torch.zeros(n, 2, kb, kv_heads, head_dim, dtype=dtype)
        elif backend == "flashinfer_hnd":
            t = torch.zeros(n, 2, kv_heads, kb, head_dim, dtype=dtype).permute(0, 1, 3, 2, 4)
        elif backend == "mla":
            t = torch.zeros(n, kb, head_dim, dtype=dtype)
        else:
            raise ValueError(backend)
        out[layer_name(l)] = t
    return out


class ModelWeights:
    """refmodel's weights, plus what LoRA adapters, images and an MLA
    latent cache need (all from fixed seeds)."""

    def __init__(self, cfg, mla_latent=0):
        from refmodel import Weights

        self.cfg = cfg
        self.w = Weights(cfg)
        self.latent = mla_latent
        if mla_latent:
            g = torch.Generator().manual_seed(cfg.seed + 7)
            qd = cfg.heads * cfg.head_dim
            self.mla = [{"wc": torch.randn(cfg.hidden, mla_latent, generator=g) / math.sqrt(cfg.hidden),
                         "wk": torch.randn(mla_latent, qd, generator=g) / math.sqrt(mla_latent),
                         "wv": torch.randn(mla_latent, qd, generator=g) / math.sqrt(mla_latent)}
                        for _ in range(cfg.layers)]

    def lora_delta(self, name):
        g = torch.Generator().manual_seed(abs(hash(("lora", name))) % (2**31))
        c = self.cfg
        cols = (c.heads + 2 * c.kv_heads) * c.head_dim
        return [(torch.randn(c.hidden, 2, generator=g) * 0.1) @ (torch.randn(2, cols, generator=g) * 0.1)
                for _ in range(c.layers)]

    def image_embedding(self, identifier, length):
        g = torch.Generator().manual_seed(abs(hash(("image", identifier))) % (2**31))
        return torch.randn(length, self.cfg.hidden, generator=g)


class ModelRunner:
    """One TP rank's worker: its KV tensors, its connector, its share of
    the KV heads (rank r holds heads [r*h, (r+1)*h))."""

    def __init__(self, vcfg, kv_cache_config, weights: ModelWeights, rank=0, backend="flash_attn",
                 kernel_block=None, legacy=False):
        from vllm.distributed import parallel_state
        from vllm.distributed.kv_transfer.kv_connector.factory import KVConnectorFactory
        from vllm.distributed.kv_transfer.kv_connector.v1 import KVConnectorRole

        self.cfg = weights.cfg
        self.w = weights
        self.rank = rank
        self.tp = vcfg.parallel_config.tensor_parallel_size
        self.legacy = legacy
        self.bs = vcfg.cache_config.block_size
        self.kb = kernel_block or self.bs
        self.mla = backend == "mla"
        c = self.cfg
        self.kvh = c.kv_heads // self.tp
        head = weights.latent if self.mla else c.head_dim
        self.kv = make_kv(backend, c.layers, kv_cache_config.num_blocks, self.bs,
                          self.kvh, head, c.dtype, kernel_block)
        self.backend = backend
        self.tables: Dict[str, List[int]] = {}
        self.connector = None
        if vcfg.kv_transfer_config is not None:
            parallel_state.set_tensor_model_parallel_rank(rank)
            self.connector = KVConnectorFactory.create_connector(vcfg, KVConnectorRole.WORKER,
                                                                 kv_cache_config)
            self.connector.register_kv_caches(self.kv)

    # -- page access through the tensors' logical shapes --

    def _slots(self, table, positions):
        blocks = torch.tensor([table[p // self.bs] for p in positions])
        pos = torch.tensor(positions)
        page = blocks * (self.bs // self.kb) + (pos % self.bs) // self.kb
        return page, pos % self.kb

    def write(self, l, table, p, entry):
        t = self.kv[layer_name(l)]
        page, off = self._slots(table, [p])
        if self.mla:
            t[page, off] = entry
        elif self.backend == "flash_attn":
            t[0, page, off], t[1, page, off] = entry
        else:
            t[page, 0, off], t[page, 1, off] = entry

    def read(self, l, table, end):
        t = self.kv[layer_name(l)]
        page, off = self._slots(table, list(range(end)))
        if self.mla:
            return t[page, off]
        if self.backend == "flash_attn":
            return t[0, page, off], t[1, page, off]
        return t[page, 0, off], t[page, 1, off]

    def scribble(self, block):
        """Pages of a block the manager hands out again: the next owner
        overwrites them (here at once, with NaN, so stale reads show)."""
        r = self.bs // self.kb
        for t in self.kv.values():
            for page in range(block * r, block * r + r):
                if self.backend == "flash_attn":
                    t[:, page] = float("nan")
                else:
                    t[page] = float("nan")

    # -- the step --

    def pre_forward(self, out: SchedulerOutput):
        for new in out.scheduled_new_reqs:
            self.tables[new.req_id] = list(new.block_ids[0])
        cd = out.scheduled_cached_reqs
        for i, rid in enumerate(cd.req_ids):
            resumed = (cd.resumed_from_preemption[i] if self.legacy else rid in cd.resumed_req_ids)
            if resumed:
                self.tables[rid] = list(cd.new_block_ids[i][0])
            elif cd.new_block_ids[i] is not None:
                self.tables[rid].extend(cd.new_block_ids[i][0])
        if self.connector is not None:
            self.connector.bind_connector_metadata(out.kv_connector_metadata)
            if not self.legacy:
                self.connector.handle_preemptions(out.kv_connector_metadata)

    def start_load(self):
        if self.connector is not None:
            self.connector.start_load_kv(None)

    def post_forward(self, out: SchedulerOutput):
        if self.connector is None:
            return None, set()
        self.connector.wait_for_save()
        sending, _ = self.connector.get_finished(out.finished_req_ids)
        invalid = self.connector.get_block_ids_with_load_errors()
        self.connector.clear_connector_metadata()
        return sending, invalid


class Engine:
    """The scheduler and one runner per rank, stepping together; the
    runners' outputs aggregated as vLLM's KVOutputAggregator does (a
    request finished sending once every rank said so; invalid blocks
    united)."""

    def __init__(self, weights, model_name="refllama", tp=1, backend="flash_attn", kernel_block=None,
                 num_blocks=64, budget=16, caching=True, connector=True, extra=None, legacy=False,
                 mla=False, hybrid=False):
        c = weights.cfg
        mc = ModelConfig(model_name, c.dtype, c.heads, c.kv_heads, c.head_dim, c.layers,
                         use_mla=mla, latent_dim=weights.latent, revision="seed-%d" % c.seed)
        ktc = KVTransferConfig(kv_connector_extra_config=dict(extra or {})) if connector else None
        self.vcfg = VllmConfig(mc, CacheConfig(16, "auto", caching, num_blocks), ParallelConfig(tp),
                               SchedulerConfig(budget), ktc)
        names = [layer_name(l) for l in range(c.layers)]
        head = weights.latent if mla else c.head_dim
        spec = (MLAAttentionSpec(16, 1, head, c.dtype) if mla
                else FullAttentionSpec(16, c.kv_heads // tp, head, c.dtype))
        groups = [KVCacheGroupSpec(names, spec)]
        if hybrid:
            groups = [KVCacheGroupSpec(names[:1], spec),
                      KVCacheGroupSpec(names[1:], SlidingWindowSpec(16, c.kv_heads // tp, head, c.dtype))]
        self.kcfg = KVCacheConfig(num_blocks, groups)
        self.w = weights
        self.legacy = legacy
        self.runners = [ModelRunner(self.vcfg, self.kcfg, weights, r, backend, kernel_block, legacy)
                        for r in range(tp)]
        self.scheduler = Scheduler(self.vcfg, self.kcfg, legacy)
        self.logits: Dict[str, List[torch.Tensor]] = {}
        self._sending: Dict[str, int] = {}
        self.loads_failed = 0
        self.steps = 0
        self.before_forward = None   # tests inject faults between scheduling and the forward

    def request(self, rid, prompt, **kw):
        req = Request(rid, prompt, legacy=self.legacy, **kw)
        self.scheduler.add(req)
        return req

    def run(self, timeout_s=30.0):
        deadline = time.monotonic() + timeout_s
        while self.scheduler.has_work() or self.scheduler.held:
            out = self.step()
            if not out.num_scheduled_tokens:
                time.sleep(0.001)   # only saves in flight: vLLM's idle steps poll too
            if time.monotonic() > deadline:
                raise RuntimeError("the engine did not finish in %.0f s" % timeout_s)

    def step(self):
        self.steps += 1
        out = self.scheduler.schedule()
        for r in self.runners:
            r.pre_forward(out)
        # The runner prepares the pages it was handed (vLLM's v2 runner
        # zeroes them; here NaN, so a save still reading a freed page stores
        # garbage a test will see) before loads fill them.
        for b in self.scheduler.kv.handed_out:
            for r in self.runners:
                r.scribble(b)
        self.scheduler.kv.handed_out = []
        for r in self.runners:
            r.start_load()
        if self.before_forward is not None:
            self.before_forward(out)
        sampled, logits = self._forward(out)
        finished, invalid = set(), set()
        for r in self.runners:
            sending, bad = r.post_forward(out)
            invalid |= bad
            for rid in sending or ():
                self._sending[rid] = self._sending.get(rid, 0) + 1
                if self._sending[rid] == len(self.runners):
                    finished.add(rid)
                    del self._sending[rid]
        if invalid:
            self.loads_failed += 1
        skipped = self.scheduler.update(out, StepResult(sampled, logits, finished or None, invalid))
        for rid, lg in logits.items():
            if rid not in skipped:   # vLLM drops the outputs of a step it recomputes
                self.logits.setdefault(rid, []).append(lg)
        return out

    # -- the forward: layer-major over the batch, one token row at a time --

    @torch.no_grad()
    def _forward(self, out):
        c, W = self.w.cfg, self.w.w
        reqs = []
        for rid, n in out.num_scheduled_tokens.items():
            req = self.scheduler.requests[rid]
            start = req.num_computed_tokens - n   # schedule() already advanced it
            toks = req.all_token_ids[start:start + n]
            x = W.embed[torch.tensor(toks)].clone()
            for o, ln, ident in req.images:
                emb = self.w.image_embedding(ident, ln)
                for i in range(n):
                    if o <= start + i < o + ln:
                        x[i] = x[i] + emb[start + i - o]
            lora = self.w.lora_delta(req.lora_request.lora_name) if req.lora_request else None
            reqs.append((rid, start, n, x, lora))
        qd = c.heads * c.head_dim
        kvd = c.kv_heads * c.head_dim
        group = c.heads // c.kv_heads
        for l, lw in enumerate(W.layers):
            for r in self.runners:
                if r.connector is not None:
                    r.connector.wait_for_layer_load(layer_name(l))
            for rid, start, n, x, lora in reqs:
                for i in range(n):
                    p = start + i
                    x[i] = self._token_layer(l, lw, rid, p, x[i], lora, qd, kvd, group)
            for r in self.runners:
                if r.connector is not None:
                    r.connector.save_kv_layer(layer_name(l), r.kv[layer_name(l)], None)
        from refmodel import _rms_norm

        sampled, logits = {}, {}
        for rid, start, n, x, lora in reqs:
            req = self.scheduler.requests[rid]
            if start + n >= req.num_tokens:
                lg = (_rms_norm(x[n - 1:n], W.final_norm, c.eps) @ W.lm_head).float()[0]
                logits[rid] = lg
                sampled[rid] = int(lg.argmax())
        return sampled, logits

    def _token_layer(self, l, lw, rid, p, x, lora, qd, kvd, group):
        from refmodel import _rms_norm, _rope, _rope_table

        c = self.w.cfg
        h = _rms_norm(x[None], lw["attn_norm"], c.eps)
        cos, sin = _rope_table(torch.tensor([p]), c.head_dim, c.rope_theta)
        outs = []
        if self.runners[0].mla:
            m = self.w.mla[l]
            q = _rope((h @ lw["wqkv"])[:, :qd].reshape(1, c.heads, c.head_dim), cos, sin)[0]
            lat = (h @ m["wc"])[0]
            for r in self.runners:   # the latent is replicated on every rank
                table = r.tables[rid]
                r.write(l, table, p, lat)
                ctx = r.read(l, table, p + 1)
            cs, sn = _rope_table(torch.arange(p + 1), c.head_dim, c.rope_theta)
            k = _rope((ctx @ m["wk"]).reshape(p + 1, c.heads, c.head_dim), cs, sn)
            v = (ctx @ m["wv"]).reshape(p + 1, c.heads, c.head_dim)
            for hd in range(c.heads):
                s = (q[hd:hd + 1] @ k[:, hd].T) / math.sqrt(c.head_dim)
                outs.append(torch.softmax(s.float(), -1).to(c.dtype) @ v[:, hd])
        else:
            w = lw["wqkv"] if lora is None else lw["wqkv"] + lora[l]
            qkv = h @ w
            q = _rope(qkv[:, :qd].reshape(1, c.heads, c.head_dim), cos, sin)[0]
            k = _rope(qkv[:, qd:qd + kvd].reshape(1, c.kv_heads, c.head_dim), cos, sin)[0]
            v = qkv[:, qd + kvd:].reshape(c.kv_heads, c.head_dim)
            for r in self.runners:
                lo, hi = r.rank * r.kvh, (r.rank + 1) * r.kvh
                table = r.tables[rid]
                r.write(l, table, p, (k[lo:hi], v[lo:hi]))
                kc, vc = r.read(l, table, p + 1)
                for kh in range(r.kvh):
                    for g in range(group):
                        hd = (lo + kh) * group + g
                        s = (q[hd:hd + 1] @ kc[:, kh].T) / math.sqrt(c.head_dim)
                        outs.append(torch.softmax(s.float(), -1).to(c.dtype) @ vc[:, kh])
        x = x + (torch.cat(outs, -1) @ lw["wo"])[0]
        hm = _rms_norm(x[None], lw["mlp_norm"], c.eps)
        gate, up = (hm @ lw["w_gate_up"]).split(c.ffn, dim=-1)
        return x + ((torch.nn.functional.silu(gate) * up) @ lw["w_down"])[0]

    def close(self):
        for r in self.runners:
            if r.connector is not None:
                r.connector.shutdown()
        if self.scheduler.connector is not None:
            self.scheduler.connector.shutdown()
