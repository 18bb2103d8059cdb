"""MPI helpers of tensorrt_llm._utils, for ranks simulated in one process.

# tensorrt_llm/_torch/pyexecutor/py_executor_creator.py @ bab0f2e6eea19bcce16c805101420ef7d9d62d75:
# workers are built on every rank and read their rank from mpi_rank(); the
# harness sets the simulated rank around each rank's calls.
"""

import threading

_state = threading.local()


def set_rank(rank: int) -> None:
    _state.rank = rank


def mpi_rank() -> int:
    return getattr(_state, "rank", 0)
