"""The replay cache of EHR tokens: each (issuer, jti) is accepted once until the token expires.

The default `ReplayCache` is in-memory, so it protects one process: a service run with several
worker processes needs a shared store implementing `ReplayStore`; `ips-screen serve` uses its
SQLite store in state_dir (`ips_screen.service.store.ServiceStore`).
"""

from __future__ import annotations

import heapq
import threading
from typing import Protocol


class ReplayCacheFull(Exception):
    """The replay cache holds its maximum of unexpired entries; new tokens cannot be recorded."""


class ReplayStore(Protocol):
    def add(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        """Record (iss, jti) until `expires_at`; False if it is already recorded and unexpired.

        May raise `ReplayCacheFull`; the verifier then rejects the token (fails closed)."""
        ...


class ReplayCache:
    """In-memory, thread-safe replay store bounded to `max_entries` unexpired entries.

    Expired entries are pruned on every `add`. When the cache is full of unexpired entries a new
    token is refused (`ReplayCacheFull`) rather than evicting an entry that could then be replayed.
    """

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._max_entries = max_entries
        self._expiry: dict[tuple[str, str], float] = {}
        self._heap: list[tuple[float, tuple[str, str]]] = []
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            return len(self._expiry)

    def add(self, iss: str, jti: str, expires_at: float, now: float) -> bool:
        key = (iss, jti)
        with self._lock:
            self._prune(now)
            if key in self._expiry:
                return False
            if len(self._expiry) >= self._max_entries:
                raise ReplayCacheFull(f"{len(self._expiry)} unexpired entries")
            self._expiry[key] = expires_at
            heapq.heappush(self._heap, (expires_at, key))
            return True

    def _prune(self, now: float) -> None:
        while self._heap and self._heap[0][0] < now:
            expires_at, key = heapq.heappop(self._heap)
            if self._expiry.get(key) == expires_at:
                del self._expiry[key]
