"""A feed answering 304 leaves its connection open for the next poll: at 10,000 feeds a new
connection (and, over HTTPS, a TLS handshake) per unchanged feed is most of a poll's cost."""

from __future__ import annotations

import socket
import threading

from monitor.config import PollSettings
from monitor.fetch import Fetcher
from monitor.models import Fetched, NotModified
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
