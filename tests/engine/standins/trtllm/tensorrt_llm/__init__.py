"""Stand-in for the parts of TensorRT-LLM that a KV cache connector touches,
for tests only (tests/engine/trtllm_harness.py puts it on sys.path). Not
TensorRT-LLM: signatures and behaviour follow the upstream files cited in
each module; no upstream code is copied."""

from ._utils import mpi_rank  # noqa: F401
