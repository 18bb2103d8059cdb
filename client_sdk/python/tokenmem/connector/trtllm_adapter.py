"""tokenmem as a TensorRT-LLM KV cache connector (PyTorch backend).

    kv_connector_config:
      connector_module: tokenmem.connector.trtllm_adapter
      connector_scheduler_class: TokenmemScheduler
      connector_worker_class: TokenmemWorker

TensorRT-LLM imports connector_module and looks both classes up by name,
then builds each as cls(llm_args): the scheduler on rank 0 only, a worker
on every rank. The classes are made on first attribute access (module
__getattr__), so importing this module never needs TensorRT-LLM; they
subclass the interface from tensorrt_llm._torch.pyexecutor.connectors
.kv_cache_connector (current releases) or ...pyexecutor.kv_cache_connector
(older ones). Everything else comes from llm_args and the environment
(docs/engines/trtllm.md).

Accounting. TensorRT-LLM calls get_num_new_matched_tokens(request,
reused) right after its own block reuse matched `reused` tokens, then
moves the request's context position to reused + the answer, and only then
calls update_state_after_alloc. The answer counts tokens loaded into pages
beyond `reused`; the pages below hold the engine's shared, reused blocks
and are never written.

Loads cannot be reported as failed to the engine: once the answer is
given, the engine treats those tokens as computed. So the answer is
conservative: a block counts only when every layer of every rank's shard is
stored, and it is pinned in the store until the request finishes, which
removes eviction from the window between lookup and load. What remains (an
explicit remove, the agent restarting, a corrupt block) is detected by the
worker: it fails the step (TOKENMEM_TRTLLM_ON_LOAD_FAILURE=raise, the
default) rather than let attention read pages that were not filled.
"""

import dataclasses
import json
import logging
import os
from typing import Dict, List, Optional, Tuple

from .config import ConnectorConfig
from .plan import StepPlan

_log = logging.getLogger("tokenmem.connector")

_INTERFACES = (
    "tensorrt_llm._torch.pyexecutor.connectors.kv_cache_connector",   # current
    "tensorrt_llm._torch.pyexecutor.kv_cache_connector",              # older releases
)
KV_LAYOUT = "trtllm:[blocks,layers,kv,tokens*heads*dim]"
_DTYPES = {"fp16": "float16", "half": "float16", "float16": "float16",
           "bf16": "bfloat16", "bfloat16": "bfloat16", "fp32": "float32", "float32": "float32",
           "fp8": "float8_e4m3fn", "float8_e4m3fn": "float8_e4m3fn"}


def _interface():
    import importlib

    errors = []
    for name in _INTERFACES:
        try:
            return importlib.import_module(name)
        except ImportError as e:
            errors.append("%s: %s" % (name, e))
    raise ImportError("TensorRT-LLM's KV cache connector interface was not found (%s)"
                      % "; ".join(errors))


# -- configuration ---------------------------------------------------------

def _get(obj, *path, default=None):
    for name in path:
        obj = getattr(obj, name, None) if obj is not None else None
    return default if obj is None else obj


def _model_json(llm_args) -> dict:
    model = str(_get(llm_args, "model", default=""))
    path = os.path.join(model, "config.json")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def _dtype_name(name: str) -> str:
    return _DTYPES.get(str(name).replace("torch.", "").lower(), "")


def resolve(llm_args, rank: Optional[int] = None) -> Tuple[ConnectorConfig, int, int]:
    """(ConnectorConfig, number of layers, tokens per engine block) from llm_args and TOKENMEM_*.
    rank: the MPI rank of a worker (None: the scheduler's view, rank 0)."""
    env = os.environ.get
    hf = _model_json(llm_args)
    tp = int(env("TOKENMEM_TP_SIZE") or _get(llm_args, "tensor_parallel_size", default=1))
    pp = int(env("TOKENMEM_PP_SIZE") or _get(llm_args, "pipeline_parallel_size", default=1))
    if pp != 1:
        # TensorRT-LLM refuses the connector with pipeline parallelism too.
        raise NotImplementedError("tokenmem: pipeline parallelism is not supported by TensorRT-LLM's connector")
    page = int(_get(llm_args, "kv_cache_config", "tokens_per_block", default=0)
               or _get(llm_args, "tokens_per_block", default=32))
    dtype = (env("TOKENMEM_KV_DTYPE") or _dtype_name(_get(llm_args, "kv_cache_config", "dtype", default=""))
             or _dtype_name(hf.get("torch_dtype", "")))
    layers = int(env("TOKENMEM_NUM_LAYERS") or hf.get("num_hidden_layers", 0))
    rank = rank or 0
    cfg = ConnectorConfig(
        model=env("TOKENMEM_MODEL") or str(_get(llm_args, "model", default="")),
        revision=env("TOKENMEM_REVISION") or str(_get(llm_args, "revision", default="")),
        kv_dtype=dtype, kv_layout=KV_LAYOUT,
        tp_rank=int(env("TOKENMEM_TP_RANK") or rank % tp), tp_size=tp, pp_rank=0, pp_size=1,
        block_tokens=int(env("TOKENMEM_BLOCK_TOKENS") or page),
        tenant_salt=env("TOKENMEM_TENANT_SALT") or "",
        pool=env("TOKENMEM_POOL") or None, socket=env("TOKENMEM_AGENT_SOCKET") or None,
        lease=env("TOKENMEM_LEASE") or None, agent_address=env("TOKENMEM_AGENT_ADDRESS") or None)
    if not cfg.model or not dtype or layers < 1:
        raise ValueError("tokenmem: cannot name the KV (model %r, dtype %r, layers %d): set "
                         "TOKENMEM_MODEL / TOKENMEM_KV_DTYPE / TOKENMEM_NUM_LAYERS"
                         % (cfg.model, dtype, layers))
    return cfg, layers, page


