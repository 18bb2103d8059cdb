"""A small Llama-style decoder in plain torch, and an engine that runs it
over a paged KV cache and drives tokenmem.connector as a real engine would.

Model: token embedding, per layer RMSNorm -> grouped-query attention with
rotary embeddings -> residual -> RMSNorm -> SwiGLU MLP -> residual, final
RMSNorm and LM head. Weights come from a fixed seed (no download).

KV cache: per layer one tensor [pages, 2 (K, V), page_tokens, kv_heads,
head_dim], pages handed out to requests from a free list.

Engine.prefill(request_id, tokens) is one request's prompt up to its first
token's logits:
  1. lookup: how many leading tokens tokenmem holds (whole blocks);
  2. pages for the whole prompt; a plan: load the stored blocks, save the
     new full blocks;
  3. chunked prefill from the first token not stored: each chunk runs every
     layer; layer l waits for its stored blocks before its attention reads
     the cache, and queues its new full blocks for saving after;
  4. when a load fell short, the prefill runs again from the valid prefix
     (the logits of the failed pass are discarded, its saves dropped).
Chunks start at multiples of chunk_tokens measured from token 0, whatever
is stored, so with chunk_tokens a multiple of the block size a reused
prefix changes no operand shape of any later computation (see
docs/engine-integration.md, "Exactness").
"""

import dataclasses
import math
import time
from typing import Callable, Dict, List, Optional

import torch


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    vocab: int = 512
    hidden: int = 64
    layers: int = 2
    heads: int = 4
    kv_heads: int = 2
    head_dim: int = 16
    ffn: int = 128
    rope_theta: float = 10000.0
    eps: float = 1e-5
    seed: int = 0
    dtype: torch.dtype = torch.float32
    page_tokens: int = 16

    @property
    def kv_dtype_name(self) -> str:
        return str(self.dtype).replace("torch.", "")

    @property
    def kv_layout(self) -> str:
        return "[2,%d,%d,%d]" % (self.page_tokens, self.kv_heads, self.head_dim)


# Small for the tests; the benchmark model is big enough that an 8k-token
# prefill takes tens of seconds on two cores.
TEST_MODEL = ModelConfig()
BENCH_MODEL = ModelConfig(vocab=32000, hidden=384, layers=6, heads=6, kv_heads=2, head_dim=64,
                          ffn=1024, seed=1234)


class Weights:
    def __init__(self, cfg: ModelConfig):
        g = torch.Generator().manual_seed(cfg.seed)

        def w(*shape, scale=None):
            scale = scale if scale is not None else 1.0 / math.sqrt(shape[0])
            return (torch.randn(*shape, generator=g) * scale).to(cfg.dtype)

        q_dim, kv_dim = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
        self.embed = w(cfg.vocab, cfg.hidden, scale=1.0)
        self.layers = []
        for _ in range(cfg.layers):
            self.layers.append({
                "attn_norm": (1.0 + 0.1 * torch.randn(cfg.hidden, generator=g)).to(cfg.dtype),
                "wqkv": w(cfg.hidden, q_dim + 2 * kv_dim),
                "wo": w(q_dim, cfg.hidden),
                "mlp_norm": (1.0 + 0.1 * torch.randn(cfg.hidden, generator=g)).to(cfg.dtype),
                "w_gate_up": w(cfg.hidden, 2 * cfg.ffn),
                "w_down": w(cfg.ffn, cfg.hidden),
            })
        self.final_norm = (1.0 + 0.1 * torch.randn(cfg.hidden, generator=g)).to(cfg.dtype)
        self.lm_head = w(cfg.hidden, cfg.vocab)


class PagedKVCache:
    def __init__(self, cfg: ModelConfig, num_pages: int):
        self.cfg = cfg
        self.layers = [torch.zeros(num_pages, 2, cfg.page_tokens, cfg.kv_heads, cfg.head_dim,
                                   dtype=cfg.dtype) for _ in range(cfg.layers)]
        self.free = list(range(num_pages - 1, -1, -1))

    def alloc(self, n: int) -> List[int]:
        if n > len(self.free):
            raise RuntimeError("out of KV pages (%d wanted, %d free)" % (n, len(self.free)))
        return [self.free.pop() for _ in range(n)]

    def release(self, pages: List[int]) -> None:
        self.free.extend(reversed(pages))

    def tensors_by_layer(self):
        return [[t] for t in self.layers]


def _rms_norm(x, weight, eps):
    var = x.float().pow(2).mean(-1, keepdim=True)
    return (x.float() * torch.rsqrt(var + eps)).to(x.dtype) * weight


