"""monitor.fetch against real servers on 127.0.0.1: happy paths, hostile servers, SSRF attempts.

Fake host names (feeds.test, rebind.test, ...) are mapped to addresses by an
injected resolver; nothing here leaves the machine.
"""

from __future__ import annotations

import gzip
import ipaddress
import shutil
import socket
import ssl
import struct
import subprocess
import sys
import threading
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import brotli
import pytest
import zstandard

from monitor.fetch import (
    DEFAULT_USER_AGENT,
    AddressPolicy,
    Fetcher,
    FetchLimits,
    Resolver,
    host_of,
    non_global_reason,
    parse_retry_after,
    site_of,
)
from monitor.models import Fetched, FetchErrorKind, FetchFailed, NotModified, Validators
from tests.corpus import REPO_ROOT
from tests.servers import (
    HTTPTestServer,
    RawServer,
    Received,
    Reply,
    drip,
    read_request_head,
    stall_after_headers,
)

MIB = 1024 * 1024
RSS = b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title></channel></rss>'
QUICK = FetchLimits(timeout=5.0, connect_timeout=2.0)
TIGHT = FetchLimits(timeout=1.0, connect_timeout=0.5)


def fake_dns(names: Mapping[str, Sequence[str]]) -> Resolver:
    """`names` as given, localhost as 127.0.0.1, numeric spellings via getaddrinfo; nothing else."""

    def resolve(host: str, port: int) -> list[str]:
        if host in names:
            return list(names[host])
        if host.lower().rstrip(".") == "localhost":
            return ["127.0.0.1"]
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
        return [str(info[4][0]) for info in infos]

    return resolve


DNS = fake_dns(
    {
        "feeds.test": ["127.0.0.1"],
        "other.test": ["127.0.0.1"],
        "intranet.test": ["127.0.0.1"],
        "rebind.test": ["127.0.0.1"],
        "a.test": ["127.0.0.1"],
        "b.test": ["127.0.0.1"],
        # A public-looking first answer must not excuse a private second one.
        "mixed.test": ["93.184.216.34", "127.0.0.1"],
    }
)

FetcherFactory = Callable[..., Fetcher]


@pytest.fixture
def make_fetcher() -> Iterator[FetcherFactory]:
    fetchers: list[Fetcher] = []

    def make(limits: FetchLimits = QUICK, **options: object) -> Fetcher:
        options.setdefault("resolver", DNS)
        fetcher = Fetcher(limits, **options)  # type: ignore[arg-type]
        fetchers.append(fetcher)
        return fetcher

    yield make
    for fetcher in fetchers:
        fetcher.close()


@pytest.fixture(scope="module")
def shared_fetcher() -> Iterator[Fetcher]:
    """One fetcher for many cases: also checks that nothing one case does leaks into the next."""
    with Fetcher(QUICK, resolver=DNS) as fetcher:
        yield fetcher


@pytest.fixture
def server() -> Iterator[HTTPTestServer]:
    with HTTPTestServer() as running:
        yield running


@pytest.fixture
def canary() -> Iterator[RawServer]:
    """Counts connections; any connection at all is a failed SSRF guard."""
    with RawServer() as running:
        yield running


def failed(result: object, kind: FetchErrorKind) -> FetchFailed:
    assert isinstance(result, FetchFailed), result
    assert result.kind is kind, result
    return result


# --------------------------------------------------------------------------- success and caching


