"""Real local servers for tests: a routed HTTP server and a raw TCP server, both on 127.0.0.1.

`HTTPTestServer` serves a dict of path -> `Reply` (or a callable building one
from the `Received` request, POST bodies included), counts requests per path, answers conditional
GETs (ETag / If-None-Match, Last-Modified / If-Modified-Since), records the
most requests it had in flight per Host name, and speaks TLS when given a
server-side `ssl.SSLContext`::

    with HTTPTestServer({"/feed": Reply(body=b"<rss/>", etag='"v1"')}) as server:
        fetcher.fetch_feed(server.url("/feed"))
        assert server.count("/feed") == 1

`RawServer` hands every accepted connection to a handler function in its own
thread and counts connections: stalls, drips, half responses, and canaries
that must never be reached (`RawServer()` closes every connection at once).
Every wait inside the servers ends when the server stops, so teardown is quick.
"""

from __future__ import annotations

import contextlib
import email.utils
import socket
import ssl
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

__all__ = [
    "HTTPTestServer",
    "RawServer",
    "Received",
    "Reply",
    "drip",
    "read_request_head",
    "stall_after_headers",
]


@dataclass(frozen=True)
class Reply:
    """One response. `body` bytes get a Content-Length; a callable streams its chunks, then closes.

    `etag` / `last_modified` are sent as headers and honoured for conditional
    requests (304 without a body). `delay` seconds pass before the status line.
    """

    status: int = 200
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | Callable[[], Iterable[bytes]] = b""
    etag: str | None = None
    last_modified: str | None = None
    delay: float = 0.0


