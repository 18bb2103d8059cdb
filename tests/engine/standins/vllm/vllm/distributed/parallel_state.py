"""Tensor-parallel rank of the calling worker.

vllm/distributed/parallel_state.py @ 13f4ad0f55b08ca1d37d1459f50ce950feaeb547:
get_tensor_model_parallel_rank() answers the rank of the process's TP
group. Here each harness worker sets it before it builds its connector
(one process stands in for several worker processes)."""

_rank = 0


def set_tensor_model_parallel_rank(rank: int) -> None:
    global _rank
    _rank = rank


def get_tensor_model_parallel_rank() -> int:
    return _rank
