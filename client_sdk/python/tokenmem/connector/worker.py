"""The worker side: moves KV between the engine's pages and tokenmem, layer
by layer, off the forward pass's thread.

Per step:
    worker.bind(plan)               # the scheduler side's StepPlan
    worker.start_load()             # a loader thread fetches layer 0, 1, ...
    for each layer l of the forward:
        ... q, k, v projections of the new tokens ...
        worker.wait_for_layer_load(l)   # layer l's stored blocks are in pages
        ... attention, write new KV into pages ...
        worker.save_layer(l)        # queued; a saver thread copies it out
    failures = worker.take_load_failures()   # {request: valid tokens}

Loads use one scatter-gather get per layer for every block of the step, so
layer l + 1 is read while layer l computes. A block that misses, fails,
returns the wrong length, or comes from a session that ended counts as not
stored: the request's valid prefix ends before it, later layers load only
below it, saves of that request from that layer on are dropped (their
inputs were wrong), and the engine recomputes from the valid prefix. KV is
never taken from a block the library did not return whole.

Saves never block the forward: save_layer queues the step's new full
blocks of one layer and returns. Their pages must stay unchanged until the
save ends: finish_request(req) tells whether the request still has saves
in flight, and get_finished() names the requests whose pages may be freed.
wait_for_save() waits for everything queued (shutdown, tests).

Thread safety: one engine thread drives an instance; the loader and saver
threads are internal.
"""

import concurrent.futures
import dataclasses
import logging
import threading
import time
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..client import StatusCode, get_many_raw, put_many_raw
from .layout import KVLayout
from .plan import BlockRange, StepPlan
from .session import PoolSession

_UNAVAILABLE = int(StatusCode.UNAVAILABLE)
_log = logging.getLogger("tokenmem.connector")


@dataclasses.dataclass
class TransferStats:
    load_blocks: int = 0          # (block, layer) pieces loaded whole
    load_bytes: int = 0
    load_busy_s: float = 0.0      # time inside the per-layer gets
    load_wait_s: float = 0.0      # time the forward waited in wait_for_layer_load
    load_failures: int = 0        # requests whose load fell short
    save_blocks: int = 0
    save_bytes: int = 0
    save_busy_s: float = 0.0
    save_failed: int = 0          # (block, layer) the store refused
    save_dropped: int = 0         # not attempted: no session, or the request's load failed

    def hidden_share(self) -> Optional[float]:
        """Share of load time spent while the forward did something else."""
        if self.load_busy_s <= 0:
            return None
        return max(0.0, 1.0 - self.load_wait_s / self.load_busy_s)


def _gather(layout: KVLayout, layer: int, ranges: List[BlockRange], column: int):
    """keys [n, 2], iovcnt [n], iov [n * pieces, 2] for one layer of ranges
    (its keys in column `column` of each range's key array)."""
    keys = np.ascontiguousarray(np.concatenate([r.keys[:, column] for r in ranges]))
    iov = np.ascontiguousarray(np.concatenate([layout.iov(layer, r.pages) for r in ranges]))
    iovcnt = np.full(len(keys), layout.pieces_per_block, dtype=np.uint64)
    return keys, iovcnt, iov


class _Staging:
    """Host copies of one layer's pages of ranges, for KV not in CPU memory."""

    def __init__(self, layout: KVLayout, layer: int, ranges: List[BlockRange]):
        import torch

        self.layout, self.layer = layout, layer
        pages = np.concatenate([r.pages for r in ranges]).reshape(-1)   # block-major
        self.index = torch.as_tensor(pages, dtype=torch.long)
        pin = layout.device.type == "cuda"
        self.buffers = [torch.empty((len(pages), int(n)), dtype=torch.uint8, pin_memory=pin)
                        for n in layout.piece_sizes]

    def iov(self, blocks: int) -> np.ndarray:
        return self.layout.staged_iov(self.buffers, blocks)

    def to_pages(self, rows: np.ndarray) -> None:
        """Copies the staged pages at rows into the engine's tensors."""
        import torch

        views = self.layout.page_bytes_views(self.layer)
        dev = self.layout.device
        sel = torch.as_tensor(rows, dtype=torch.long)
        idx = self.index[sel].to(dev, non_blocking=True)
        for view, buf in zip(views, self.buffers):
            view.index_copy_(0, idx, buf[sel].to(dev, non_blocking=True))

    def from_pages(self) -> None:
        views = self.layout.page_bytes_views(self.layer)
        idx = self.index.to(self.layout.device)
        for view, buf in zip(views, self.buffers):
            buf.copy_(view.index_select(0, idx))