@dataclass(frozen=True)
class Received:
    """A request as the server saw it; header names lower-cased; `body` for a POST."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def host(self) -> str:
        """The Host header without its port."""
        host = self.headers.get("host", "")
        return host.rsplit(":", 1)[0] if not host.endswith("]") else host


Route = Reply | Callable[[Received], Reply]


def _not_modified(reply: Reply, request: Received) -> bool:
    if_none_match = request.headers.get("if-none-match")
    if reply.etag is not None and if_none_match is not None:
        candidates = {tag.strip() for tag in if_none_match.split(",")}
        return reply.etag in candidates or "*" in candidates
    if_modified_since = request.headers.get("if-modified-since")
    if reply.last_modified is not None and if_modified_since is not None:
        try:
            since = email.utils.parsedate_to_datetime(if_modified_since)
            modified = email.utils.parsedate_to_datetime(reply.last_modified)
        except (TypeError, ValueError):
            return False
        return modified <= since
    return False


class _QuietHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0  # accepted so far

    def process_request(self, request: Any, client_address: Any) -> None:
        self.connections += 1  # the serving loop's thread alone runs this
        super().process_request(request, client_address)

    def handle_error(self, request: object, client_address: object) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError):
            return  # a client hanging up is what many tests provoke
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Serving:
    """A server on a thread of its own: ``with`` starts it and stops it."""

    _thread: threading.Thread
    _stopping: threading.Event

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


class HTTPTestServer(_Serving):
    """A threaded HTTP/1.1 server on 127.0.0.1 with per-path routes (unknown paths: 404)."""

    def __init__(
        self, routes: Mapping[str, Route] | None = None, *, tls: ssl.SSLContext | None = None
    ) -> None:
        self.routes: dict[str, Route] = dict(routes or {})
        self.scheme = "http" if tls is None else "https"
        self.requests: list[Received] = []
        self._lock = threading.Lock()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: Counter[str] = Counter()
        self._max_in_flight_total = 0
        self._stopping = threading.Event()
        self._httpd = _QuietHTTPServer(("127.0.0.1", 0), self._handler_class())
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        # A short poll interval keeps stop() (which waits for the serving loop) quick.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        """An absolute URL for `path`; `host` may be a name a test resolver maps to 127.0.0.1."""
        return f"{self.scheme}://{host}:{self.port}{path}"

    def count(self, path: str) -> int:
        with self._lock:
            return sum(1 for request in self.requests if request.path == path)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (a client that keeps them alive opens few)."""
        return self._httpd.connections

    def max_in_flight(self, host: str | None = None) -> int:
        """The most requests handled at once, for one Host name or overall."""
        with self._lock:
            return self._max_in_flight[host] if host is not None else self._max_in_flight_total

    def stop(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    # ------------------------------------------------------------------ handling

    def _route(self, request: Received) -> Reply:
        route = self.routes.get(request.path) or self.routes.get(request.path.split("?", 1)[0])
        if route is None:
            return Reply(404, {"Content-Type": "text/plain"}, b"no such route\n")
        return route(request) if callable(route) else route

    def _enter(self, request: Received) -> None:
        with self._lock:
            self.requests.append(request)
            self._in_flight[request.host] += 1
            self._max_in_flight[request.host] = max(
                self._max_in_flight[request.host], self._in_flight[request.host]
            )
            self._max_in_flight_total = max(
                self._max_in_flight_total, sum(self._in_flight.values())
            )

    def _leave(self, request: Received) -> None:
        with self._lock:
            self._in_flight[request.host] -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                request = Received(
                    method="GET",
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                )
                self._handle(request)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                request = Received(
                    method="POST",
                    path=self.path,
                    headers={name.lower(): value for name, value in self.headers.items()},
                    body=self.rfile.read(length),
                )
                self._handle(request)

            def _handle(self, request: Received) -> None:
                server._enter(request)
                try:
                    self._answer(server._route(request), request)
                except (BrokenPipeError, ConnectionResetError):
                    self.close_connection = True  # the client gave up: expected in these tests
                finally:
                    server._leave(request)

            def _answer(self, reply: Reply, request: Received) -> None:
                if reply.delay and server._stopping.wait(reply.delay):
                    return
                status = 304 if _not_modified(reply, request) else reply.status
                self.send_response(status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                if reply.etag is not None:
                    self.send_header("ETag", reply.etag)
                if reply.last_modified is not None:
                    self.send_header("Last-Modified", reply.last_modified)
                if status == 304:
                    self.end_headers()
                    return
                if isinstance(reply.body, bytes):
                    if not any(name.lower() == "content-length" for name in reply.headers):
                        self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    self.wfile.write(reply.body)
                    return
                self.send_header("Connection", "close")
                self.end_headers()
                self.close_connection = True
                for chunk in reply.body():
                    if server._stopping.is_set():
                        return
                    self.wfile.write(chunk)

            def log_message(self, format: str, *args: object) -> None:
                pass  # keep test output clean

        return Handler


# ---------------------------------------------------------------------------- raw TCP


ConnectionHandler = Callable[[socket.socket, threading.Event], None]


def _close_at_once(connection: socket.socket, stopping: threading.Event) -> None:
    pass


class RawServer(_Serving):
    """A TCP server on 127.0.0.1 running `handler(connection, stopping)` per connection.

    The connection is closed after the handler returns; `stopping` is set when
    the server stops, so handlers should wait on it rather than sleep.
    """

    def __init__(self, handler: ConnectionHandler = _close_at_once) -> None:
        self._handler = handler
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.01)  # how long stop() may wait for the accept loop
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._connections = 0
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def port(self) -> int:
        return int(self._listener.getsockname()[1])

    @property
    def connections(self) -> int:
        """How many connections were accepted so far."""
        with self._lock:
            return self._connections

    def url(self, path: str = "/", host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self._connections += 1
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        # The client going away is what these servers provoke.
        with connection, contextlib.suppress(OSError):
            self._handler(connection, self._stopping)


def read_request_head(connection: socket.socket, timeout: float = 5.0) -> bytes:
    """Read up to the blank line ending the request headers (or until the client stops sending)."""
    connection.settimeout(timeout)
    head = b""
    while b"\r\n\r\n" not in head:
        data = connection.recv(4096)
        if not data:
            break
        head += data
    return head


def stall_after_headers(content_length: int = 1000) -> ConnectionHandler:
    """Send a 200 status line and headers promising a body, then nothing until the server stops."""

    def handler(connection: socket.socket, stopping: threading.Event) -> None:
        read_request_head(connection)
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/rss+xml\r\n"
            b"Content-Length: %d\r\n\r\n" % content_length
        )
        stopping.wait()

    return handler


def drip(prefix: bytes, interval: float, byte: bytes = b" ") -> ConnectionHandler:
    """Send `prefix`, then one `byte` every `interval` seconds until the client leaves or the server stops."""

    def handler(connection: socket.socket, stopping: threading.Event) -> None:
        read_request_head(connection)
        connection.sendall(prefix)
        while not stopping.wait(interval):
            connection.sendall(byte)

    return handler
