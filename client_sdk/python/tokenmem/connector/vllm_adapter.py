"""tokenmem as a vLLM V1 KV connector (KVConnectorBase_V1).

    --kv-transfer-config '{"kv_connector": "TokenmemConnectorV1",
      "kv_connector_module_path": "tokenmem.connector.vllm_adapter",
      "kv_role": "kv_both", "kv_load_failure_policy": "recompute",
      "kv_connector_extra_config": {"pool": "llama3-8b"}}'

vLLM's factory imports the module and takes the class by name; the class
is built on first access so that `import tokenmem.connector` never needs
vLLM. It accepts both constructors vLLM has used: (vllm_config, role) and
(vllm_config, role, kv_cache_config). Everything it decides lives in the
tested core (ConnectorScheduler, ConnectorWorker); this file translates
vLLM's objects. docs/engine-integration.md lists the versions and limits.

What it relies on from vLLM (and why):
- get_num_new_matched_tokens gets the tokens the engine's own prefix cache
  holds; update_state_after_alloc runs before the engine counts them, so
  the count is remembered from the lookup and loads start after it.
- Pages of a finished request are held (request_finished returns True)
  until get_finished names it; pages of a preempted request are freed at
  once, so saves still reading them are waited for in handle_preemptions
  (vLLM versions without that hook: wait_for_save waits for every save).
- A load that falls short is reported through get_block_ids_with_load_errors
  (the failed block and those after it); with kv_load_failure_policy
  "recompute" vLLM computes them again and the plans save them again.
"""

import inspect
import re
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from .config import ConnectorConfig
from .paged_layout import PageSpec, analyse_layers, canonical_descriptor, recipe
from .request_extras import MultimodalInput, RequestExtras

_EXTRA_KEYS = ("pool", "socket", "agent_address", "lease", "tenant_salt", "timeout_s",
               "reconnect_interval_s")


class _Settings:
    """What the connector needs from vLLM's configuration, read once."""

    def __init__(self, vllm_config, kv_cache_config):
        mc, pc, cc = vllm_config.model_config, vllm_config.parallel_config, vllm_config.cache_config
        extra = dict(getattr(vllm_config.kv_transfer_config, "kv_connector_extra_config", None) or {})
        spec = None
        if kv_cache_config is not None:
            groups = list(kv_cache_config.kv_cache_groups)
            kinds = [type(g.kv_cache_spec).__name__ for g in groups]
            if len(groups) != 1 or not _full_attention(groups[0].kv_cache_spec):
                raise ValueError(
                    "tokenmem: hybrid KV caches are not supported (KV cache groups: %s); "
                    "serve a model whose layers all use full attention, or run without "
                    "the tokenmem connector" % ", ".join(kinds))
            spec = groups[0].kv_cache_spec
        # The spec says whether the cache is a latent one; without a spec
        # (older vLLM) the model config does.
        self.latent = (_spec_is(spec, "MLAAttentionSpec") or bool(getattr(spec, "use_mla", False))
                       if spec is not None else bool(getattr(mc, "use_mla", False)))
        self.block_size = int(spec.block_size if spec is not None else cc.block_size)
        self.head_size = int(spec.head_size if spec is not None else mc.get_head_size())
        self.num_kv_heads = 0 if self.latent else int(
            spec.num_kv_heads if spec is not None else mc.get_num_kv_heads(pc))
        self.block_tokens = int(extra.pop("block_tokens", self.block_size))
        if self.block_tokens % self.block_size:
            raise ValueError("tokenmem: block_tokens (%d) must be a multiple of vLLM's block size (%d)"
                             % (self.block_tokens, self.block_size))
        self.num_layers = _total_layers(mc, pc)
        self.tp_size = int(pc.tensor_parallel_size)
        dtype = cc.cache_dtype if str(cc.cache_dtype) != "auto" else mc.dtype
        revision = str(getattr(mc, "revision", None) or "")
        quant = getattr(mc, "quantization", None)
        if quant:
            revision += ";quantization=%s" % quant
        page = PageSpec(num_pages=0, page_tokens=self.block_tokens, head_size=self.head_size,
                        num_kv_heads=self.num_kv_heads, latent=self.latent)
        self.kv_layout = "vllm;" + canonical_descriptor(page, self.block_tokens)
        unknown = sorted(set(extra) - set(_EXTRA_KEYS))
        if unknown:
            raise ValueError("tokenmem: unknown kv_connector_extra_config keys %s (known: %s)"
                             % (unknown, ", ".join(("block_tokens",) + _EXTRA_KEYS)))
        self.config = ConnectorConfig(
            model=str(mc.model), revision=revision, kv_dtype=str(dtype).replace("torch.", ""),
            kv_layout=self.kv_layout, tp_rank=0, tp_size=self.tp_size,
            block_tokens=self.block_tokens, **extra)