# -- scheduler side ----------------------------------------------------------

@dataclasses.dataclass
class Metadata:
    """What build_connector_meta hands every worker: one plan per TP rank."""
    plans: Dict[int, StepPlan]


class _Req:
    def __init__(self, reused: int, matched: int, pinned: List[tuple]):
        self.reused, self.matched, self.pinned = reused, matched, pinned
        self.table: List[int] = []
        self.first = True
        self.saves = False


class SchedulerImpl:
    """The scheduler side, engine-free: one ConnectorScheduler per TP rank
    (each rank's shard has its own keys), one session for all."""

    def __init__(self, config: ConnectorConfig, num_layers: int, page_tokens: int, connect=None):
        from .scheduler import ConnectorScheduler
        from .session import PoolSession

        self.config = config
        self.session = PoolSession(config, connect)
        self.cores = {r: ConnectorScheduler(dataclasses.replace(config, tp_rank=r), num_layers,
                                            self.session, page_tokens)
                      for r in range(config.tp_size)}
        self.block_tokens = config.block_tokens
        self._reqs: Dict[str, _Req] = {}
        self._pins: Dict[tuple, int] = {}   # key -> requests holding its pin
        self.pin_shortened = 0

    def matched(self, rid: str, tokens, reused: int) -> int:
        self._release(rid)
        if reused % self.block_tokens:   # partial block reuse: its pages are shared, not loaded
            for core in self.cores.values():
                core.finished(rid)
            return 0
        n = min(core.lookup(rid, tokens, reused) for core in self.cores.values())
        pinned = []
        if n > 0:
            n, pinned = self._pin(tokens, reused // self.block_tokens, (reused + n) // self.block_tokens)
            n = max(0, n - reused)
        for core in self.cores.values():   # every rank saves again what is not promised
            core.load_failed(rid, reused + n)
        self._reqs[rid] = _Req(reused, n, pinned)
        return n

    def _pin(self, tokens, start, end):
        """Pins blocks [start, end) of every rank; returns (tokens now safe
        to promise, pinned keys). A block that is gone ends the promise."""
        pool = self.session.pool()
        chains = [core.keys.keys(tokens) for core in self.cores.values()]
        keys = []
        for b in range(start, end):
            for chain in chains:
                keys += [(int(hi), int(lo)) for hi, lo in chain[b].reshape(-1, 2)]
        per_block = len(keys) // (end - start)
        try:
            ok = pool.pin_many(keys) if pool is not None else [False] * len(keys)
        except Exception as e:   # UNAVAILABLE and the like: promise nothing
            _log.warning("tokenmem: pin failed (%s); recomputing", e)
            ok = [False] * len(keys)
        good = end - start
        for i, flag in enumerate(ok):
            if not flag:
                good = min(good, i // per_block)
        if good < end - start:
            self.pin_shortened += 1
        pinned = [k for k, flag in zip(keys, ok) if flag]
        for k in pinned:
            self._pins[k] = self._pins.get(k, 0) + 1
        return (start + good) * self.block_tokens, pinned

    def _release(self, rid):
        req = self._reqs.pop(rid, None)
        if req is None or not req.pinned:
            return
        last = [k for k in req.pinned if self._pins.get(k, 0) <= 1]
        for k in req.pinned:
            self._pins[k] -= 1
            if self._pins[k] <= 0:
                del self._pins[k]
        pool = self.session.pool()
        if pool is not None and last:
            try:
                pool.unpin_many(last)
            except Exception as e:   # the agent went away: its pins went with it
                _log.warning("tokenmem: unpin failed (%s)", e)

    def allocated(self, rid: str, block_ids, position: int) -> None:
        req = self._reqs.get(rid)
        if req is None:
            return
        req.table = list(block_ids)
        if position != req.reused + req.matched:
            _log.warning("tokenmem: request %s starts at %d, expected %d", rid, position,
                         req.reused + req.matched)
        for core in self.cores.values():
            core.allocated(rid, req.matched, req.reused)

    def plan(self, new_requests, cached_requests) -> Metadata:
        steps = []
        for data, is_new in [(d, True) for d in new_requests] + [(d, False) for d in cached_requests]:
            rid = str(data.request_id)
            req = self._reqs.get(rid)
            if req is None:
                continue
            if is_new:   # new requests carry every block id, cached ones the new ones
                req.table = list(data.new_block_ids)
            else:
                req.table.extend(data.new_block_ids)
            computed = data.computed_position
            if req.first:   # the engine leaves our tokens out of a new request's position
                computed += req.matched
                req.first = False
            steps.append((rid, req.table, computed, data.num_scheduled_tokens))
        plans = {r: core.build_plan(steps) for r, core in self.cores.items()}
        for p in plans.values():
            for s in p.saves:
                self._reqs[s.request_id].saves = True
        return Metadata(plans)

    def finished(self, rid: str) -> bool:
        req = self._reqs.get(rid)
        saves = req is not None and req.saves
        self._release(rid)
        for core in self.cores.values():
            core.finished(rid)
        return saves

    def close(self):
        self.session.close()


# -- worker side ---------------------------------------------------------------

def kv_layers(pool, num_layers: Optional[int], page_tokens: int, dtype: str):
    """Per-layer views of TensorRT-LLM's KV pool, checked against its shape
    and strides: [blocks, layers, kv factor (2, or 1 for K only), block
    elements], each (block, layer) slab contiguous."""
    import torch

    if not isinstance(pool, torch.Tensor):
        raise ValueError("tokenmem: register_kv_caches got %s, not a pool tensor; this layout "
                         "(e.g. KVCacheManagerV2's KvCacheLayout) is not supported" % type(pool).__name__)
    shape, strides = tuple(pool.shape), pool.stride()
    if pool.dim() != 4 or shape[2] not in (1, 2):
        raise ValueError("tokenmem: unknown KV pool layout %s (expected [blocks, layers, 1|2, elements])"
                         % (shape,))
    if strides[3] != 1 or strides[2] != shape[3] or strides[1] < shape[2] * shape[3]:
        raise ValueError("tokenmem: a (block, layer) slab of the KV pool is not contiguous "
                         "(shape %s, strides %s)" % (shape, strides))
    if shape[3] % page_tokens:
        raise ValueError("tokenmem: block elements %d are not a multiple of tokens_per_block %d"
                         % (shape[3], page_tokens))
    if num_layers is not None and shape[1] != num_layers:
        raise ValueError("tokenmem: the KV pool has %d layers, the model %d" % (shape[1], num_layers))
    got = str(pool.dtype).replace("torch.", "")
    if dtype and got != dtype and not (dtype.startswith("float8") and got in ("uint8", "int8")):
        raise ValueError("tokenmem: the KV pool holds %s, the key namespace says %s "
                         "(set TOKENMEM_KV_DTYPE)" % (got, dtype))
    return [[pool[:, l]] for l in range(shape[1])]


class LoadFailed(RuntimeError):
    """A planned load fell short: the engine would read unfilled pages."""


class WorkerImpl:
    def __init__(self, config: ConnectorConfig, num_layers: Optional[int], page_tokens: int,
                 connect=None, on_failure: Optional[str] = None):
        self.config, self.num_layers, self.page_tokens = config, num_layers, page_tokens
        self.rank = config.tp_rank
        self.on_failure = on_failure or os.environ.get("TOKENMEM_TRTLLM_ON_LOAD_FAILURE", "raise")
        self._connect = connect
        self.core = None
        self._ids: Dict[str, object] = {}   # str id -> the engine's id, for requests saving
        self._failed: Dict[str, int] = {}
        self._seen_failures = 0
        self.failed_requests: List[str] = []

    def register(self, pool) -> None:
        from .layout import KVLayout
        from .session import PoolSession
        from .worker import ConnectorWorker

        layers = kv_layers(pool, self.num_layers, self.page_tokens, self.config.kv_dtype)
        layout = KVLayout(layers, self.page_tokens, self.config.block_tokens)
        self.core = ConnectorWorker(layout, PoolSession(self.config, self._connect))

    def start(self, metadata) -> None:
        plan = metadata.plans.get(self.rank) if isinstance(metadata, Metadata) else None
        self.core.bind(plan or StepPlan())
        self._seen_failures = self.core.stats.load_failures
        self.core.start_load()

    def wait_layer(self, layer: int) -> None:
        self.core.wait_for_layer_load(layer)
        if self.core.stats.load_failures != self._seen_failures:
            self._check()

    def save_layer(self, layer: int) -> None:
        self.core.save_layer(layer)

    def end_step(self) -> None:
        self._check()

    def _check(self):
        failed = self.core.take_load_failures()
        self._seen_failures = self.core.stats.load_failures
        if not failed:
            return
        self._failed.update(failed)
        self.failed_requests += list(failed)
        msg = ("tokenmem: KV of request(s) %s could not be loaded after the engine counted it "
               "as computed" % sorted(failed))
        if self.on_failure == "raise":
            raise LoadFailed(msg + "; failing the step")
        _log.error(msg)

    def take_failed(self) -> set:
        out = set(self._failed)
        self._failed.clear()
        return out

    def finished(self, finished_gen_req_ids) -> list:
        """Each request is returned once: at once when it has no save in
        flight, else from the call after its last save ended."""
        done = []
        for rid in finished_gen_req_ids:
            if self.core is not None and self.core.finish_request(str(rid)):
                self._ids[str(rid)] = rid
            else:
                done.append(rid)
        if self.core is not None:
            done += [self._ids.pop(r) for r in self.core.get_finished() if r in self._ids]
        return done

    def close(self):
        if self.core is not None:
            self.core.close()
            self.core.session.close()


# -- TensorRT-LLM classes ------------------------------------------------------------

def _mpi_rank() -> int:
    try:
        from tensorrt_llm._utils import mpi_rank
        return int(mpi_rank())
    except ImportError:
        return 0


def _make_classes(fixed: Optional[tuple] = None):
    iface = _interface()

    def settings(llm_args, rank):
        if fixed is not None:
            cfg, layers, page = fixed
            return dataclasses.replace(cfg, tp_rank=rank % cfg.tp_size), layers, page
        return resolve(llm_args, rank)

    class TokenmemScheduler(iface.KvCacheConnectorScheduler):
        def __init__(self, llm_args=None):
            super().__init__(llm_args)
            cfg, layers, page = settings(llm_args, 0)
            self.impl = SchedulerImpl(cfg, layers, page)

        def get_num_new_matched_tokens(self, request, num_computed_tokens):
            tokens = list(request.get_tokens(0))
            return self.impl.matched(str(request.request_id), tokens, int(num_computed_tokens)), False

        def update_state_after_alloc(self, request, block_ids):
            self.impl.allocated(str(request.request_id), block_ids, request.context_current_position)

        def build_connector_meta(self, scheduler_output):
            return self.impl.plan(scheduler_output.new_requests, scheduler_output.cached_requests)

        def request_finished(self, request, cache_block_ids):
            return self.impl.finished(str(request.request_id))

    class TokenmemWorker(iface.KvCacheConnectorWorker):
        def __init__(self, llm_args=None):
            super().__init__(llm_args)
            cfg, layers, page = settings(llm_args, _mpi_rank())
            self.impl = WorkerImpl(cfg, layers, page)

        def register_kv_caches(self, kv_cache_tensor):
            self.impl.register(kv_cache_tensor)

        def start_load_kv(self, stream):
            self.impl.start(self._metadata)

        def wait_for_layer_load(self, layer_idx, stream):
            self.impl.wait_layer(layer_idx)

        def save_kv_layer(self, layer_idx, stream):
            self.impl.save_layer(layer_idx)

        def wait_for_save(self, stream):
            self.impl.end_step()   # saves stay asynchronous; loads of the step are over

        def get_finished(self, finished_gen_req_ids, started_loading_req_ids):
            return self.impl.finished(finished_gen_req_ids), []   # loads are never asynchronous

        def take_failed_load_request_ids(self):
            return self.impl.take_failed()

    return TokenmemScheduler, TokenmemWorker


_classes = None


def __getattr__(name):
    global _classes
    if name in ("TokenmemScheduler", "TokenmemWorker"):
        if _classes is None:
            _classes = _make_classes()
        return _classes[0] if name == "TokenmemScheduler" else _classes[1]
    raise AttributeError(name)


def connector_classes(config: ConnectorConfig, num_layers: int, tokens_per_block: int):
    """(scheduler class, worker class) bound to config instead of
    llm_args and the environment (the worker's TP rank still comes from MPI)."""
    return _make_classes((config, num_layers, tokens_per_block))


__all__ = ["Metadata", "SchedulerImpl", "WorkerImpl", "connector_classes", "kv_layers", "resolve"]
