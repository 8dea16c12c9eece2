"""What a poll repeated 10,000 times a round must not pay for: a new connection after each
304 (and, over HTTPS, a TLS handshake), an import attempt at each feed parsed."""

from __future__ import annotations

import socket
import sys
import threading
from collections.abc import Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType

from monitor.config import PollSettings
from monitor.fetch import Fetcher
from monitor.models import Fetched, NotModified, ParsedFeed
from monitor.parse import parse_feed
from tests.servers import RawServer, read_request_head

BODY = b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title></channel></rss>'


def keep_alive_feed(connection: socket.socket, stopping: threading.Event) -> None:
    """Answers every request on the connection: the feed, then 304 to a conditional GET."""
    while not stopping.is_set():
        head = read_request_head(connection)
        if not head:
            return
        if b'if-none-match: "v1"' in head.lower():
            connection.sendall(b'HTTP/1.1 304 Not Modified\r\nETag: "v1"\r\n\r\n')
        else:
            connection.sendall(
                b'HTTP/1.1 200 OK\r\nETag: "v1"\r\nContent-Type: application/rss+xml\r\n'
                b"Content-Length: %d\r\n\r\n%s" % (len(BODY), BODY)
            )


def test_polls_answered_304_reuse_one_connection() -> None:
    with RawServer(keep_alive_feed) as server, Fetcher(PollSettings()) as fetcher:
        first = fetcher.fetch_feed(server.url("/feed.xml"))
        assert isinstance(first, Fetched)
        for _ in range(3):
            again = fetcher.fetch_feed(server.url("/feed.xml"), first.validators)
            assert isinstance(again, NotModified)
        assert server.connections == 1


class ImportSpy:
    """A meta-path finder that records every module looked up and finds none itself."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        self.names.append(name)
        return None


def test_parsing_a_feed_looks_up_no_module() -> None:
    parse_feed(BODY, url="http://127.0.0.1/feed.xml", headers={})  # whatever loads once
    spy = ImportSpy()
    sys.meta_path.insert(0, spy)
    try:
        parsed = parse_feed(BODY, url="http://127.0.0.1/feed.xml", headers={})
    finally:
        sys.meta_path.remove(spy)
    assert isinstance(parsed, ParsedFeed) and parsed.title == "T"
    assert spy.names == []