def _rope_table(positions, dim, theta):
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim))
    ang = positions.float()[:, None] * inv[None, :]
    return ang.cos()[:, None, :], ang.sin()[:, None, :]


def _rope(x, cos, sin):
    # x: [T, heads, dim]; rotates the pairs (i, i + dim/2) by position.
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half].float(), x[..., half:].float()
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class Hooks:
    """What the forward calls at each layer; the engine plugs the connector in."""

    def before_attention(self, layer: int) -> None:
        pass

    def after_layer(self, layer: int) -> None:
        pass


class Model:
    def __init__(self, cfg: ModelConfig):
        self.cfg = cfg
        self.w = Weights(cfg)

    @torch.no_grad()
    def forward_chunk(self, cache: PagedKVCache, pages: List[int], tokens: torch.Tensor,
                      start: int, hooks: Hooks, logits_for: Optional[slice] = None):
        """Runs tokens at positions [start, start + T) of a request whose
        pages are `pages`; writes their K and V into the cache; returns
        the logits of rows logits_for of the chunk (None: none)."""
        cfg, w = self.cfg, self.w
        T = tokens.shape[0]
        end = start + T
        pos = torch.arange(start, end)
        q_dim, kv_dim = cfg.heads * cfg.head_dim, cfg.kv_heads * cfg.head_dim
        page_idx = torch.tensor(pages[: (end + cfg.page_tokens - 1) // cfg.page_tokens])
        slot_page = page_idx[pos // cfg.page_tokens]
        slot_off = pos % cfg.page_tokens
        group = cfg.heads // cfg.kv_heads
        # Query rows i of head group g attend keys <= start + i; rows are
        # grouped per KV head (GQA without copying K and V per query head).
        mask = torch.full((T, end), float("-inf")).triu(start + 1).repeat(group, 1)
        scale = 1.0 / math.sqrt(cfg.head_dim)
        cos, sin = _rope_table(pos, cfg.head_dim, cfg.rope_theta)
        x = w.embed[tokens]
        for l, lw in enumerate(w.layers):
            h = _rms_norm(x, lw["attn_norm"], cfg.eps)
            qkv = h @ lw["wqkv"]
            q = _rope(qkv[:, :q_dim].reshape(T, cfg.heads, cfg.head_dim), cos, sin)
            k = _rope(qkv[:, q_dim:q_dim + kv_dim].reshape(T, cfg.kv_heads, cfg.head_dim), cos, sin)
            v = qkv[:, q_dim + kv_dim:].reshape(T, cfg.kv_heads, cfg.head_dim)
            hooks.before_attention(l)   # stored KV of this layer must be in the pages now
            kv = cache.layers[l]
            kv[slot_page, 0, slot_off] = k
            kv[slot_page, 1, slot_off] = v
            ctx = kv[page_idx].transpose(0, 1).reshape(2, -1, cfg.kv_heads, cfg.head_dim)[:, :end]
            keys = ctx[0].permute(1, 2, 0)                  # [KVH, D, S]
            vals = ctx[1].transpose(0, 1)                   # [KVH, S, D]
            qg = q.reshape(T, cfg.kv_heads, group, cfg.head_dim).permute(1, 2, 0, 3)
            qg = qg.reshape(cfg.kv_heads, group * T, cfg.head_dim)
            scores = torch.baddbmm(mask.to(cfg.dtype), qg, keys, alpha=scale)
            probs = torch.softmax(scores.float(), dim=-1).to(cfg.dtype)
            attn = (probs @ vals).reshape(cfg.kv_heads, group, T, cfg.head_dim)
            attn = attn.permute(2, 0, 1, 3).reshape(T, q_dim)
            x = x + attn @ lw["wo"]
            h = _rms_norm(x, lw["mlp_norm"], cfg.eps)
            gate, up = (h @ lw["w_gate_up"]).split(cfg.ffn, dim=-1)
            x = x + (torch.nn.functional.silu(gate) * up) @ lw["w_down"]
            hooks.after_layer(l)
        if logits_for is None:
            return None
        return (_rms_norm(x[logits_for], w.final_norm, cfg.eps) @ w.lm_head).float()


@dataclasses.dataclass
class PrefillResult:
    logits: torch.Tensor          # [tokens computed in the final pass, vocab]
    first_computed: int           # position of logits[0]
    hit_tokens: int               # what lookup promised
    loaded_tokens: int            # what was actually reused
    reruns: int                   # passes redone after a load fell short
    seconds: float
    pages: Optional[List[int]] = None   # with keep_pages: the request's pages, still held


class _ConnectorHooks(Hooks):
    def __init__(self, worker):
        self.worker = worker

    def before_attention(self, layer):
        self.worker.wait_for_layer_load(layer)

    def after_layer(self, layer):
        self.worker.save_layer(layer)


class Engine:
    """One model, one paged cache, optionally a TokenmemConnector (built on
    the cache's tensors by connector_factory)."""

    def __init__(self, cfg: ModelConfig, num_pages: int, connector_factory=None,
                 chunk_tokens: int = 16, model: Optional[Model] = None):
        self.cfg = cfg
        self.model = model or Model(cfg)
        self.cache = PagedKVCache(cfg, num_pages)
        self.chunk_tokens = chunk_tokens
        self.connector = connector_factory(self.cache) if connector_factory else None
        self._held: Dict[str, List[int]] = {}   # pages kept until their saves end
        self.after_lookup: Optional[Callable[[str, int], None]] = None   # tests inject faults here

    def prefill(self, request_id: str, tokens, all_logits: bool = False,
                keep_pages: bool = False) -> PrefillResult:
        t0 = time.perf_counter()
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        n = len(tokens)
        self._reclaim()
        pages = self.cache.alloc((n + self.cfg.page_tokens - 1) // self.cfg.page_tokens)
        conn = self.connector
        hit = 0
        if conn is not None:
            hit = conn.scheduler.lookup(request_id, tokens.tolist(), 0)
            if self.after_lookup is not None:
                self.after_lookup(request_id, hit)
            conn.scheduler.allocated(request_id, hit, 0)
        start, reruns, first = hit, 0, True
        while True:
            logits = self._run(request_id, tokens, pages, start, first, all_logits)
            first = False
            failed = conn.worker.take_load_failures().get(request_id) if conn else None
            if failed is None:
                break
            # Blocks from `failed` were not all loaded: recompute from there.
            conn.scheduler.load_failed(request_id, failed)
            start, reruns = failed, reruns + 1
        seconds = time.perf_counter() - t0
        kept = pages if keep_pages else None
        if conn is not None:
            conn.scheduler.finished(request_id)
            # Pages with saves in flight are freed once the saves end (a
            # caller keeping them must flush() before releasing them).
            if conn.worker.finish_request(request_id) and not keep_pages:
                self._held[request_id] = pages
                pages = None
        if pages is not None and not keep_pages:
            self.cache.release(pages)
        return PrefillResult(logits, start, hit, start, reruns, seconds, kept)

    def compute_from(self, tokens, pages: List[int], start: int) -> float:
        """Seconds to compute tokens[start:] over pages that already hold
        the KV of tokens[:start], with no connector: the compute floor of a
        prefill that reuses start tokens."""
        tokens = torch.as_tensor(tokens, dtype=torch.long)
        conn, self.connector = self.connector, None
        try:
            t0 = time.perf_counter()
            self._run("floor", tokens, pages, start, False, False)
            return time.perf_counter() - t0
        finally:
            self.connector = conn

    def release(self, pages: List[int]) -> None:
        self.cache.release(pages)

    def _run(self, request_id, tokens, pages, start, with_loads, all_logits):
        n = len(tokens)
        conn = self.connector
        hooks = _ConnectorHooks(conn.worker) if conn else Hooks()
        out = []
        pos = start
        while pos < n:
            # Chunks on a fixed grid from token 0 (see the module's docstring).
            end = min(n, (pos // self.chunk_tokens + 1) * self.chunk_tokens)
            if conn is not None:
                plan = conn.scheduler.build_plan([(request_id, pages, pos, end - pos)])
                if not with_loads:
                    plan.loads = []
                conn.worker.bind(plan)
                conn.worker.start_load()
            rows = slice(0, end - pos) if all_logits else slice(end - pos - 1, end - pos)
            want = all_logits or end == n
            logits = self.model.forward_chunk(self.cache, pages, tokens[pos:end], pos, hooks,
                                              rows if want else None)
            if logits is not None:
                out.append(logits)
            with_loads = False
            pos = end
        if not out:  # nothing to compute: cannot happen, lookup leaves the last token
            raise RuntimeError("prefill computed no token")
        return torch.cat(out)

    def _reclaim(self):
        if self.connector is None:
            return
        for req in self.connector.worker.get_finished():
            pages = self._held.pop(req, None)
            if pages is not None:
                self.cache.release(pages)

    def flush(self):
        """Waits for queued saves and frees the pages they held."""
        if self.connector is not None:
            self.connector.worker.wait_for_save()
            self._reclaim()

    def close(self):
        if self.connector is not None:
            self.connector.close()
