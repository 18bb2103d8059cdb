"""tokenmem as a vLLM V1 KV connector (KVConnectorBase_V1).

Import only where vLLM is installed; the class is built on first use so
that `import tokenmem.connector` never needs vLLM. vLLM could not be
installed or run where this was written: the adapter follows the V1
connector interface (vllm.distributed.kv_transfer.kv_connector.v1.base)
and only translates; every decision lives in the tested core
(ConnectorScheduler / ConnectorWorker). See docs/engine-integration.md.

    --kv-transfer-config '{"kv_connector": "TokenmemConnectorV1",
      "kv_connector_module_path": "tokenmem.connector.vllm_adapter",
      "kv_role": "kv_both",
      "kv_connector_extra_config": {"pool": "llama3-8b"}}'

KV layout: per attention layer one tensor [2, blocks, block_size, heads,
dim] (K and V halves are the two regions of a page); the connector block
is 16 tokens or the engine's block size, whichever is larger.
"""

from typing import Any, Dict, List, Optional, Tuple


def _config_from_vllm(vllm_config) -> "ConnectorConfig":
    from .config import ConnectorConfig

    mc = vllm_config.model_config
    pc = vllm_config.parallel_config
    cc = vllm_config.cache_config
    extra = dict(getattr(vllm_config.kv_transfer_config, "kv_connector_extra_config", None) or {})
    page = int(cc.block_size)
    block = int(extra.pop("block_tokens", max(16, page)))
    try:
        from vllm.distributed.parallel_state import get_tensor_model_parallel_rank

        tp_rank = get_tensor_model_parallel_rank()
    except Exception:  # the scheduler process has no TP group; rank 0 plans for all
        tp_rank = 0
    return ConnectorConfig(
        model=str(mc.model),
        revision=str(getattr(mc, "revision", None) or ""),
        kv_dtype=str(cc.cache_dtype if cc.cache_dtype != "auto" else mc.dtype),
        kv_layout="vllm-v1;[2,%d]" % page,
        tp_rank=tp_rank,
        tp_size=int(pc.tensor_parallel_size),
        pp_size=int(pc.pipeline_parallel_size),
        block_tokens=block,
        **{k: v for k, v in extra.items() if k in ("pool", "socket", "agent_address", "lease", "tenant_salt",
                                               "pp_rank")},
    )


def _make_class():
    from vllm.distributed.kv_transfer.kv_connector.v1.base import (  # noqa: F401
        KVConnectorBase_V1, KVConnectorMetadata, KVConnectorRole)

    from .layout import KVLayout
    from .plan import StepPlan
    from .scheduler import ConnectorScheduler
    from .session import PoolSession
    from .worker import ConnectorWorker

    class TokenmemMetadata(KVConnectorMetadata):
        def __init__(self, plan: StepPlan):
            self.plan = plan

    class TokenmemConnectorV1(KVConnectorBase_V1):
        def __init__(self, vllm_config, role):
            super().__init__(vllm_config=vllm_config, role=role)
            self._config = _config_from_vllm(vllm_config)
            self._page = int(vllm_config.cache_config.block_size)
            self._layers = vllm_config.model_config.get_num_layers(vllm_config.parallel_config)
            self._session = PoolSession(self._config)
            self._sched: Optional[ConnectorScheduler] = None
            self._worker: Optional[ConnectorWorker] = None
            self._layer_index: Dict[str, int] = {}
            self._tables: Dict[str, List[int]] = {}
            if role == KVConnectorRole.SCHEDULER:
                self._sched = ConnectorScheduler(self._config, self._layers, self._session, self._page)

        # ---- scheduler side ----

        def get_num_new_matched_tokens(self, request, num_computed_tokens: int) -> Tuple[int, bool]:
            n = self._sched.lookup(request.request_id, request.prompt_token_ids, num_computed_tokens)
            return n, False   # loaded within the step, layer by layer

        def update_state_after_alloc(self, request, blocks, num_external_tokens: int):
            self._tables[request.request_id] = list(blocks.get_block_ids()[0])
            self._sched.allocated(request.request_id, num_external_tokens,
                                  request.num_computed_tokens)

        def build_connector_meta(self, scheduler_output) -> KVConnectorMetadata:
            steps = []
            for new in scheduler_output.scheduled_new_reqs:
                self._tables[new.req_id] = list(new.block_ids[0])
                steps.append((new.req_id, new.num_computed_tokens))
            cached = scheduler_output.scheduled_cached_reqs
            for i, req_id in enumerate(getattr(cached, "req_ids", [])):
                added = cached.new_block_ids[i]
                if added:
                    self._tables.setdefault(req_id, []).extend(added[0])
                steps.append((req_id, cached.num_computed_tokens[i]))
            plan = self._sched.build_plan(
                (rid, self._tables.get(rid, []), computed,
                 scheduler_output.num_scheduled_tokens.get(rid, 0))
                for rid, computed in steps)
            return TokenmemMetadata(plan)

        def request_finished(self, request, block_ids) -> Tuple[bool, Optional[Dict[str, Any]]]:
            self._sched.finished(request.request_id)
            self._tables.pop(request.request_id, None)
            # Saves may still read the pages: hold them until get_finished says so.
            return True, None

        # ---- worker side ----

        def register_kv_caches(self, kv_caches: Dict[str, Any]):
            names = list(kv_caches)
            self._layer_index = {name: i for i, name in enumerate(names)}
            layers = [[kv_caches[n][0], kv_caches[n][1]] for n in names]
            layout = KVLayout(layers, self._page, self._config.block_tokens)
            self._worker = ConnectorWorker(layout, self._session)

        def start_load_kv(self, forward_context, **kwargs) -> None:
            self._worker.bind(self._get_connector_metadata().plan)
            self._worker.start_load()

        def wait_for_layer_load(self, layer_name: str) -> None:
            self._worker.wait_for_layer_load(self._layer_index[layer_name])

        def save_kv_layer(self, layer_name: str, kv_layer, attn_metadata, **kwargs) -> None:
            self._worker.save_layer(self._layer_index[layer_name])

        def wait_for_save(self):
            pass   # saves run behind the forward; pages are held via request_finished

        def get_finished(self, finished_req_ids):
            # Every finished request's pages come back once its saves ended.
            done = {r for r in finished_req_ids if not self._worker.finish_request(r)}
            done |= self._worker.get_finished()
            return (done or None), None

        def get_block_ids_with_load_errors(self):
            # Tokens past the valid prefix are recomputed by vLLM's recovery.
            failed = self._worker.take_load_failures()
            plan = self._get_connector_metadata().plan
            bad = set()
            for r in plan.loads:
                if r.request_id in failed:
                    first = failed[r.request_id] // r.block_tokens
                    bad.update(int(p) for p in r.pages[max(0, first - r.start):].reshape(-1))
            return bad

    return TokenmemConnectorV1


_cls = None


def __getattr__(name):
    global _cls
    if name == "TokenmemConnectorV1":
        if _cls is None:
            _cls = _make_class()
        return _cls
    raise AttributeError(name)
