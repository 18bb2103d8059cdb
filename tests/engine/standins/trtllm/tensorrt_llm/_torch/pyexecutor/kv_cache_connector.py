"""The interface at its older path.

# tensorrt_llm/_torch/pyexecutor/kv_cache_connector.py @ 00fdcbff5ad82a6438b3e0c9dbc5480b6ee52bdc:
# KvCacheConnectorWorker(llm_args) with bind_connector_meta / _metadata,
# register_kv_caches(kv_cache_tensor), start_load_kv(stream),
# wait_for_layer_load(layer_idx, stream), save_kv_layer(layer_idx, stream),
# wait_for_save(stream), get_finished(finished_gen_req_ids,
# started_loading_req_ids) -> (finished saving, finished loading);
# KvCacheConnectorScheduler(llm_args) with build_connector_meta,
# get_num_new_matched_tokens(request, num_computed_tokens) -> (tokens, async),
# request_finished(request, cache_block_ids) -> bool,
# update_state_after_alloc(request, block_ids).
"""

from tensorrt_llm._interface import RequestData, SchedulerOutput, make  # noqa: F401

KvCacheConnectorWorker, KvCacheConnectorScheduler = make(current=False)
