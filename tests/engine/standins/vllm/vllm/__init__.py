"""A stand-in for the parts of vLLM that a KV connector meets, for tests.

Only what tokenmem's adapter imports and what the harness
(tests/engine/vllm_harness.py) drives. Each behaviour cites the upstream
file and commit it was read from (github.com/vllm-project/vllm).

TM_VLLM_STANDIN=legacy imitates the v0.10-era interface: a two-argument
connector constructor, no handle_preemptions hook (the engine frees a
preempted request's pages at once), CachedRequestData.resumed_from_preemption
instead of resumed_req_ids, Request.mm_hashes/mm_positions.
"""

import os

FLAVOR = os.environ.get("TM_VLLM_STANDIN", "current")
if FLAVOR not in ("current", "legacy"):
    raise ImportError("TM_VLLM_STANDIN must be 'current' or 'legacy', not %r" % FLAVOR)
