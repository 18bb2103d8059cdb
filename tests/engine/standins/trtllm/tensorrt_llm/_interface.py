"""The connector interface classes; each interface module builds its own
set (the current one with the methods later releases added)."""

import dataclasses
from abc import ABC, abstractmethod
from typing import List, Optional


# Both interface files define RequestData and SchedulerOutput alike: a
# request's new tokens and new block ids since its last appearance,
# computed_position and num_scheduled_tokens; new_requests appear once.
@dataclasses.dataclass
class RequestData:
    request_id: int
    new_tokens: List[int]
    new_block_ids: List[int]
    computed_position: int
    num_scheduled_tokens: int
    block_hashes: List[int] = dataclasses.field(default_factory=list)
    priorities: Optional[List[int]] = None
    cache_salt: Optional[str] = None


@dataclasses.dataclass
class SchedulerOutput:
    new_requests: List[RequestData] = dataclasses.field(default_factory=list)
    cached_requests: List[RequestData] = dataclasses.field(default_factory=list)


def make(current: bool):
    class KvCacheConnectorWorker(ABC):
        def __init__(self, llm_args):
            self._llm_args = llm_args
            self._metadata = None

        def bind_connector_meta(self, metadata):
            self._metadata = metadata

        def get_connector_meta(self):
            return self._metadata

        def _clear_connector_meta(self):
            self._metadata = None

        def register_forward_pass_callable(self):
            return None

        @abstractmethod
        def register_kv_caches(self, kv_cache_tensor): ...

        @abstractmethod
        def start_load_kv(self, stream): ...

        @abstractmethod
        def wait_for_layer_load(self, layer_idx, stream): ...

        @abstractmethod
        def save_kv_layer(self, layer_idx, stream): ...

        @abstractmethod
        def wait_for_save(self, stream): ...

        @abstractmethod
        def get_finished(self, finished_gen_req_ids, started_loading_req_ids): ...

    class KvCacheConnectorScheduler(ABC):
        def __init__(self, llm_args):
            self._llm_args = llm_args

        @abstractmethod
        def build_connector_meta(self, scheduler_output): ...

        @abstractmethod
        def get_num_new_matched_tokens(self, request, num_computed_tokens): ...

        @abstractmethod
        def request_finished(self, request, cache_block_ids): ...

        @abstractmethod
        def update_state_after_alloc(self, request, block_ids): ...

    if current:
        def take_failed_load_request_ids(self):
            return set()

        def abort_request(self, request_id, *reason):
            return True

        def wait_for_initialization(self):
            return None

        KvCacheConnectorWorker.take_failed_load_request_ids = take_failed_load_request_ids
        KvCacheConnectorWorker.abort_request = abort_request
        KvCacheConnectorScheduler.abort_request = abort_request
        KvCacheConnectorScheduler.wait_for_initialization = wait_for_initialization
    return KvCacheConnectorWorker, KvCacheConnectorScheduler
