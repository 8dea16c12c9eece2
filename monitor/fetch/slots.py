"""Per-host request slots: at most `FetchLimits.per_host` requests in flight to one host.

A request holds the slot of the host it is talking to; a redirect to another
host moves it (released first, so two requests redirecting towards each
other's hosts cannot deadlock).
"""

from __future__ import annotations

import threading

__all__ = ["HeldHostSlot", "HostSlots"]


class HostSlots:
    """Per-host semaphores, created on demand and dropped when nobody holds or waits for them."""

    def __init__(self, per_host: int) -> None:
        self._per_host = per_host
        self._lock = threading.Lock()
        self._entries: dict[str, tuple[threading.Semaphore, list[int]]] = {}

    def acquire(self, host: str, timeout: float | None) -> bool:
        with self._lock:
            semaphore, users = self._entries.setdefault(
                host, (threading.Semaphore(self._per_host), [0])
            )
            users[0] += 1
        acquired = semaphore.acquire(timeout=None if timeout is None else max(0.0, timeout))
        if not acquired:
            self._leave(host)
        return acquired

    def release(self, host: str) -> None:
        with self._lock:
            semaphore = self._entries[host][0]
        semaphore.release()
        self._leave(host)

    def _leave(self, host: str) -> None:
        with self._lock:
            users = self._entries[host][1]
            users[0] -= 1
            if users[0] == 0:
                del self._entries[host]


class HeldHostSlot:
    """The per-host slot a request holds; moves when a redirect changes host."""

    def __init__(self, slots: HostSlots, host: str) -> None:
        self._slots = slots
        self.host: str | None = None
        slots.acquire(host, None)
        self.host = host

    def move_to(self, host: str, timeout: float) -> bool:
        if host == self.host:
            return True
        self.release()
        if not self._slots.acquire(host, timeout):
            return False
        self.host = host
        return True

    def release(self) -> None:
        if self.host is not None:
            self._slots.release(self.host)
            self.host = None