def _spec_is(spec, *kinds: str) -> bool:
    """Whether spec is (a subclass of) one of vLLM's KV cache spec classes,
    by name: the classes themselves are not imported."""
    return any(c.__name__ in kinds for c in type(spec).__mro__)


def _full_attention(spec) -> bool:
    return _spec_is(spec, "FullAttentionSpec", "MLAAttentionSpec")


def _total_layers(mc, pc) -> int:
    for get in (lambda: mc.get_total_num_hidden_layers(),
                lambda: mc.hf_text_config.num_hidden_layers,
                lambda: mc.get_num_layers(pc) * int(pc.pipeline_parallel_size)):
        try:
            return int(get())
        except (AttributeError, TypeError):
            continue
    raise ValueError("tokenmem: cannot tell the model's number of layers")


_LAYER_INDEX = re.compile(r"(?:^|\.)(\d+)(?:\.|$)")


def layer_index(name: str, fallback: int) -> int:
    """The global layer index in a vLLM layer name ("model.layers.7.self_attn.attn")."""
    m = _LAYER_INDEX.search(name)
    return int(m.group(1)) if m else fallback


def request_extras(request) -> Optional[RequestExtras]:
    """cache_salt, LoRA adapter and multimodal inputs of a vLLM Request
    (mm_features in current vLLM; mm_hashes and mm_positions before)."""
    salt = getattr(request, "cache_salt", None)
    lora = getattr(request, "lora_request", None)
    lora_name = None
    if lora is not None:
        lora_name = "%s#%s" % (getattr(lora, "lora_name", ""), getattr(lora, "lora_int_id", ""))
    mm: List[MultimodalInput] = []
    for f in getattr(request, "mm_features", None) or ():
        pos = f.mm_position
        mm.append(MultimodalInput(int(pos.offset), int(pos.length), str(f.identifier)))
    if not mm:
        for h, pos in zip(getattr(request, "mm_hashes", None) or (),
                          getattr(request, "mm_positions", None) or ()):
            mm.append(MultimodalInput(int(pos.offset), int(pos.length), str(h)))
    extras = RequestExtras(salt or None, lora_name, tuple(mm))
    return None if extras.empty else extras


def _tokens(request) -> Sequence[int]:
    # A request resumed after preemption has output tokens to recompute too.
    tokens = getattr(request, "all_token_ids", None)
    return list(tokens) if tokens is not None else list(request.prompt_token_ids)


