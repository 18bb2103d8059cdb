"""tokenmem as a TensorRT-LLM KV cache connector (scheduler + worker).

Import only where TensorRT-LLM (PyTorch backend) is installed; the classes
are built on first use so that `import tokenmem.connector` never needs it.
TensorRT-LLM could not be installed or run where this was written: the
adapter follows the KvCacheConnectorScheduler / KvCacheConnectorWorker
interface (tensorrt_llm._torch.pyexecutor.kv_cache_connector) and only
translates; every decision lives in the tested core. See
docs/engine-integration.md.

KV layout: the pool tensor [blocks, layers, 2, tokens_per_block * heads *
dim]; layer l's pages are pool[:, l], each page contiguous, pages strided.
"""

from typing import List, Tuple

from .config import ConnectorConfig


def _make_classes(config: ConnectorConfig, num_layers: int, tokens_per_block: int):
    from tensorrt_llm._torch.pyexecutor.kv_cache_connector import (
        KvCacheConnectorScheduler, KvCacheConnectorWorker)

    from .layout import KVLayout
    from .scheduler import ConnectorScheduler
    from .session import PoolSession
    from .worker import ConnectorWorker

    class TokenmemScheduler(KvCacheConnectorScheduler):
        def __init__(self, llm_args=None):
            super().__init__(llm_args)
            self._core = ConnectorScheduler(config, num_layers, PoolSession(config), tokens_per_block)
            self._tables = {}

        def get_num_new_matched_tokens(self, request, num_computed_tokens: int) -> Tuple[int, bool]:
            tokens = request.get_tokens(0)
            return self._core.lookup(str(request.request_id), tokens, num_computed_tokens), False

        def update_state_after_alloc(self, request, block_ids: List[int]):
            rid = str(request.request_id)
            self._tables[rid] = list(block_ids)
            n = self._core.hit_blocks(rid) * config.block_tokens - request.context_current_position
            self._core.allocated(rid, max(0, n), request.context_current_position)

        def build_connector_meta(self, scheduler_output):
            steps = []
            for req in list(scheduler_output.new_requests) + list(scheduler_output.cached_requests):
                rid = str(req.request_id)
                if req.new_block_ids:
                    self._tables.setdefault(rid, []).extend(req.new_block_ids)
                steps.append((rid, self._tables.get(rid, []), req.computed_position,
                              len(req.new_tokens)))
            return self._core.build_plan(steps)

        def request_finished(self, request, cache_block_ids: List[int]) -> bool:
            rid = str(request.request_id)
            self._core.finished(rid)
            self._tables.pop(rid, None)
            return True   # pages are held until the worker reports the saves ended

    class TokenmemWorker(KvCacheConnectorWorker):
        def __init__(self, llm_args=None):
            super().__init__(llm_args)
            self._worker = None

        def register_kv_caches(self, kv_cache_tensor):
            layers = [[kv_cache_tensor[:, l]] for l in range(kv_cache_tensor.shape[1])]
            layout = KVLayout(layers, tokens_per_block, config.block_tokens)
            self._worker = ConnectorWorker(layout, PoolSession(config))

        def start_load_kv(self, stream):
            self._worker.bind(self._metadata)
            self._worker.start_load()

        def wait_for_layer_load(self, layer_idx: int, stream):
            self._worker.wait_for_layer_load(layer_idx)

        def save_kv_layer(self, layer_idx: int, stream):
            self._worker.save_layer(layer_idx)

        def wait_for_save(self, stream):
            pass

        def get_finished(self, finished_gen_req_ids, started_loading_req_ids):
            done = []
            for rid in finished_gen_req_ids:
                if not self._worker.finish_request(str(rid)):
                    done.append(rid)
            finished = self._worker.get_finished()
            done += [rid for rid in finished_gen_req_ids if str(rid) in finished]
            return done, list(started_loading_req_ids)

    return TokenmemScheduler, TokenmemWorker


def connector_classes(config: ConnectorConfig, num_layers: int, tokens_per_block: int):
    """(scheduler class, worker class) for TensorRT-LLM's connector config."""
    return _make_classes(config, num_layers, tokens_per_block)