def test_fetch_feed_returns_body_lowercased_headers_and_validators(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(
        headers={"Content-Type": "application/rss+xml", "X-Custom": "yes"},
        body=RSS,
        etag='"v1"',
        last_modified="Wed, 21 Oct 2015 07:28:00 GMT",
    )
    result = make_fetcher().fetch_feed(server.url("/feed"))

    assert isinstance(result, Fetched)
    assert result.status == 200
    assert result.content == RSS
    assert result.url == server.url("/feed")
    assert result.headers["content-type"] == "application/rss+xml"
    assert result.headers["x-custom"] == "yes"
    assert all(name == name.lower() for name in result.headers)
    assert result.validators == Validators('"v1"', "Wed, 21 Oct 2015 07:28:00 GMT")


def test_requests_carry_user_agent_and_accept(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(body=RSS)
    server.routes["/article"] = Reply(body=b"<html></html>")
    fetcher = make_fetcher()
    fetcher.fetch_feed(server.url("/feed"))
    fetcher.fetch_page(server.url("/article"), feed_url=server.url("/feed"))

    feed_request, page_request = server.requests
    assert feed_request.headers["user-agent"] == DEFAULT_USER_AGENT
    assert "application/rss+xml" in feed_request.headers["accept"]
    assert page_request.headers["accept"].startswith("text/html")
    assert page_request.headers["accept-encoding"] == "gzip, deflate, br, zstd"
    assert "if-none-match" not in feed_request.headers


def test_if_none_match_gives_not_modified(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(body=RSS, etag='"v1"')
    result = make_fetcher().fetch_feed(server.url("/feed"), Validators(etag='"v1"'))

    assert isinstance(result, NotModified)
    assert result.validators.etag == '"v1"'
    assert server.requests[0].headers["if-none-match"] == '"v1"'


def test_if_modified_since_gives_not_modified_keeping_sent_validators(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    stamp = "Wed, 21 Oct 2015 07:28:00 GMT"
    server.routes["/feed"] = Reply(body=RSS, last_modified=stamp)
    result = make_fetcher().fetch_feed(server.url("/feed"), Validators(last_modified=stamp))

    assert isinstance(result, NotModified)
    assert result.validators == Validators(last_modified=stamp)
    assert server.requests[0].headers["if-modified-since"] == stamp


def test_changed_feed_is_fetched_despite_old_validators(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(body=RSS, etag='"v2"')
    result = make_fetcher().fetch_feed(server.url("/feed"), Validators(etag='"v1"'))

    assert isinstance(result, Fetched)
    assert result.validators.etag == '"v2"'


@pytest.mark.parametrize(
    "headers",
    [{"Cache-Control": "private, no-store"}, {"Expires": "0"}],
    ids=["no-store", "expires-0"],
)
def test_validators_ignored_when_caching_is_forbidden(
    server: HTTPTestServer, make_fetcher: FetcherFactory, headers: dict[str, str]
) -> None:
    server.routes["/feed"] = Reply(headers=headers, body=RSS, etag='"v1"')
    result = make_fetcher().fetch_feed(server.url("/feed"))

    assert isinstance(result, Fetched)
    assert result.validators == Validators()


def test_html_instead_of_feed_is_returned_with_its_content_type(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    page = b"<!doctype html><html><body>Please log in</body></html>"
    server.routes["/feed"] = Reply(headers={"Content-Type": "text/html; charset=utf-8"}, body=page)
    result = make_fetcher().fetch_feed(server.url("/feed"))

    assert isinstance(result, Fetched)
    assert result.content == page
    assert result.headers["content-type"] == "text/html; charset=utf-8"


# --------------------------------------------------------------------------- statuses


@pytest.mark.parametrize("status", [404, 410, 403, 500, 502])
def test_error_status_is_http_status_failure(
    server: HTTPTestServer, make_fetcher: FetcherFactory, status: int
) -> None:
    server.routes["/feed"] = Reply(status=status, body=b"nope")
    url = server.url("/feed")
    result = failed(make_fetcher().fetch_feed(url), FetchErrorKind.HTTP_STATUS)

    assert result.status == status
    assert result.url == url
    assert result.message.startswith(f"{url}: the server answered {status}")
    assert result.retry_after is None


FIXED_NOW = datetime(2015, 10, 21, 7, 26, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "header", "expected"),
    [
        (429, "120", timedelta(seconds=120)),
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", timedelta(seconds=120)),
        (429, "1000000000000", timedelta(hours=24)),
        (429, "-5", timedelta(0)),
        (503, "Tue, 20 Oct 2015 07:28:00 GMT", timedelta(0)),
        (429, "soon", None),
    ],
    ids=["seconds", "date", "huge", "negative", "past-date", "garbage"],
)
def test_retry_after_is_parsed_and_clamped(
    server: HTTPTestServer,
    make_fetcher: FetcherFactory,
    status: int,
    header: str,
    expected: timedelta | None,
) -> None:
    server.routes["/feed"] = Reply(status=status, headers={"Retry-After": header})
    fetcher = make_fetcher(wall_clock=lambda: FIXED_NOW)
    result = failed(fetcher.fetch_feed(server.url("/feed")), FetchErrorKind.HTTP_STATUS)

    assert result.status == status
    assert result.retry_after == expected


def test_retry_after_ignored_on_other_statuses(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(status=500, headers={"Retry-After": "120"})
    result = failed(make_fetcher().fetch_feed(server.url("/feed")), FetchErrorKind.HTTP_STATUS)
    assert result.retry_after is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", timedelta(0)),
        (" 30 ", timedelta(seconds=30)),
        ("Fri, 31 Dec 9999 23:59:59 GMT", timedelta(hours=24)),
        ("Wed, 21 Oct 2015 07:27:00 -0000", timedelta(seconds=60)),
        ("", None),
        (None, None),
        ("Wed, 99 Foo 2015", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: timedelta | None) -> None:
    assert parse_retry_after(value, FIXED_NOW) == expected


# --------------------------------------------------------------------------- redirects


def test_relative_redirect_is_followed(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/old/feed"] = Reply(status=301, headers={"Location": "../new/feed?x=1"})
    server.routes["/new/feed?x=1"] = Reply(body=RSS)
    result = make_fetcher().fetch_feed(server.url("/old/feed"))

    assert isinstance(result, Fetched)
    assert result.url == server.url("/new/feed?x=1")
    assert result.content == RSS


@pytest.mark.parametrize(
    "routes",
    [
        {"/loop": "/loop"},
        {"/loop": "/b", "/b": "/c", "/c": "/loop"},
    ],
    ids=["self", "cycle"],
)
def test_redirect_loop_fails(
    server: HTTPTestServer, make_fetcher: FetcherFactory, routes: dict[str, str]
) -> None:
    for path, location in routes.items():
        server.routes[path] = Reply(status=302, headers={"Location": location})
    result = failed(
        make_fetcher().fetch_feed(server.url("/loop")), FetchErrorKind.TOO_MANY_REDIRECTS
    )
    assert "redirect loop" in result.message
    assert server.count("/loop") == 1


def test_redirect_chain_longer_than_limit_fails(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    for hop in range(10):
        server.routes[f"/r{hop}"] = Reply(status=307, headers={"Location": f"/r{hop + 1}"})
    server.routes["/r10"] = Reply(body=RSS)
    limits = FetchLimits(timeout=5.0, max_redirects=3)

    failed(make_fetcher(limits).fetch_feed(server.url("/r0")), FetchErrorKind.TOO_MANY_REDIRECTS)
    assert server.count("/r4") == 0
    assert isinstance(make_fetcher(limits).fetch_feed(server.url("/r7")), Fetched)


def test_redirect_to_another_host_moves_the_host_slot(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/moved"] = Reply(status=302, headers={"Location": server.url("/feed", "b.test")})
    server.routes["/feed"] = Reply(body=RSS)
    limits = FetchLimits(timeout=5.0, per_host=1, concurrency=1)
    fetcher = make_fetcher(limits, allow_private_hosts=["b.test"])
    for _ in range(2):  # a slot left held on either host would block the second round
        result = fetcher.fetch_feed(server.url("/moved", "a.test"))
        assert isinstance(result, Fetched)
        assert result.url == server.url("/feed", "b.test")
    assert [request.host for request in server.requests] == ["a.test", "b.test"] * 2


@pytest.mark.parametrize(
    ("chain", "moved"),
    [
        ({"/a": (301, "/b")}, "/b"),
        ({"/a": (308, "/b")}, "/b"),
        ({"/a": (302, "/b")}, None),
        ({"/a": (307, "/b")}, None),
        # The permanent hops at the start of the chain: what follows a temporary one may change.
        ({"/a": (301, "/b"), "/b": (302, "/c")}, "/b"),
        ({"/a": (301, "/b"), "/b": (301, "/c")}, "/c"),
        ({"/a": (302, "/b"), "/b": (301, "/c")}, None),
    ],
    ids=["301", "308", "302", "307", "301-then-302", "301-then-301", "302-then-301"],
)
def test_permanent_redirects_say_where_the_feed_moved(
    server: HTTPTestServer,
    make_fetcher: FetcherFactory,
    chain: dict[str, tuple[int, str]],
    moved: str | None,
) -> None:
    for path, (status, location) in chain.items():
        server.routes[path] = Reply(status=status, headers={"Location": location})
    for last in ("/b", "/c"):
        server.routes.setdefault(last, Reply(body=RSS, etag='"v1"'))
    fetcher = make_fetcher()
    result = fetcher.fetch_feed(server.url("/a"))
    assert isinstance(result, Fetched)
    assert result.moved_to == (server.url(moved) if moved else None)
    revalidated = fetcher.fetch_feed(server.url("/a"), Validators(etag='"v1"'))
    assert isinstance(revalidated, NotModified)
    assert revalidated.moved_to == result.moved_to
    direct = fetcher.fetch_feed(result.url)
    assert isinstance(direct, Fetched) and direct.moved_to is None


def test_a_feed_that_moved_and_then_fails_still_says_where_it_moved(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/old"] = Reply(status=301, headers={"Location": "/new"})
    server.routes["/new"] = Reply(status=500)
    result = failed(make_fetcher().fetch_feed(server.url("/old")), FetchErrorKind.HTTP_STATUS)
    assert result.status == 500
    assert result.moved_to == server.url("/new")
    assert (
        failed(make_fetcher().fetch_feed(server.url("/new")), FetchErrorKind.HTTP_STATUS).moved_to
        is None
    )


def test_redirect_to_another_scheme_is_blocked(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(status=302, headers={"Location": "file:///etc/passwd"})
    result = failed(make_fetcher().fetch_feed(server.url("/feed")), FetchErrorKind.BLOCKED)
    assert "redirected to file:" in result.message


# --------------------------------------------------------------------------- content encodings


LARGE_TEXT = b"".join(b"<item><title>entry %d</title></item>" % n for n in range(5000))


def _gzip_members(*parts: bytes) -> bytes:
    return b"".join(gzip.compress(part) for part in parts)


def _zstd_frames(*parts: bytes) -> bytes:
    return b"".join(zstandard.ZstdCompressor().compress(part) for part in parts)


def _raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


@pytest.mark.parametrize(
    ("coding", "body", "expected"),
    [
        ("gzip", gzip.compress(RSS), RSS),
        ("x-gzip", gzip.compress(RSS), RSS),
        ("deflate", zlib.compress(RSS), RSS),
        ("deflate", _raw_deflate(RSS), RSS),
        ("gzip, gzip", gzip.compress(gzip.compress(RSS)), RSS),
        ("identity", RSS, RSS),
        ("gzip", _gzip_members(b"first ", b"second"), b"first second"),
        ("gzip", gzip.compress(b""), b""),
        ("br", brotli.compress(LARGE_TEXT), LARGE_TEXT),
        ("zstd", zstandard.ZstdCompressor().compress(LARGE_TEXT), LARGE_TEXT),
        ("zstd", _zstd_frames(b"first ", b"second"), b"first second"),
        ("gzip, br", brotli.compress(gzip.compress(RSS)), RSS),
    ],
    ids=[
        "gzip",
        "x-gzip",
        "zlib",
        "raw-deflate",
        "stacked",
        "identity",
        "members",
        "empty",
        "br",
        "zstd",
        "zstd-frames",
        "gzip-then-br",
    ],
)
def test_compressed_body_is_decoded(
    server: HTTPTestServer, make_fetcher: FetcherFactory, coding: str, body: bytes, expected: bytes
) -> None:
    server.routes["/feed"] = Reply(headers={"Content-Encoding": coding}, body=body)
    result = make_fetcher().fetch_feed(server.url("/feed"))

    assert isinstance(result, Fetched), result
    assert result.content == expected
    assert "content-encoding" not in result.headers
    assert "content-length" not in result.headers


def _corrupted(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(b ^ 0xFF for b in data[middle : middle + 8]) + data[middle + 8 :]


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", _corrupted(gzip.compress(LARGE_TEXT))),
        ("gzip", gzip.compress(LARGE_TEXT)[:-100]),
        ("gzip", b"this is not gzip at all"),
        ("gzip", gzip.compress(RSS) + b"trailing garbage"),
        ("br", _corrupted(brotli.compress(LARGE_TEXT))),
        ("br", brotli.compress(LARGE_TEXT)[:-20]),
        ("br", brotli.compress(RSS) + b"trailing garbage"),
        ("zstd", _corrupted(zstandard.ZstdCompressor().compress(LARGE_TEXT))),
        ("zstd", zstandard.ZstdCompressor().compress(LARGE_TEXT)[:-20]),
        ("zstd", b"\x28\xb5\x2f\xfd"),
        ("compress", RSS),
        ("gzip, sdch", gzip.compress(RSS)),
    ],
    ids=[
        "corrupt",
        "truncated",
        "not-gzip",
        "garbage-after-member",
        "br-corrupt",
        "br-truncated",
        "br-garbage-after",
        "zstd-corrupt",
        "zstd-truncated",
        "zstd-header-only",
        "unknown-coding",
        "unknown-coding-in-a-list",
    ],
)
def test_undecodable_body_is_decoding_failure(
    server: HTTPTestServer, make_fetcher: FetcherFactory, coding: str, body: bytes
) -> None:
    server.routes["/feed"] = Reply(headers={"Content-Encoding": coding}, body=body)
    failed(make_fetcher().fetch_feed(server.url("/feed")), FetchErrorKind.DECODING)


@pytest.mark.parametrize("coding", ["compress", "x-bzip2", "gzip, sdch"])
def test_unknown_content_encoding_is_named_in_the_failure(
    server: HTTPTestServer, make_fetcher: FetcherFactory, coding: str
) -> None:
    server.routes["/feed"] = Reply(headers={"Content-Encoding": coding}, body=RSS)
    url = server.url("/feed")
    result = failed(make_fetcher().fetch_feed(url), FetchErrorKind.DECODING)
    unknown = coding.split(", ")[-1]
    assert result.message.startswith(f"{url}: the server used Content-Encoding {unknown},")


def test_body_cut_short_is_decoding_failure(make_fetcher: FetcherFactory) -> None:
    def half_response(connection: socket.socket, stopping: threading.Event) -> None:
        read_request_head(connection)
        connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n<rss>only the start")

    with RawServer(half_response) as truncating:
        result = failed(make_fetcher().fetch_feed(truncating.url("/feed")), FetchErrorKind.DECODING)
    assert "cut short" in result.message


# --------------------------------------------------------------------------- size caps

BOMB_MIB = 2000


@pytest.fixture(scope="session")
def gzip_bomb() -> bytes:
    """2,000 MiB of zeros as a valid ~2 MB gzip member, built from one repeated deflate block.

    After a full flush the compressor has no history, so compressing the next
    MiB of zeros gives the same bytes again: no need to compress 2 GB.
    """
    zeros = bytes(MIB)
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    final = compressor.flush(zlib.Z_FINISH)
    crc = 0
    for _ in range(BOMB_MIB):
        crc = zlib.crc32(zeros, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", crc, (BOMB_MIB * MIB) & 0xFFFFFFFF)
    return header + first + repeated * (BOMB_MIB - 1) + final + trailer


# Fetches one URL in a fresh interpreter and prints "kind peak-growth-in-bytes": the
# peak RSS of the test process itself is already high and would hide a spike.
MEASURE_FETCH = """
import resource, sys
from monitor.fetch import Fetcher
from monitor.models import FetchLimits
with Fetcher(FetchLimits(timeout=20.0)) as fetcher:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = fetcher.fetch_feed(sys.argv[1])
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(getattr(result, "kind", "fetched"), (after - before) * 1024)
"""


def test_gzip_bomb_stops_at_the_cap_with_bounded_memory(
    server: HTTPTestServer, gzip_bomb: bytes
) -> None:
    assert len(gzip_bomb) < 3 * MIB
    prefix = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(gzip_bomb[:4096], 1024)
    assert prefix == bytes(1024)  # a real gzip stream of zeros, not junk
    server.routes["/feed"] = Reply(headers={"Content-Encoding": "gzip"}, body=gzip_bomb)

    measured = subprocess.run(
        [sys.executable, "-c", MEASURE_FETCH, server.url("/feed")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kind, growth = measured.stdout.split()
    assert kind == FetchErrorKind.TOO_LARGE
    # The 15 MiB cap itself plus bounded decoder steps; an unbounded decompress of
    # one 64 KiB network read would already add 64 MiB.
    assert int(growth) < 48 * MIB


@pytest.fixture(scope="session")
def br_bomb() -> bytes:
    """256 MiB of zeros as a brotli stream of a few hundred bytes."""
    return bytes(brotli.compress(bytes(256 * MIB), quality=5))


@pytest.fixture(scope="session")
def zstd_bomb() -> bytes:
    """2,000 MiB of zeros as a few KB of zstd: one 50 MiB frame repeated 40 times."""
    return zstandard.ZstdCompressor(level=3).compress(bytes(50 * MIB)) * 40


@pytest.mark.parametrize(("coding", "bomb_fixture"), [("br", "br_bomb"), ("zstd", "zstd_bomb")])
def test_br_and_zstd_bombs_stop_at_the_cap_with_bounded_memory(
    server: HTTPTestServer, request: pytest.FixtureRequest, coding: str, bomb_fixture: str
) -> None:
    bomb: bytes = request.getfixturevalue(bomb_fixture)
    assert len(bomb) < 64 * 1024
    server.routes["/feed"] = Reply(headers={"Content-Encoding": coding}, body=bomb)

    measured = subprocess.run(
        [sys.executable, "-c", MEASURE_FETCH, server.url("/feed")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    kind, growth = measured.stdout.split()
    assert kind == FetchErrorKind.TOO_LARGE
    # The 15 MiB cap plus bounded decoder steps; decoding the bomb whole would add
    # 256 MiB (br) or 2,000 MiB (zstd).
    assert int(growth) < 48 * MIB


@pytest.mark.parametrize(("coding", "bomb_fixture"), [("br", "br_bomb"), ("zstd", "zstd_bomb")])
def test_br_and_zstd_bombs_fail_naming_the_url_and_the_cap(
    server: HTTPTestServer,
    make_fetcher: FetcherFactory,
    request: pytest.FixtureRequest,
    coding: str,
    bomb_fixture: str,
) -> None:
    server.routes["/page"] = Reply(
        headers={"Content-Encoding": coding}, body=request.getfixturevalue(bomb_fixture)
    )
    url = server.url("/page")
    fetcher = make_fetcher(FetchLimits(timeout=5.0, max_bytes=2 * MIB))
    result = failed(fetcher.fetch_page(url, feed_url=url), FetchErrorKind.TOO_LARGE)
    assert result.message.startswith(f"{url}: the body exceeds the 2 MiB limit (decoded)")
    assert server.requests[-1].headers["accept-encoding"] == "gzip, deflate, br, zstd"


def test_gzip_file_body_is_unpacked_within_the_cap(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    # A .xml.gz sitemap: the body is a gzip file, with no Content-Encoding.
    server.routes["/sitemap.xml.gz"] = Reply(
        headers={"Content-Type": "application/x-gzip"}, body=gzip.compress(LARGE_TEXT)
    )
    server.routes["/bomb.xml.gz"] = Reply(
        headers={"Content-Type": "application/gzip"}, body=gzip.compress(bytes(3 * MIB))
    )
    server.routes["/broken.xml.gz"] = Reply(body=gzip.compress(LARGE_TEXT)[:-50])
    fetcher = make_fetcher(FetchLimits(timeout=5.0, max_bytes=2 * MIB))

    result = fetcher.fetch_feed(server.url("/sitemap.xml.gz"))
    assert isinstance(result, Fetched), result
    assert result.content == LARGE_TEXT
    url = server.url("/bomb.xml.gz")
    too_large = failed(fetcher.fetch_feed(url), FetchErrorKind.TOO_LARGE)
    assert too_large.message.startswith(f"{url}: the body exceeds the 2 MiB limit (decoded)")
    failed(fetcher.fetch_feed(server.url("/broken.xml.gz")), FetchErrorKind.DECODING)


def test_declared_length_over_cap_is_refused_before_reading(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    declared = 200 * MIB
    produced: list[int] = []
    done = threading.Event()

    def endless() -> Iterator[bytes]:
        chunk = bytes(64 * 1024)
        try:
            for _ in range(declared // len(chunk)):
                produced.append(len(chunk))
                yield chunk
        finally:
            done.set()

    server.routes["/feed"] = Reply(headers={"Content-Length": str(declared)}, body=endless)
    limits = FetchLimits(timeout=5.0, max_bytes=60 * MIB)
    failed(make_fetcher(limits).fetch_feed(server.url("/feed")), FetchErrorKind.TOO_LARGE)

    assert done.wait(5)
    # Only what the socket buffers absorbed before the client hung up, far below the 60 MiB cap.
    assert sum(produced) < 30 * MIB


def test_streamed_body_over_cap_without_length_is_too_large(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    def stream() -> Iterator[bytes]:
        for _ in range(100):
            yield bytes(64 * 1024)

    server.routes["/page"] = Reply(body=stream)
    limits = FetchLimits(timeout=5.0, max_bytes=MIB)
    result = failed(
        make_fetcher(limits).fetch_page(server.url("/page"), feed_url=server.url("/feed")),
        FetchErrorKind.TOO_LARGE,
    )
    assert "1 MiB limit (decoded)" in result.message


def test_body_exactly_at_cap_is_accepted(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    body = b"x" * MIB
    server.routes["/feed"] = Reply(headers={"Content-Encoding": "gzip"}, body=gzip.compress(body))
    result = make_fetcher(FetchLimits(max_bytes=MIB)).fetch_feed(server.url("/feed"))
    assert isinstance(result, Fetched)
    assert result.content == body


# --------------------------------------------------------------------------- stalls and network errors


@pytest.mark.parametrize(
    "handler",
    [
        stall_after_headers(),
        # Each read gets a byte well within any per-read timeout: only the total deadline ends it.
        drip(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n", interval=0.05),
        drip(b"HTTP/1.1 200 OK\r\nX-Slow: ", interval=0.05, byte=b"a"),
        lambda connection, stopping: stopping.wait(),
    ],
    ids=["stall-after-headers", "drip-body", "drip-headers", "no-response"],
)
def test_stalling_server_times_out_at_the_deadline(
    make_fetcher: FetcherFactory,
    handler: Callable[[socket.socket, threading.Event], None],
) -> None:
    with RawServer(handler) as stalling:
        url = stalling.url("/feed")
        result = failed(make_fetcher(TIGHT).fetch_feed(url), FetchErrorKind.TIMEOUT)
    assert result.message.startswith(f"{url}: no complete response within 1 s")


def test_one_byte_per_second_drip_times_out(make_fetcher: FetcherFactory) -> None:
    with RawServer(drip(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", 1.0)) as dripping:
        failed(make_fetcher(TIGHT).fetch_feed(dripping.url("/feed")), FetchErrorKind.TIMEOUT)


def test_connection_refused(make_fetcher: FetcherFactory) -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        free_port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{free_port}/feed"
    result = failed(make_fetcher().fetch_feed(url), FetchErrorKind.CONNECTION)
    assert result.message.startswith(f"{url}: cannot connect to 127.0.0.1")


def test_server_closing_without_response_is_connection_failure(
    canary: RawServer, make_fetcher: FetcherFactory
) -> None:
    failed(make_fetcher().fetch_feed(canary.url("/feed")), FetchErrorKind.CONNECTION)


def test_unknown_host_is_connection_failure(make_fetcher: FetcherFactory) -> None:
    def nxdomain(host: str, port: int) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    fetcher = make_fetcher(resolver=nxdomain)
    result = failed(fetcher.fetch_feed("http://nowhere.test/feed"), FetchErrorKind.CONNECTION)
    assert "cannot connect to nowhere.test (DNS lookup failed" in result.message


def test_slow_dns_is_a_timeout(make_fetcher: FetcherFactory) -> None:
    answer = threading.Event()

    def slow(host: str, port: int) -> list[str]:
        answer.wait(10)
        return ["127.0.0.1"]

    fetcher = make_fetcher(FetchLimits(timeout=5.0, connect_timeout=0.3), resolver=slow)
    try:
        failed(fetcher.fetch_feed("http://slow.test/feed"), FetchErrorKind.TIMEOUT)
    finally:
        answer.set()


def test_failures_release_slots_and_stay_per_url(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(body=RSS)
    fetcher = make_fetcher(FetchLimits(timeout=1.0, per_host=1, concurrency=1))
    with RawServer(stall_after_headers()) as stalling:
        for _ in range(2):  # a leaked slot would block the second attempt forever
            failed(fetcher.fetch_feed(stalling.url("/feed")), FetchErrorKind.TIMEOUT)
    assert isinstance(fetcher.fetch_feed(server.url("/feed")), Fetched)


@pytest.mark.parametrize(
    "url",
    ["not a url", "http://", "http:///feed", "http://exa mple.com:99999/", "http://[::1/"],
)
def test_invalid_urls(shared_fetcher: Fetcher, url: str) -> None:
    result = shared_fetcher.fetch_feed(url)
    assert isinstance(result, FetchFailed)
    assert result.kind in (FetchErrorKind.INVALID_URL, FetchErrorKind.BLOCKED)
    assert result.message.startswith(f"{url}: ")


def test_non_string_url_is_a_programming_error(make_fetcher: FetcherFactory) -> None:
    with pytest.raises(TypeError):
        make_fetcher().fetch_feed(b"http://example.com/")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- TLS


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for feeds.test, made with the openssl command."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=feeds.test",
            "-addext",
            "subjectAltName=DNS:feeds.test",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def tls_server(certificate: tuple[Path, Path]) -> Iterator[HTTPTestServer]:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    with HTTPTestServer({"/feed": Reply(body=RSS)}, tls=context) as running:
        yield running


def test_https_verifies_the_url_host_while_connecting_to_the_vetted_ip(
    tls_server: HTTPTestServer, certificate: tuple[Path, Path], make_fetcher: FetcherFactory
) -> None:
    trusting = ssl.create_default_context(cafile=str(certificate[0]))
    fetcher = make_fetcher(ssl_context=trusting)

    result = fetcher.fetch_feed(tls_server.url("/feed", "feeds.test"))
    assert isinstance(result, Fetched), result
    assert result.content == RSS
    # Same IP, another name: the certificate must be checked against the URL's host.
    mismatch = failed(
        fetcher.fetch_feed(tls_server.url("/feed", "other.test")), FetchErrorKind.CONNECTION
    )
    assert "other.test" in mismatch.message


def test_https_with_untrusted_certificate_fails(
    tls_server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    url = tls_server.url("/feed", "feeds.test")
    result = failed(make_fetcher().fetch_feed(url), FetchErrorKind.CONNECTION)
    assert "CERTIFICATE_VERIFY_FAILED" in result.message


# --------------------------------------------------------------------------- concurrency


def test_per_host_and_global_limits_hold(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(body=RSS, delay=0.15)
    fetcher = make_fetcher(FetchLimits(timeout=20.0, per_host=2, concurrency=3))
    urls = [server.url("/feed", host) for host in ("a.test", "b.test") for _ in range(8)]

    with ThreadPoolExecutor(max_workers=len(urls)) as pool:
        results = list(pool.map(fetcher.fetch_feed, urls))

    assert all(isinstance(result, Fetched) for result in results)
    assert server.max_in_flight("a.test") <= 2
    assert server.max_in_flight("b.test") <= 2
    assert 2 <= server.max_in_flight() <= 3


def test_connections_to_more_sites_than_slots_are_kept_alive(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    """A poll reads pages of more sites than it has request slots: the idle connection to
    one site must not be closed to open one to the next (a new handshake each time)."""
    server.routes["/feed"] = Reply(body=RSS)
    fetcher = make_fetcher(FetchLimits(timeout=5.0, per_host=1, concurrency=2))
    sites = ("a.test", "b.test", "feeds.test", "other.test")

    for _ in range(3):
        for site in sites:
            assert isinstance(fetcher.fetch_feed(server.url("/feed", site)), Fetched)

    assert server.count("/feed") == 12
    assert server.connections == len(sites)


# --------------------------------------------------------------------------- SSRF

# Article links that must never reach the canary on 127.0.0.1 (or anything private).
SSRF_LINKS = [
    "http://127.0.0.1:{port}/",
    "http://localhost:{port}/",
    "http://LOCALHOST.:{port}/",
    "http://2130706433:{port}/",
    "http://0x7f000001:{port}/",
    "http://0x7f.1:{port}/",
    "http://127.1:{port}/",
    "http://017700000001:{port}/",
    "http://0.0.0.0:{port}/",
    "http://0:{port}/",
    "http://user:secret@127.0.0.1:{port}/",
    "https://127.0.0.1:{port}/",
    "http://[::ffff:127.0.0.1]:{port}/",
    "http://[::ffff:7f00:1]:{port}/",
    "http://[::1]:{port}/",
    "http://[::]:{port}/",
    "http://[::127.0.0.1]:{port}/",
    "http://[2002:7f00:1::]:{port}/",
    "http://[64:ff9b::7f00:1]:{port}/",
    "http://[2001:0:4136:e378:8000:63bf:80ff:fffe]:{port}/",
    "http://rebind.test:{port}/",
    "http://mixed.test:{port}/",
    "http://169.254.169.254/latest/meta-data/",
    "http://[fe80::1]/",
    "http://100.64.0.1/",
    "http://10.0.0.1/",
    "http://172.16.0.1/",
    "http://192.168.1.1/",
    "http://[fc00::1]/",
    "http://224.0.0.1/",
    "http://240.0.0.1/",
    "http://255.255.255.255/",
]


@pytest.mark.parametrize("template", SSRF_LINKS)
def test_article_link_to_private_address_is_blocked(
    canary: RawServer, shared_fetcher: Fetcher, template: str
) -> None:
    url = template.format(port=canary.port)
    result = failed(
        shared_fetcher.fetch_page(url, feed_url="http://feeds.test/feed"), FetchErrorKind.BLOCKED
    )
    assert result.message.startswith(f"{url}: refused to connect")
    assert canary.connections == 0


@pytest.mark.parametrize(
    "template",
    [
        "http://127.0.0.1:{port}/",
        "http://2130706433:{port}/",
        "http://0x7f.1:{port}/",
        "http://127.1:{port}/",
        "http://017700000001:{port}/",
        "http://0:{port}/",
        "http://rebind.test:{port}/",
    ],
)
def test_same_spellings_reach_the_canary_when_trusted(
    canary: RawServer, shared_fetcher: Fetcher, template: str
) -> None:
    """Control for the SSRF matrix: these spellings really do lead to 127.0.0.1."""
    shared_fetcher.fetch_feed(template.format(port=canary.port))
    assert canary.connections == 1


@pytest.mark.parametrize(
    "template",
    [
        "file:///etc/passwd",
        "ftp://127.0.0.1:{port}/",
        "gopher://127.0.0.1:{port}/_GET",
        "javascript:alert(1)",
        "data:text/html,<h1>hi</h1>",
        "//127.0.0.1:{port}/",
        "http://127.0.0.1:{port}\\@feeds.test/",
    ],
)
def test_non_http_and_ambiguous_links_are_refused(
    canary: RawServer, shared_fetcher: Fetcher, template: str
) -> None:
    url = template.format(port=canary.port)
    result = shared_fetcher.fetch_page(url, feed_url="http://feeds.test/feed")
    assert isinstance(result, FetchFailed)
    assert result.kind in (FetchErrorKind.BLOCKED, FetchErrorKind.INVALID_URL)
    assert canary.connections == 0


@pytest.mark.parametrize(
    ("status", "location"),
    [
        (302, "http://127.0.0.1:{port}/"),
        (307, "http://localhost:{port}/admin"),
        (301, "http://2130706433:{port}/"),
        (308, "http://rebind.test:{port}/"),
    ],
)
def test_redirect_from_allowed_host_to_private_address_is_blocked(
    server: HTTPTestServer,
    canary: RawServer,
    make_fetcher: FetcherFactory,
    status: int,
    location: str,
) -> None:
    server.routes["/hop"] = Reply(
        status=status, headers={"Location": location.format(port=canary.port)}
    )
    fetcher = make_fetcher(allow_private_hosts=["intranet.test"])
    link = server.url("/hop", "intranet.test")

    failed(fetcher.fetch_page(link, feed_url="http://feeds.test/feed"), FetchErrorKind.BLOCKED)
    assert server.count("/hop") == 1
    assert canary.connections == 0


def test_feed_redirect_leaving_its_site_is_vetted(
    server: HTTPTestServer, canary: RawServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(status=302, headers={"Location": canary.url("/internal")})
    failed(make_fetcher().fetch_feed(server.url("/feed", "feeds.test")), FetchErrorKind.BLOCKED)
    assert canary.connections == 0


def test_link_on_the_feed_site_may_be_private(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/article"] = Reply(headers={"Content-Type": "text/html"}, body=b"<p>ok</p>")
    feed_url = server.url("/feed", "feeds.test")
    result = make_fetcher().fetch_page(server.url("/article", "FEEDS.test"), feed_url=feed_url)
    assert isinstance(result, Fetched)
    assert result.content == b"<p>ok</p>"


def test_another_port_of_the_feed_host_is_not_the_feed_site(
    server: HTTPTestServer, canary: RawServer, make_fetcher: FetcherFactory
) -> None:
    feed_url = server.url("/feed", "feeds.test")
    link = canary.url("/", "feeds.test")
    failed(make_fetcher().fetch_page(link, feed_url=feed_url), FetchErrorKind.BLOCKED)
    assert canary.connections == 0


def test_allowed_private_host_is_reachable_from_links(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/article"] = Reply(body=b"<p>intranet</p>")
    fetcher = make_fetcher(allow_private_hosts=["Intranet.Test"])
    result = fetcher.fetch_page(
        server.url("/article", "intranet.test"), feed_url="http://feeds.test/"
    )
    assert isinstance(result, Fetched)


def test_kept_alive_trusted_connection_is_not_reused_for_untrusted_link(
    server: HTTPTestServer, make_fetcher: FetcherFactory
) -> None:
    server.routes["/feed"] = Reply(body=RSS)
    server.routes["/secret"] = Reply(body=b"internal data")
    fetcher = make_fetcher()
    assert isinstance(fetcher.fetch_feed(server.url("/feed", "intranet.test")), Fetched)

    link = server.url("/secret", "intranet.test")
    failed(fetcher.fetch_page(link, feed_url="http://other.test/feed"), FetchErrorKind.BLOCKED)
    assert server.count("/secret") == 0


# --------------------------------------------------------------------------- pure helpers


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("100.64.0.1", "shared carrier-grade NAT"),
        ("169.254.169.254", "link-local"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.251", "multicast"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "IPv4-mapped loopback (127.0.0.1)"),
        ("2002:7f00:1::", "6to4 loopback (127.0.0.1)"),
        ("2002:a00:1::", "6to4 private (10.0.0.1)"),
        ("64:ff9b::a9fe:a9fe", "NAT64 link-local (169.254.169.254)"),
        ("8.8.8.8", None),
        ("1.1.1.1", None),
        ("2606:4700:4700::1111", None),
        ("2002:808:808::", None),
    ],
)
def test_non_global_reason(address: str, reason: str | None) -> None:
    assert non_global_reason(ipaddress.ip_address(address)) == reason


def test_address_policy_allowances() -> None:
    policy = AddressPolicy(allowed_hosts=["NAS.local."], allowed_networks=["192.168.10.0/24"])
    loopback = ipaddress.ip_address("127.0.0.1")
    assert policy.refusal("nas.local", loopback) is None
    assert policy.refusal("other.local", loopback) == "loopback"
    assert policy.refusal("other.local", ipaddress.ip_address("192.168.10.7")) is None
    assert policy.refusal("other.local", ipaddress.ip_address("192.168.11.7")) == "private"
    with pytest.raises(TypeError):
        AddressPolicy(allowed_hosts="nas.local")


def test_host_and_site_helpers() -> None:
    assert host_of("http://Bücher.Example./x") == "xn--bcher-kva.example"
    assert host_of("http://[::1]:8080/") == "::1"
    assert site_of("http://example.com/feed") == site_of("https://EXAMPLE.com:443/a")
    assert site_of("http://example.com:8080/") == ("example.com", 8080)
    assert site_of("http://example.com:8080/") != site_of("http://example.com/")


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        FetchLimits(timeout=0)
    with pytest.raises(ValueError, match="per_host"):
        FetchLimits(per_host=0)


def test_fetch_page_requires_a_feed_url(make_fetcher: FetcherFactory) -> None:
    with pytest.raises(ValueError, match="feed_url"):
        make_fetcher().fetch_page("http://example.com/", feed_url="http://[::1/")


def test_server_helper_records_received_requests(server: HTTPTestServer) -> None:
    """The helper itself: unknown paths are 404 and requests are recorded."""
    server.routes["/echo"] = lambda request: Reply(body=request.headers.get("x-echo", "").encode())
    with Fetcher(QUICK, resolver=DNS) as fetcher:
        assert (
            failed(fetcher.fetch_feed(server.url("/missing")), FetchErrorKind.HTTP_STATUS).status
            == 404
        )
        assert isinstance(fetcher.fetch_feed(server.url("/echo")), Fetched)
    assert [request.path for request in server.requests] == ["/missing", "/echo"]
    assert isinstance(server.requests[0], Received)
