"""The network layer under httpx: whole-request deadline, connect-time address guard, pools.

Limits. `FetchLimits.timeout` covers the whole request (slot wait excluded):
connect, TLS, headers, every body read and every redirect hop; httpx itself
only has per-read timeouts, so a 1 byte/s drip would otherwise never end.
The `Fetcher` sets `request_deadline` for the request it runs; every stream
operation here is bounded by it.

Connect time (every hop, every new connection): resolver(host) ─► every
address vetted by `AddressPolicy` ─► connect to exactly that IP ─► a stream
whose every read/write is bounded by the request's deadline.

Requests to the trusted site (the configured feed's) and to everything else
go through two separate connection pools, so a kept-alive connection to a
private host can never be reused by an untrusted request.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import ipaddress
import socket
import ssl
import time
from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import httpcore
import httpx

from monitor.fetch.addresses import AddressPolicy, IPAddress, Resolver
from monitor.models import FetchLimits

__all__ = [
    "KEPT_CONNECTIONS_PER_SLOT",
    "TRUSTED_HOP",
    "AddressBlocked",
    "GuardedBackend",
    "LinearConnectionPool",
    "PooledTransport",
    "RoutingTransport",
    "fetch_cutoff",
    "request_deadline",
]

# Connections a pool keeps (open or idle) per request slot (`FetchLimits.concurrency`).
KEPT_CONNECTIONS_PER_SLOT = 2

# How often the pool looks at every idle connection for an expired keep-alive or a server
# that closed it; the connection a request is about to reuse is always looked at first.
IDLE_SWEEP_SECONDS = 1.0

# --------------------------------------------------------------------------- deadline

# The monotonic deadline of the request running in this thread. Connections are
# pooled and shared, so the deadline is looked up at each read, not stored on the stream.
request_deadline: ContextVar[float | None] = ContextVar("monitor_fetch_deadline", default=None)

# Set by a caller (the pipeline, for a feed's poll.feed_deadline): the monotonic instant
# by which every request it starts in this context must end, whatever time is left of
# the request's own timeout.
fetch_cutoff: ContextVar[float | None] = ContextVar("monitor_fetch_cutoff", default=None)


def _bounded_timeout(timeout: float | None, on_expiry: type[Exception]) -> float | None:
    deadline = request_deadline.get()
    if deadline is None:
        return timeout
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise on_expiry("the request deadline has passed")
    return remaining if timeout is None else min(timeout, remaining)


class _DeadlineStream(httpcore.NetworkStream):
    """A network stream whose every operation also ends at the current request's deadline."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded_timeout(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded_timeout(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded_timeout(timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


# --------------------------------------------------------------------------- connect-time guard


class AddressBlocked(Exception):
    """Raised inside httpcore's connect; passes through httpx unchanged (not an httpcore error)."""

    def __init__(self, host: str, address: IPAddress, reason: str) -> None:
        super().__init__(f"{host} resolves to {address}, a {reason} address")
        self.address = address
        self.reason = reason


