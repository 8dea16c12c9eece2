"""`LinearConnectionPool`: httpcore's pool with its assignment pass made linear; which
connection a request gets, and when one is closed, must be what httpcore's pool does."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import httpcore
import pytest

from monitor.fetch import transport
from monitor.fetch.transport import LinearConnectionPool
from tests.servers import RawServer, read_request_head

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def keep_alive(connection: socket.socket, stopping: threading.Event) -> None:
    """Answers every request on the connection, keeping it open."""
    while not stopping.is_set():
        if not read_request_head(connection):
            return
        connection.sendall(OK)


def one_answer_then_close(connection: socket.socket, stopping: threading.Event) -> None:
    """Answers one request with keep-alive, then closes the connection while it is idle."""
    if read_request_head(connection):
        connection.sendall(OK)
        time.sleep(0.05)  # the client has read the answer and put the connection back


def slow_keep_alive(connection: socket.socket, stopping: threading.Event) -> None:
    """Like `keep_alive`, 20 ms per answer, so that requests pile up in the pool."""
    while not stopping.is_set():
        if not read_request_head(connection):
            return
        stopping.wait(0.02)
        connection.sendall(OK)


def keep_alive_once_all_are_open(count: int) -> Callable[[socket.socket, threading.Event], None]:
    """Like `keep_alive`, answering only once `count` connections are open: `count` requests
    at once then keep `count` connections in the pool."""
    all_connected = threading.Barrier(count)

    def answer(connection: socket.socket, stopping: threading.Event) -> None:
        all_connected.wait(timeout=10)
        keep_alive(connection, stopping)

    return answer


def get(pool: httpcore.ConnectionPool, url: str) -> bytes:
    response = pool.request("GET", url)
    assert response.status == 200
    return response.content


def test_idle_connection_is_reused() -> None:
    with RawServer(keep_alive) as server, LinearConnectionPool(max_connections=4) as pool:
        for _ in range(5):
            assert get(pool, server.url("/")) == b"ok"
        assert server.connections == 1


def test_connection_the_server_closed_is_not_reused_even_between_sweeps() -> None:
    """The idle sweep runs at most once a second; the connection picked for a request is
    checked anyway, so a request never goes out on a socket the server has closed."""
    with (
        RawServer(one_answer_then_close) as server,
        LinearConnectionPool(max_connections=4) as pool,
    ):
        for _ in range(3):
            assert get(pool, server.url("/")) == b"ok"
            time.sleep(0.1)  # the server has closed the connection by now
        assert server.connections == 3
        assert len(pool.connections) == 1


def test_connection_past_its_keep_alive_is_replaced() -> None:
    with (
        RawServer(keep_alive) as server,
        LinearConnectionPool(max_connections=4, keepalive_expiry=0.05) as pool,
    ):
        get(pool, server.url("/"))
        get(pool, server.url("/"))
        assert server.connections == 1
        time.sleep(0.1)
        get(pool, server.url("/"))
        assert server.connections == 2
        assert len(pool.connections) == 1


def test_surplus_idle_connections_are_closed() -> None:
    with (
        RawServer(slow_keep_alive) as server,
        LinearConnectionPool(max_connections=6, max_keepalive_connections=2) as pool,
        ThreadPoolExecutor(max_workers=6) as threads,
    ):
        assert list(threads.map(lambda _: get(pool, server.url("/")), range(6))) == [b"ok"] * 6
        assert server.connections == 6
        get(pool, server.url("/"))  # the pass before this request closes the surplus
        assert len(pool.connections) <= 2


def test_many_threads_share_few_connections_across_origins() -> None:
    """More requests than connections, on two origins: requests queue for a connection,
    and an idle connection to one origin is closed to make room for the other."""
    with (
        RawServer(slow_keep_alive) as first,
        RawServer(slow_keep_alive) as second,
        LinearConnectionPool(max_connections=3) as pool,
        ThreadPoolExecutor(max_workers=12) as threads,
    ):
        urls = [first.url("/"), second.url("/")] * 30
        assert list(threads.map(lambda url: get(pool, url), urls)) == [b"ok"] * 60
        assert len(pool.connections) <= 3
        assert first.connections + second.connections >= 2


def test_a_pass_looks_at_each_connection_a_bounded_number_of_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """httpcore 1.0's pass counted the idle connections again for every idle connection:
    with 40 kept alive, some 1,600 `is_idle` calls per request (twice per request, under
    the pool's lock). Here a request costs a few calls per connection."""
    kept = 40
    with (
        RawServer(keep_alive_once_all_are_open(kept)) as server,
        LinearConnectionPool(max_connections=64) as pool,
        ThreadPoolExecutor(max_workers=kept) as threads,
    ):
        list(threads.map(lambda _: get(pool, server.url("/")), range(kept)))
        assert len(pool.connections) == kept
        calls = 0
        original = httpcore.HTTPConnection.is_idle

        def counting(self: httpcore.HTTPConnection) -> bool:
            nonlocal calls
            calls += 1
            return original(self)

        monkeypatch.setattr(httpcore.HTTPConnection, "is_idle", counting)
        get(pool, server.url("/"))
        assert calls <= 6 * kept


def test_between_sweeps_a_request_looks_at_its_own_origins_connections_only(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With 10,000 feeds the pool keeps 256 connections to a few dozen sites: a pass over
    all of them for each request was a tenth of the daemon's CPU."""
    monkeypatch.setattr(transport, "IDLE_SWEEP_SECONDS", 3600.0)  # one sweep, at the start
    kept = 30
    with (
        RawServer(keep_alive_once_all_are_open(kept)) as busy,
        RawServer(keep_alive) as other,
        LinearConnectionPool(max_connections=64) as pool,
        ThreadPoolExecutor(max_workers=kept) as threads,
    ):
        get(pool, other.url("/"))
        list(threads.map(lambda _: get(pool, busy.url("/")), range(kept)))
        assert len(pool.connections) == kept + 1
        looked_at: list[httpcore.HTTPConnection] = []
        for method in ("is_idle", "is_closed", "is_available"):
            original = getattr(httpcore.HTTPConnection, method)

            def counting(
                self: httpcore.HTTPConnection, original: Callable[..., bool] = original
            ) -> bool:
                looked_at.append(self)
                return original(self)

            monkeypatch.setattr(httpcore.HTTPConnection, method, counting)
        for _ in range(3):
            assert get(pool, other.url("/")) == b"ok"
        assert other.connections == 1
        assert len(set(map(id, looked_at))) == 1  # only the other site's connection