def _make_class():
    from vllm.distributed.kv_transfer.kv_connector.v1 import base as vbase

    from .layout import KVLayout
    from .plan import StepPlan
    from .scheduler import ConnectorScheduler
    from .session import PoolSession
    from .worker import ConnectorWorker

    KVConnectorBase_V1 = vbase.KVConnectorBase_V1
    KVConnectorMetadata = vbase.KVConnectorMetadata
    KVConnectorRole = vbase.KVConnectorRole
    hma = getattr(vbase, "SupportsHMA", None)
    new_init = "kv_cache_config" in inspect.signature(KVConnectorBase_V1.__init__).parameters
    # Engines that call handle_preemptions free a preempted request's pages
    # only after it returns; older ones free them at once.
    engine_waits_on_preemption = hasattr(KVConnectorBase_V1, "handle_preemptions")
    # Engines that never ask which loads failed would attend to pages the
    # load did not fill: there the step fails instead.
    engine_recomputes_failed_loads = hasattr(KVConnectorBase_V1, "get_block_ids_with_load_errors")

    class TokenmemMetadata(KVConnectorMetadata):
        def __init__(self, plan, preempted: Set[str]):
            self.plan = plan
            self.preempted_req_ids = preempted

    bases = (KVConnectorBase_V1,) + ((hma,) if hma is not None else ())

    class TokenmemConnectorV1(*bases):
        def __init__(self, vllm_config, role, kv_cache_config=None):
            if new_init:
                super().__init__(vllm_config=vllm_config, role=role, kv_cache_config=kv_cache_config)
            else:
                super().__init__(vllm_config=vllm_config, role=role)
            self._s = _Settings(vllm_config, kv_cache_config)
            self._num_blocks = getattr(kv_cache_config, "num_blocks", None)
            self._sched: Optional[ConnectorScheduler] = None
            self._worker: Optional[ConnectorWorker] = None
            self._session: Optional[PoolSession] = None
            self._layer_index: Dict[str, int] = {}
            self._tables: Dict[str, List[int]] = {}
            self._ratio = 1          # kernel pages per vLLM block (worker side)
            if role == KVConnectorRole.SCHEDULER:
                self._session = PoolSession(self._s.config)
                self._sched = ConnectorScheduler(self._s.config, self._s.num_layers, self._session,
                                                 self._s.block_size, tp_ranks=range(self._s.tp_size))

        @classmethod
        def requires_piecewise_for_cudagraph(cls, extra_config) -> bool:
            return True   # layer-by-layer waits and saves cannot be captured in a graph

        # ---- scheduler side ----

        def get_num_new_matched_tokens(self, request, num_computed_tokens: int) -> Tuple[int, bool]:
            tokens = _tokens(request)
            n = self._sched.lookup(request.request_id, tokens, num_computed_tokens, request_extras(request))
            return n, False   # loaded within the step, layer by layer

        def update_state_after_alloc(self, request, blocks, num_external_tokens: int):
            self._tables[request.request_id] = list(blocks.get_block_ids()[0])
            # request.num_computed_tokens is not updated yet: the core uses
            # the local hit it was given at lookup.
            self._sched.allocated(request.request_id, num_external_tokens)

        def build_connector_meta(self, scheduler_output):
            steps = []
            for new in scheduler_output.scheduled_new_reqs:
                self._tables[new.req_id] = list(new.block_ids[0])
                steps.append((new.req_id, new.num_computed_tokens))
            cached = scheduler_output.scheduled_cached_reqs
            resumed = set(getattr(cached, "resumed_req_ids", None) or ())
            flags = getattr(cached, "resumed_from_preemption", None)
            for i, req_id in enumerate(cached.req_ids):
                added = cached.new_block_ids[i]
                if req_id in resumed or (flags is not None and flags[i]):
                    self._tables[req_id] = list(added[0]) if added else []
                elif added:
                    self._tables.setdefault(req_id, []).extend(added[0])
                steps.append((req_id, cached.num_computed_tokens[i]))
            plan = self._sched.build_plan(
                (rid, self._tables.get(rid, []), computed,
                 scheduler_output.num_scheduled_tokens.get(rid, 0))
                for rid, computed in steps if self._sched.known(rid))
            preempted = set(getattr(scheduler_output, "preempted_req_ids", None) or ())
            return TokenmemMetadata(plan, preempted)

        def request_finished(self, request, block_ids) -> Tuple[bool, Optional[Dict[str, Any]]]:
            self._sched.finished(request.request_id)
            self._tables.pop(request.request_id, None)
            # Saves may still read the pages: vLLM keeps them until
            # get_finished names the request.
            return True, None

        def request_finished_all_groups(self, request, block_ids) -> Tuple[bool, Optional[Dict[str, Any]]]:
            return self.request_finished(request, block_ids[0] if block_ids else [])

        # ---- worker side ----

        def register_kv_caches(self, kv_caches: Dict[str, Any]):
            from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

            index = {n: layer_index(n, i) for i, n in enumerate(kv_caches)}
            names = sorted(kv_caches, key=index.__getitem__)
            globals_ = [index[n] for n in names]
            if len(set(globals_)) != len(globals_):
                raise ValueError("tokenmem: two KV cache layers share a layer index: %s" % names)
            first = kv_caches[names[0]]
            kernel = int(first.shape[-2] if self._s.latent else first.shape[-3])
            if self._s.block_size % kernel or self._s.block_tokens % kernel:
                raise ValueError("tokenmem: kernel block size %d does not divide vLLM's block size %d"
                                 % (kernel, self._s.block_size))
            self._ratio = self._s.block_size // kernel
            pages = self._pages(first)
            spec = PageSpec(pages, kernel, self._s.head_size, self._s.num_kv_heads, self._s.latent)
            views, first_layer = analyse_layers([kv_caches[n] for n in names], spec)
            rec = recipe(first_layer, self._s.block_tokens // kernel)
            layout = KVLayout(views, kernel, self._s.block_tokens, rec)
            rank = int(get_tensor_model_parallel_rank())
            columns = [rank * self._s.num_layers + g for g in globals_]
            self._layer_index = {n: i for i, n in enumerate(names)}
            self._session = PoolSession(self._s.config)
            self._worker = ConnectorWorker(layout, self._session, key_columns=columns)

        def _pages(self, t) -> int:
            if self._num_blocks:
                return int(self._num_blocks) * self._ratio
            if self._s.latent:
                return int(t.shape[0])
            return int(t.shape[1] if t.shape[0] == 2 and t.shape[1] != 2 else t.shape[0])

        def _kernel_plan(self, plan):
            """The plan with vLLM block b as its kernel pages b * ratio + j."""
            if self._ratio == 1:
                return plan
            import dataclasses

            import numpy as np

            j = np.arange(self._ratio, dtype=np.int64)

            def expand(r):
                pages = (r.pages[..., None] * self._ratio + j).reshape(len(r.pages), -1)
                return dataclasses.replace(r, pages=pages)

            return StepPlan([expand(r) for r in plan.loads], [expand(r) for r in plan.saves])

        def handle_preemptions(self, kv_connector_metadata):
            # The preempted requests' pages are about to be reused.
            if self._worker is not None:
                self._worker.wait_for_save()

        def start_load_kv(self, forward_context, **kwargs) -> None:
            self._worker.bind(self._kernel_plan(self._get_connector_metadata().plan))
            self._worker.start_load()

        def wait_for_layer_load(self, layer_name: str) -> None:
            layer = self._layer_index[layer_name]
            self._worker.wait_for_layer_load(layer)
            if not engine_recomputes_failed_loads:
                failed = self._worker.load_failed_by(layer)
                if failed:
                    raise RuntimeError("tokenmem: KV of requests %s could not be loaded and this vLLM "
                                       "cannot recompute it (no get_block_ids_with_load_errors)"
                                       % sorted(failed))

        def save_kv_layer(self, layer_name: str, kv_layer, attn_metadata, **kwargs) -> None:
            self._worker.save_layer(self._layer_index[layer_name])

        def wait_for_save(self):
            if not engine_waits_on_preemption:
                self._worker.wait_for_save()

        def get_finished(self, finished_req_ids):
            done = {r for r in finished_req_ids if not self._worker.finish_request(r)}
            done |= self._worker.get_finished()
            return (done or None), None

        def get_block_ids_with_load_errors(self) -> Set[int]:
            failed = self._worker.take_load_failures() if self._worker is not None else {}
            if not failed or not self.has_connector_metadata():
                return set()
            bad: Set[int] = set()
            for r in self._get_connector_metadata().plan.loads:
                if r.request_id in failed:
                    first = failed[r.request_id] // r.block_tokens
                    pages = r.pages[max(0, first - r.start):].reshape(-1)
                    bad.update(int(p) for p in pages)
            return bad

        def shutdown(self):
            if self._worker is not None:
                self._worker.close()
                self._worker = None
            if self._session is not None:
                self._session.close()
                self._session = None

    return TokenmemConnectorV1


_cls = None


def __getattr__(name):
    global _cls
    if name == "TokenmemConnectorV1":
        if _cls is None:
            _cls = _make_class()
        return _cls
    raise AttributeError(name)
