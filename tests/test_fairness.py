"""A slow host delays only its own feed, and a poll has an overall bound.

Real local servers, a real extraction pool and real SQLite: a feed of many pages on a
tarpit host holds only its own share of page threads, `poll.feed_deadline` cuts a feed's
poll and leaves the entries not read for the next poll (read then, with no duplicate
hit), and a large feed body is parsed in a worker under a time limit.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from monitor.fetch import Fetcher, fetch_cutoff
from monitor.models import (
    FeedSpec,
    FetchErrorKind,
    FetchFailed,
    FetchLimits,
    ParsedFeed,
    ParseFailed,
    Watchlist,
    utc_now,
)
from monitor.parse import parse_feed
from monitor.pipeline import PARSE_IN_WORKER_BYTES, FeedReport, Pipeline
from monitor.query import parse_query
from monitor.store import Store
from monitor.workers import ExtractionPool
from tests.servers import HTTPTestServer, RawServer, Reply, stall_after_headers

WATCHLISTS = [Watchlist(name="Lomé", query=parse_query("Lomé", {}))]


def article(number: int) -> bytes:
    """A distinct article per number (distinct stories: near-duplicates share one hit)."""
    words = " ".join(f"mot{number}x{index}" for index in range(60))
    return (
        f"<html lang='fr'><head><title>Article {number}</title></head><body><article>"
        f"<h1>Nouvelle {number} de Lomé</h1><p>Lomé, le {number} : {words}.</p>"
        f"<p>Le gouvernement a annoncé la mesure {number} mardi, selon le ministère, "
        f"qui en précisera les modalités {number} dans les semaines à venir.</p>"
        "</article></body></html>"
    ).encode()


def rss(links: Sequence[str], *, title: str = "T") -> bytes:
    items = "".join(
        f"<item><title>Entry {index}</title><link>{link}</link><guid>{link}</guid>"
        f"<description>Entry {index}</description></item>"
        for index, link in enumerate(links)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}'
        f"</title><language>fr</language>{items}</channel></rss>"
    ).encode()


def localhost_is_ipv4(host: str, port: int) -> list[str]:
    """`localhost` as 127.0.0.1 (the test servers listen there), numeric hosts as they are."""
    if host == "localhost":
        return ["127.0.0.1"]
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    return [str(info[4][0]) for info in infos]


@pytest.fixture(scope="module")
def extractor() -> Iterator[ExtractionPool]:
    with ExtractionPool(1, watchlists=WATCHLISTS) as pool:
        pool.start()
        yield pool


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "monitor.db") as opened:
        yield opened


def make_pipeline(
    store: Store,
    extractor: ExtractionPool,
    *,
    timeout: float = 5.0,
    feed_deadline: float = 300.0,
    max_bytes: int = 1024 * 1024,
) -> Pipeline:
    # The tarpit's pages are on `localhost`, another host than the feeds' 127.0.0.1, so
    # the per-host limit does not tie the two together; it is private, hence allowed.
    fetcher = Fetcher(
        FetchLimits(timeout=timeout, connect_timeout=1.0, max_bytes=max_bytes),
        allow_private_hosts=["localhost"],
        resolver=localhost_is_ipv4,
    )
    return Pipeline(
        store=store,
        fetcher=fetcher,
        articles=extractor,
        clock=utc_now,
        page_threads=8,
        pages_per_feed=4,
        feed_deadline=feed_deadline,
    )


def test_a_good_feed_is_not_held_up_by_a_feed_of_100_pages_on_a_tarpit_host(
    store: Store, extractor: ExtractionPool
) -> None:
    """Before fair shares, the good feed's pages queued behind the tarpit's 100 in the
    shared page pool: its report came last. Now it comes first, with every page read."""
    pipeline = make_pipeline(store, extractor, timeout=1.5, feed_deadline=4.0)
    with HTTPTestServer() as server, RawServer(stall_after_headers()) as tarpit:
        good_links = [server.url(f"/good/{number}.html") for number in range(3)]
        for number in range(3):
            server.routes[f"/good/{number}.html"] = Reply(
                body=article(number), headers={"Content-Type": "text/html"}
            )
        tarpit_links = [
            tarpit.url(f"/slow/{number}.html", host="localhost") for number in range(100)
        ]
        server.routes["/tarpit.xml"] = Reply(body=rss(tarpit_links, title="Tarpit"))
        server.routes["/good.xml"] = Reply(body=rss(good_links, title="Good"))
        tarpit_spec = FeedSpec(url=server.url("/tarpit.xml"), name="tarpit")
        good_spec = FeedSpec(url=server.url("/good.xml"), name="good")
        arrivals: list[FeedReport] = []
        try:
            # The tarpit is first: its pages are queued before the good feed's.
            pipeline.poll_all([tarpit_spec, good_spec], threads=2, on_done=arrivals.append)
        finally:
            pipeline.close()
            pipeline.fetcher.close()
        good_pages = sum(server.count(f"/good/{number}.html") for number in range(3))

    assert [report.name for report in arrivals] == ["good", "tarpit"]
    good, slow = arrivals
    assert (good.outcome, good.new_entries, good.new_hits, good.fallbacks) == ("updated", 3, 3, 0)
    assert good_pages == 3
    # The tarpit's pages that timed out fell back to feed text; the rest wait.
    assert slow.outcome == "updated"
    assert slow.waiting > 0 and slow.new_entries + slow.waiting == 100
    assert slow.fallbacks == slow.new_entries


def test_a_poll_cut_by_the_feed_deadline_leaves_the_rest_for_the_next_poll(
    store: Store, extractor: ExtractionPool
) -> None:
    pipeline = make_pipeline(store, extractor, timeout=5.0, feed_deadline=2.0)
    with HTTPTestServer() as server:
        links = [server.url(f"/a/{number}.html") for number in range(6)]
        server.routes["/feed.xml"] = Reply(body=rss(links))
        for number in range(6):
            # Two pages answer at once; four take longer than the whole deadline.
            server.routes[f"/a/{number}.html"] = Reply(
                body=article(number),
                headers={"Content-Type": "text/html"},
                delay=0.0 if number < 2 else 10.0,
            )
        spec = FeedSpec(url=server.url("/feed.xml"), name="F")
        try:
            first = pipeline.poll_feed(spec)
            assert (first.outcome, first.new_entries, first.waiting) == ("updated", 2, 4)
            assert first.fallbacks == 0  # nothing cut was stored with the feed's text
            assert "4 waiting for the next poll" in first.log_line()
            assert {hit.url for hit in store.hits()} == set(links[:2])

            for number in range(2, 6):
                server.routes[f"/a/{number}.html"] = Reply(
                    body=article(number), headers={"Content-Type": "text/html"}
                )
            pipeline.feed_deadline = 60.0
            # The same body, same validators: read again all the same (entries wait).
            second = pipeline.poll_feed(spec)
            third = pipeline.poll_feed(spec)
        finally:
            pipeline.close()
            pipeline.fetcher.close()

    assert (second.outcome, second.new_entries, second.waiting) == ("updated", 4, 0)
    assert (second.new_hits, second.fallbacks) == (4, 0)
    assert third.outcome in ("not_modified", "unchanged")
    hits = store.hits()
    assert sorted(str(hit.url) for hit in hits) == sorted(links)  # each once: no duplicate
    assert store.feed_state(spec.url).entries == 6


def huge_feed(entries: int) -> bytes:
    return rss([f"https://big.example/a/{number}" for number in range(entries)], title="Big")


def test_a_large_feed_is_parsed_in_a_worker_as_it_would_be_inline(
    extractor: ExtractionPool,
) -> None:
    body = huge_feed(3000)
    assert len(body) > PARSE_IN_WORKER_BYTES
    url = "https://big.example/feed.xml"
    in_worker = extractor.parse(body, url=url, headers={}, timeout=60)
    assert isinstance(in_worker, ParsedFeed) and len(in_worker.entries) == 3000
    assert in_worker == parse_feed(body, url=url, headers={})


def test_a_feed_too_large_to_parse_within_its_bound_fails_alone_and_clearly(
    store: Store, extractor: ExtractionPool
) -> None:
    """60,000 entries take about 20 s in feedparser: with a 2 s deadline the parse
    gets 1 s, is abandoned, and the feed fails with a message saying what to do; the
    pool still serves the next feed."""
    pipeline = make_pipeline(store, extractor, feed_deadline=2.0, max_bytes=20 * 1024 * 1024)
    with HTTPTestServer() as server:
        server.routes["/huge.xml"] = Reply(body=huge_feed(60_000))
        server.routes["/small.xml"] = Reply(body=rss([server.url("/page.html")]))
        server.routes["/page.html"] = Reply(body=article(1), headers={"Content-Type": "text/html"})
        try:
            huge = pipeline.poll_feed(FeedSpec(url=server.url("/huge.xml"), name="huge"))
            pipeline.feed_deadline = 60.0
            small = pipeline.poll_feed(FeedSpec(url=server.url("/small.xml"), name="small"))
        finally:
            pipeline.close()
            pipeline.fetcher.close()
    assert huge.outcome == "failed" and huge.error is not None
    assert server.url("/huge.xml") in huge.error
    assert "took over 1 s and was abandoned" in huge.error
    assert "poll.feed_deadline" in huge.error
    assert (small.outcome, small.new_hits, small.fallbacks) == ("updated", 1, 0)


def test_parse_failures_in_a_worker_are_values_not_exceptions(extractor: ExtractionPool) -> None:
    failed = extractor.parse(
        b"<html><body>Log in</body></html>" * 20_000, url="u", headers={}, timeout=60
    )
    assert isinstance(failed, ParseFailed) and "HTML page" in failed.message


def test_a_request_ends_by_the_cutoff_its_caller_set() -> None:
    """A page fetch cut by its feed's deadline ends then, not at poll.timeout (30 s here,
    which this test would wait out otherwise), and says why."""
    with (
        RawServer(stall_after_headers()) as staller,
        Fetcher(FetchLimits(timeout=30.0, connect_timeout=1.0)) as fetcher,
    ):
        page = staller.url("/page")
        token = fetch_cutoff.set(time.monotonic() + 0.3)
        try:
            result = fetcher.fetch_page(page, feed_url=staller.url("/feed"))
        finally:
            fetch_cutoff.reset(token)
    assert isinstance(result, FetchFailed) and result.kind is FetchErrorKind.TIMEOUT
    assert result.message.startswith(f"{page}: no complete response before"), result.message
    assert "poll.feed_deadline ran out" in result.message
