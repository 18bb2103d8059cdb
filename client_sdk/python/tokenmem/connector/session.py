"""A pool that survives the agent going away.

Every call that needs the agent may fail with UNAVAILABLE when the agent
restarts; the session is then over (docs/sdk.md). PoolSession hands out the
current Pool, forgets it when a caller reports it broken, and connects again
on a later request, at most once per reconnect_interval_s; meanwhile pool()
returns None and the engine recomputes. A forgotten Pool is not closed here:
threads still using it keep it alive, and blocks it already mapped stay
readable, so their reads stay correct.

Thread safety: every method may be called from any thread.
"""

import logging
import threading
import time
from typing import Callable, Optional

from ..client import Pool, TokenmemError
from .config import ConnectorConfig, default_connect

_log = logging.getLogger("tokenmem.connector")


class PoolSession:
    def __init__(self, config: ConnectorConfig,
                 connect: Optional[Callable[[ConnectorConfig], tuple]] = None,
                 clock: Callable[[], float] = time.monotonic):
        self._config = config
        self._connect = connect or default_connect
        self._clock = clock
        self._lock = threading.Lock()
        self._client = None
        self._pool: Optional[Pool] = None
        self._next_try = 0.0
        self.connects = 0
        self.failures = 0

    def pool(self) -> Optional[Pool]:
        """The attached pool, connecting first if needed; None while the
        agent cannot be reached (the caller recomputes)."""
        with self._lock:
            if self._pool is not None:
                return self._pool
            now = self._clock()
            if now < self._next_try:
                return None
            try:
                client, pool = self._connect(self._config)
            except (TokenmemError, OSError, ValueError) as e:
                self.failures += 1
                self._next_try = now + self._config.reconnect_interval_s
                _log.warning("tokenmem: cannot connect (%s); computing without the cache", e)
                return None
            self._client, self._pool = client, pool
            self.connects += 1
            return pool

    @property
    def remote(self) -> Optional[bool]:
        """True when connected over the remote path (config.agent_address),
        False over the local socket, None while not connected."""
        with self._lock:
            client = self._client
        return None if client is None else bool(getattr(client, "remote", False))

    def mark_broken(self, pool: Optional[Pool]) -> None:
        """Reports that pool's session ended (a call returned UNAVAILABLE)."""
        with self._lock:
            if pool is not None and pool is self._pool:
                _log.warning("tokenmem: the agent went away; reconnecting on a later request")
                self._pool = None
                self._client = None
                self._next_try = self._clock()

    def close(self) -> None:
        with self._lock:
            pool, client = self._pool, self._client
            self._pool = self._client = None
        if pool is not None:
            pool.close()
        if client is not None:
            client.close()


__all__ = ["PoolSession"]