class GuardedBackend(httpcore.SyncBackend):
    """Resolves with the injected resolver, vets every address, connects to exactly that IP.

    Connecting to the vetted IP (rather than letting the socket layer resolve
    the name again) closes the DNS-rebinding window. TLS still uses the host
    name for SNI and certificate checks: httpcore passes it to start_tls.
    `policy=None` is the trusted pool: any address.
    """

    def __init__(
        self,
        resolver: Resolver,
        policy: AddressPolicy | None,
        lookups: concurrent.futures.ThreadPoolExecutor,
    ) -> None:
        self._resolver = resolver
        self._policy = policy
        self._lookups = lookups

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        budget = _bounded_timeout(timeout, httpcore.ConnectTimeout)
        started = time.monotonic()
        addresses = self._resolve(host, port, budget)
        if self._policy is not None:
            for address in addresses:
                reason = self._policy.refusal(host, address)
                if reason is not None:
                    raise AddressBlocked(host, address, reason)
        options = list(socket_options or ())
        last_error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            remaining = None if budget is None else budget - (time.monotonic() - started)
            if remaining is not None and remaining <= 0:
                raise httpcore.ConnectTimeout(f"could not connect to {host} in time")
            try:
                stream = super().connect_tcp(str(address), port, remaining, local_address, options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                last_error = error
                continue
            return _DeadlineStream(stream)
        raise last_error

    def _resolve(self, host: str, port: int, budget: float | None) -> list[IPAddress]:
        # getaddrinfo has no timeout of its own: run it aside and stop waiting at the budget.
        lookup = self._lookups.submit(self._resolver, host, port)
        try:
            answers = lookup.result(timeout=budget)
        except concurrent.futures.TimeoutError:
            lookup.cancel()
            raise httpcore.ConnectTimeout(
                f"the DNS lookup of {host} did not answer in time"
            ) from None
        except (socket.gaierror, UnicodeError) as error:
            raise httpcore.ConnectError(f"DNS lookup failed: {error}") from None
        addresses = [ipaddress.ip_address(answer) for answer in answers]
        if not addresses:
            raise httpcore.ConnectError("DNS lookup failed: no address")
        return addresses


class LinearConnectionPool(httpcore.ConnectionPool):
    """httpcore's connection pool, with its assignment of requests to connections looking at
    the requested origin's connections only, instead of every connection several times.

    httpcore 1.0 runs `_assign_requests_to_connections` twice per request, under the
    pool's lock; it counted the connections again for each idle connection (quadratic)
    and polled every idle socket. With 128 connections (64 requests in flight) that was
    about 2,800 method calls and 40 `poll()` calls per pass, while the other polling
    threads queued on the lock (3,000 polls of bench/bench_daemon_scale.py's feeds under
    cProfile: 17.7 million `is_idle` calls). The upstream fix (encode/httpcore#1035) is
    not released. Even one pass over every connection per request was a tenth of the
    daemon's CPU at 10,000 feeds (256 connections kept). Here:

    * the connections are also kept by origin: a request looks at its origin's
      connections only, and drops the closed ones it meets there;
    * every connection is looked at once every IDLE_SWEEP_SECONDS (closed ones dropped,
      idle ones whose keep-alive expired or whose server closed them closed), and when
      the pool is full and a request needs a new connection; on every pass too when
      `max_keepalive_connections` is below `max_connections`, where idle connections
      beyond it are closed, oldest first, as httpcore does;
    * the connection chosen for a request is checked for an expired keep-alive or a
      server-side close (`has_expired`) before it is used, as every idle one was before;
    * the rest (which connection is picked, when one is created or an idle one closed to
      make room) is httpcore's.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._next_sweep = 0.0
        self._by_origin: dict[tuple[bytes, bytes, int], list[httpcore.ConnectionInterface]] = {}

    def _assign_requests_to_connections(self) -> list[httpcore.ConnectionInterface]:
        closing: list[httpcore.ConnectionInterface] = []
        now = time.monotonic()
        if now >= self._next_sweep:
            self._next_sweep = now + IDLE_SWEEP_SECONDS
            self._sweep(closing, expired_too=True)
        elif self._max_keepalive_connections < self._max_connections:
            self._sweep(closing, expired_too=False)
        for pool_request in [request for request in self._requests if request.is_queued()]:
            origin = pool_request.request.url.origin
            reused = self._available(origin, closing)
            if reused is not None:
                pool_request.assign_to_connection(reused)
                continue
            if len(self._connections) >= self._max_connections:
                self._sweep(closing, expired_too=False)  # closed ones make room first
            if len(self._connections) >= self._max_connections:
                spare = next((each for each in self._connections if each.is_idle()), None)
                if spare is None:
                    continue  # the request waits for a connection to be handed back
                self._forget(spare)  # closed to make room for this origin
                closing.append(spare)
            created = self.create_connection(origin)
            self._connections.append(created)
            self._by_origin.setdefault(_origin_key(origin), []).append(created)
            pool_request.assign_to_connection(created)
        return closing

    def _sweep(self, closing: list[httpcore.ConnectionInterface], *, expired_too: bool) -> None:
        """Every connection looked at: closed ones dropped, idle ones closed when their
        keep-alive expired (`expired_too`) or beyond `max_keepalive_connections`, oldest
        first. The origins' lists are rebuilt from what is kept."""
        kept: list[httpcore.ConnectionInterface] = []
        idle = 0
        for connection in self._connections:
            if connection.is_closed():
                continue
            if connection.is_idle():
                if expired_too and connection.has_expired():
                    closing.append(connection)
                    continue
                idle += 1
            kept.append(connection)
        surplus = idle - self._max_keepalive_connections
        if surplus > 0:  # the oldest idle connections go first
            for connection in kept:
                if surplus and connection.is_idle():
                    closing.append(connection)
                    surplus -= 1
            kept = [connection for connection in kept if connection not in closing]
        self._connections[:] = kept
        by_origin: dict[tuple[bytes, bytes, int], list[httpcore.ConnectionInterface]] = {}
        for connection in kept:
            by_origin.setdefault(_connection_origin(connection), []).append(connection)
        self._by_origin = by_origin

    def _forget(self, connection: httpcore.ConnectionInterface) -> None:
        with contextlib.suppress(ValueError):  # `close()` may have emptied the list
            self._connections.remove(connection)
        connections = self._by_origin.get(_connection_origin(connection), [])
        with contextlib.suppress(ValueError):
            connections.remove(connection)

    def _available(
        self, origin: httpcore.Origin, closing: list[httpcore.ConnectionInterface]
    ) -> httpcore.ConnectionInterface | None:
        """The first of `origin`'s connections that can take a request now; the closed ones
        met on the way are dropped, the expired ones moved to `closing`."""
        connections = self._by_origin.get(_origin_key(origin))
        if not connections:
            return None
        for connection in list(connections):
            if connection.is_closed():
                self._forget(connection)
                continue
            if not connection.is_available():
                continue
            if connection.is_idle() and connection.has_expired():
                self._forget(connection)
                closing.append(connection)
                continue
            return connection
        return None


def _origin_key(origin: httpcore.Origin) -> tuple[bytes, bytes, int]:
    return (origin.scheme, origin.host, origin.port)


def _connection_origin(connection: httpcore.ConnectionInterface) -> tuple[bytes, bytes, int]:
    """The origin a connection serves: httpcore's `HTTPConnection` keeps it in `_origin`
    (a connection of another kind gets a key of its own: it is never reused, only closed
    to make room)."""
    origin = getattr(connection, "_origin", None)
    if isinstance(origin, httpcore.Origin):
        return _origin_key(origin)
    return (b"", repr(connection).encode(), id(connection))  # pragma: no cover - another pool


class PooledTransport(httpx.HTTPTransport):
    """httpx's transport with its connection pool rebuilt around our network backend.

    httpx 0.28 does not expose httpcore's `network_backend`; everything else
    (request/response conversion, exception mapping) is httpx's own code.
    """

    def __init__(
        self, backend: httpcore.NetworkBackend, limits: FetchLimits, ssl_context: ssl.SSLContext
    ) -> None:
        super().__init__(verify=ssl_context, trust_env=False)
        # Requests in flight are bounded by the fetcher's own slots (`concurrency`); the pool
        # bounds connections, idle ones included. Sized to `concurrency` it kept fewer
        # connections than a poll uses (per_host to each of many sites), so it closed one
        # site's idle connection to open another's: one request in six paid a new TCP (and
        # TLS) handshake in bench_poll.py --world small. Twice as many stay open.
        connections = KEPT_CONNECTIONS_PER_SLOT * limits.concurrency
        self._pool = LinearConnectionPool(
            ssl_context=ssl_context,
            max_connections=connections,
            max_keepalive_connections=connections,
            keepalive_expiry=30.0,
            network_backend=backend,
        )


TRUSTED_HOP = "monitor.trusted_hop"


class RoutingTransport(httpx.BaseTransport):
    """Sends hops on the feed's own site through the trusted pool, all others through the guarded one."""

    def __init__(self, guarded: httpx.BaseTransport, trusted: httpx.BaseTransport) -> None:
        self._guarded = guarded
        self._trusted = trusted

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        trusted = request.extensions.pop(TRUSTED_HOP, False) is True
        return (self._trusted if trusted else self._guarded).handle_request(request)

    def close(self) -> None:
        self._guarded.close()
        self._trusted.close()
