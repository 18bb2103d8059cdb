"""KVConnectorBase_V1: the interface a V1 connector implements.

Current: vllm/distributed/kv_transfer/kv_connector/v1/base.py @
003df2961dd8830c317a61f9745ccd557da9fa06 — __init__(vllm_config, role,
kv_cache_config); abstract start_load_kv, wait_for_layer_load,
save_kv_layer, wait_for_save, get_num_new_matched_tokens,
update_state_after_alloc, build_connector_meta; handle_preemptions,
get_finished, get_block_ids_with_load_errors, request_finished, shutdown
with defaults; SupportsHMA with request_finished_all_groups.
Legacy (TM_VLLM_STANDIN=legacy): __init__(vllm_config, role), no
handle_preemptions and no SupportsHMA, as in
vllm/distributed/kv_transfer/kv_connector/v1/shared_storage_connector.py @
e9d7d2bff64a48d6ddc754d77e090c323157fe1f, whose connector takes
(vllm_config, role).
"""

import enum
from abc import ABC, abstractmethod

from vllm import FLAVOR


class KVConnectorRole(enum.Enum):
    SCHEDULER = 0
    WORKER = 1


class KVConnectorMetadata(ABC):  # noqa: B024
    pass


class SupportsHMA(ABC):
    @abstractmethod
    def request_finished_all_groups(self, request, block_ids):
        raise NotImplementedError


def supports_hma(connector) -> bool:
    if isinstance(connector, type):
        return issubclass(connector, SupportsHMA)
    return isinstance(connector, SupportsHMA)


class _Base(ABC):
    def _setup(self, vllm_config, role, kv_cache_config):
        if vllm_config.kv_transfer_config is None:
            raise ValueError("kv_transfer_config must be set for KVConnectorBase_V1")
        self._connector_metadata = None
        self._vllm_config = vllm_config
        self._kv_transfer_config = vllm_config.kv_transfer_config
        self._kv_cache_config = kv_cache_config
        self._role = role

    @property
    def role(self):
        return self._role

    def bind_connector_metadata(self, connector_metadata):
        self._connector_metadata = connector_metadata

    def clear_connector_metadata(self):
        self._connector_metadata = None

    def _get_connector_metadata(self):
        assert self._connector_metadata is not None
        return self._connector_metadata

    def has_connector_metadata(self) -> bool:
        return self._connector_metadata is not None

    def register_kv_caches(self, kv_caches):
        return

    @abstractmethod
    def start_load_kv(self, forward_context, **kwargs):
        pass

    @abstractmethod
    def wait_for_layer_load(self, layer_name):
        pass

    @abstractmethod
    def save_kv_layer(self, layer_name, kv_layer, attn_metadata, **kwargs):
        pass

    @abstractmethod
    def wait_for_save(self):
        pass

    def get_finished(self, finished_req_ids):
        return None, None

    def get_block_ids_with_load_errors(self):
        return set()

    def shutdown(self):
        return None

    @abstractmethod
    def get_num_new_matched_tokens(self, request, num_computed_tokens):
        pass

    @abstractmethod
    def update_state_after_alloc(self, request, blocks, num_external_tokens):
        pass

    @abstractmethod
    def build_connector_meta(self, scheduler_output):
        pass

    def update_connector_output(self, connector_output):
        return

    def request_finished(self, request, block_ids):
        return False, None


if FLAVOR == "legacy":
    del SupportsHMA

    class KVConnectorBase_V1(_Base):
        def __init__(self, vllm_config, role):
            self._setup(vllm_config, role, None)
else:
    class KVConnectorBase_V1(_Base):
        def __init__(self, vllm_config, role, kv_cache_config):
            self._setup(vllm_config, role, kv_cache_config)

        def handle_preemptions(self, kv_connector_metadata):
            return