class ConnectorWorker:
    def __init__(self, layout: KVLayout, session: PoolSession,
                 key_columns: Optional[Sequence[int]] = None):
        """key_columns[l]: where layer l's keys are in a plan's key arrays
        (default l): a tensor-parallel rank's or a pipeline stage's layers
        when the scheduler makes keys for several (scheduler.py)."""
        self.layout = layout
        self.key_columns = list(key_columns) if key_columns is not None else list(range(layout.num_layers))
        if len(self.key_columns) != layout.num_layers:
            raise ValueError("key_columns names %d layers, the layout has %d"
                             % (len(self.key_columns), layout.num_layers))
        self.session = session
        self.stats = TransferStats()
        self._loader = concurrent.futures.ThreadPoolExecutor(1, "tokenmem-load")
        self._saver = concurrent.futures.ThreadPoolExecutor(1, "tokenmem-save")
        self._plan = StepPlan()
        self._events: Optional[List[threading.Event]] = None
        self._load_future = None
        self._lock = threading.Lock()
        self._failures: Dict[str, Tuple[int, int]] = {}   # request -> (first layer, valid block)
        self._pending: Dict[str, int] = {}                # request -> saves in flight
        self._finishing: Set[str] = set()
        self._save_futures: List[concurrent.futures.Future] = []
        self._cuda = layout.device.type == "cuda"
        # CUDA tensors: blocks go straight from the pool to the device when
        # libtokenmem_cuda and a device are there; staged otherwise.
        self._direct = None
        if self._cuda:
            from .. import cuda as cuda_path

            self._direct = cuda_path.load()
        self._registered = []   # pools whose segments the CUDA path pinned

    # -- per step ----------------------------------------------------------

    def bind(self, plan: StepPlan) -> None:
        self._plan = plan
        self._events = None

    def start_load(self) -> None:
        loads = [r for r in self._plan.loads if len(r.keys)]
        if not loads:
            return
        self._events = [threading.Event() for _ in range(self.layout.num_layers)]
        self._load_future = self._loader.submit(self._load, loads, self._events)

    def wait_for_layer_load(self, layer: int) -> None:
        events = self._events
        if events is None:
            return
        if not events[layer].is_set():
            t0 = time.perf_counter()
            events[layer].wait()
            self.stats.load_wait_s += time.perf_counter() - t0

    def save_layer(self, layer: int) -> None:
        with self._lock:
            ranges = [r for r in self._plan.saves if len(r.keys) and not self._failed_at(r.request_id, layer)]
            dropped = sum(len(r.keys) for r in self._plan.saves) - sum(len(r.keys) for r in ranges)
            self.stats.save_dropped += dropped
            for r in ranges:
                self._pending[r.request_id] = self._pending.get(r.request_id, 0) + 1
        if not ranges:
            return
        ready = None
        if self._cuda:
            import torch

            ready = torch.cuda.Event()
            ready.record()
        self._save_futures.append(self._saver.submit(self._save, layer, ranges, ready))
        self._save_futures = [f for f in self._save_futures if not f.done()]

    def load_failed_by(self, layer: int) -> List[str]:
        """Requests of this step whose load fell short in a layer up to `layer`."""
        with self._lock:
            return [req for req, (first, _) in self._failures.items() if first <= layer]

    def take_load_failures(self) -> Dict[str, int]:
        """{request: tokens validly loaded} for this step's loads that fell
        short (waits for the step's loads to end). The engine recomputes
        from there."""
        if self._load_future is not None:
            self._load_future.result()
            self._load_future = None
        with self._lock:
            out = {req: valid for req, (_, valid) in self._failures.items()}
            self._failures.clear()
        block_tokens = self._block_tokens()
        return {req: valid * block_tokens for req, valid in out.items()}

    # -- requests ----------------------------------------------------------

    def finish_request(self, request_id: str) -> bool:
        """True when saves of the request are in flight: keep its pages
        until get_finished() names it."""
        with self._lock:
            if self._pending.get(request_id, 0) > 0:
                self._finishing.add(request_id)
                return True
            return False

    def get_finished(self) -> Set[str]:
        with self._lock:
            done = {r for r in self._finishing if self._pending.get(r, 0) == 0}
            self._finishing -= done
            for r in done:
                self._pending.pop(r, None)
            return done

    def wait_for_save(self) -> None:
        futures, self._save_futures = self._save_futures, []
        for f in futures:
            f.result()

    def close(self) -> None:
        self.wait_for_save()
        self._loader.shutdown(wait=True)
        self._saver.shutdown(wait=True)
        for pool in self._registered:   # unpin before the pools unmap
            try:
                self._direct_unregister(pool)
            except Exception:  # a pool closed already: nothing left to unpin
                pass
        self._registered = []

    def _direct_unregister(self, pool) -> None:
        from .. import cuda as cuda_path

        path = self._direct or cuda_path.load()
        if path is not None:
            path.unregister_pool(pool)

    # -- threads -----------------------------------------------------------

    def _block_tokens(self) -> int:
        for r in self._plan.loads + self._plan.saves:
            return r.block_tokens
        return self.layout.page_tokens * self.layout.pages_per_block

    def _failed_at(self, request_id: str, layer: int) -> bool:
        f = self._failures.get(request_id)
        return f is not None and f[0] <= layer

    def _fail(self, request_id: str, layer: int, valid_block: int) -> None:
        with self._lock:
            old = self._failures.get(request_id)
            if old is None:
                self.stats.load_failures += 1
                self._failures[request_id] = (layer, valid_block)
            else:
                self._failures[request_id] = (min(old[0], layer), min(old[1], valid_block))

    def _load(self, loads: List[BlockRange], events: List[threading.Event]) -> None:
        limits = [r.end for r in loads]
        stream = None
        if self._cuda:
            import torch

            stream = torch.cuda.Stream()
        try:
            pool = self.session.pool()
            for layer in range(self.layout.num_layers):
                t0 = time.perf_counter()
                ranges = [r.head(limits[i]) for i, r in enumerate(loads)]
                live = [(i, r) for i, r in enumerate(ranges) if len(r.keys)]
                if pool is None:
                    for i, r in live:
                        self._fail(r.request_id, layer, r.start)
                        limits[i] = r.start
                elif live:
                    self._load_layer(pool, layer, live, limits, stream)
                self.stats.load_busy_s += time.perf_counter() - t0
                events[layer].set()
        except Exception:  # never wrong KV: the whole load counts as failed
            _log.exception("tokenmem: load failed; recomputing")
            for r in loads:
                self._fail(r.request_id, 0, r.start)
        finally:
            for e in events:
                e.set()

    def _load_direct(self, pool, keys, iovcnt, iov, codes, lengths, stream) -> bool:
        """Blocks from the pool straight into the device tensors; False when
        the CUDA path is not usable (then it is not tried again)."""
        if self._direct.register_pool(pool) != 0:   # also pins segments mapped since
            _log.warning("tokenmem: CUDA registration failed; staging through host memory")
            self._direct = None
            return False
        if all(p is not pool for p in self._registered):
            self._registered.append(pool)
        self._direct.get_many_raw(pool, len(keys), keys.ctypes.data, iovcnt.ctypes.data,
                                  iov.ctypes.data, codes.ctypes.data, lengths.ctypes.data,
                                  stream.cuda_stream if stream is not None else 0)
        return True

    def _load_layer(self, pool, layer, live, limits, stream) -> None:
        ranges = [r for _, r in live]
        keys, iovcnt, iov = _gather(self.layout, layer, ranges, self.key_columns[layer])
        n = len(keys)
        codes = np.zeros(n, dtype=np.int32)
        lengths = np.zeros(n, dtype=np.uint64)
        staging = None
        if not (self._direct is not None
                and self._load_direct(pool, keys, iovcnt, iov, codes, lengths, stream)):
            if self.layout.staged:
                staging = _Staging(self.layout, layer, ranges)
                iov = staging.iov(n)
            get_many_raw(pool, n, keys.ctypes.data, iovcnt.ctypes.data, iov.ctypes.data,
                         codes.ctypes.data, lengths.ctypes.data)
        ok = (codes == 0) & (lengths == self.layout.block_bytes)
        if (codes == _UNAVAILABLE).any():
            self.session.mark_broken(pool)
        used = np.zeros(n, dtype=bool)   # blocks before each range's first failure
        at = 0
        for (i, r), count in zip(live, [len(r.keys) for r in ranges]):
            bad = np.flatnonzero(~ok[at:at + count])
            good = int(bad[0]) if len(bad) else count
            if len(bad):
                self._fail(r.request_id, layer, r.start + good)
                limits[i] = r.start + good
            used[at:at + good] = True
            self.stats.load_blocks += good
            self.stats.load_bytes += good * self.layout.block_bytes
            at += count
        if staging is not None:
            rows = np.flatnonzero(np.repeat(used, self.layout.pages_per_block))
            self._unstage(staging, rows, stream)

    def _unstage(self, staging: "_Staging", rows: np.ndarray, stream) -> None:
        if len(rows) == 0:
            return
        if stream is None:
            staging.to_pages(rows)
            return
        import torch

        with torch.cuda.stream(stream):
            staging.to_pages(rows)
        stream.synchronize()  # the staging buffers may go once the copies are done

    def _save(self, layer: int, ranges: List[BlockRange], ready) -> None:
        try:
            t0 = time.perf_counter()
            pool = self.session.pool()
            n = sum(len(r.keys) for r in ranges)
            if pool is None:
                self.stats.save_dropped += n
                return
            keys, iovcnt, iov = _gather(self.layout, layer, ranges, self.key_columns[layer])
            if self.layout.staged:
                if ready is not None:
                    ready.synchronize()
                staging = _Staging(self.layout, layer, ranges)
                staging.from_pages()
                iov = staging.iov(n)
            codes = np.zeros(n, dtype=np.int32)
            put_many_raw(pool, n, keys.ctypes.data, iovcnt.ctypes.data, iov.ctypes.data,
                         codes.ctypes.data, 0)
            ok = int((codes == 0).sum())
            self.stats.save_blocks += ok
            self.stats.save_bytes += ok * self.layout.block_bytes
            self.stats.save_failed += n - ok
            if (codes == _UNAVAILABLE).any():
                self.session.mark_broken(pool)
            self.stats.save_busy_s += time.perf_counter() - t0
        except Exception:  # a lost save costs a later recompute, nothing else
            _log.exception("tokenmem: save failed")
            self.stats.save_failed += sum(len(r.keys) for r in ranges)
        finally:
            with self._lock:
                for r in ranges:
                    self._pending[r.request_id] -= 1


__all__ = ["ConnectorWorker", "TransferStats"]
