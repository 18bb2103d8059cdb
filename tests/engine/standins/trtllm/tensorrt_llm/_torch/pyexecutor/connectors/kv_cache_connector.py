"""The interface at its current path.

# tensorrt_llm/_torch/pyexecutor/connectors/kv_cache_connector.py @ 5a06f334f04fb515ff79f73b7f0f7726ad757361:
# the same classes and signatures as the older path; later revisions add
# optional hooks with defaults (worker take_failed_load_request_ids ->
# set(), abort_request; scheduler wait_for_initialization, abort_request)
# and RequestData fields block_hashes, priorities, cache_salt.
"""

from tensorrt_llm._interface import RequestData, SchedulerOutput, make  # noqa: F401

KvCacheConnectorWorker, KvCacheConnectorScheduler = make(current=True)
