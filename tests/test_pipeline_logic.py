"""The pipeline's own logic, fast: a fetcher that serves literal responses (the
`FeedFetcher` protocol), the article step in the calling thread, a real SQLite
file and a fixed clock. The same paths against real servers and worker
processes are in test_pipeline.py."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.articles import InlineArticles
from monitor.models import (
    FeedSpec,
    Fetched,
    FetchErrorKind,
    FetchFailed,
    FetchResult,
    NotModified,
    PollOutcome,
    Validators,
    Watchlist,
)
from monitor.pipeline import Pipeline
from monitor.query import parse_query
from monitor.store import Store

NOW = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
FEED = "https://news.example.org/feed.xml"
SPEC = FeedSpec(url=FEED, name="News", interval=timedelta(minutes=30))
WATCHLISTS = [Watchlist(name="Togo", query=parse_query("Togo", {}))]


def rss(*links: str) -> bytes:
    items = "".join(
        f"<item><title>Le Togo, épisode {n}</title><link>{link}</link>"
        f"<description>Lomé : le Togo signe.</description></item>"
        for n, link in enumerate(links)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>News</title><language>fr</language>{items}</channel></rss>"
    ).encode()


ARTICLE = (
    "<html lang='fr'><body><article><h1>Togo</h1><p>Le Togo et le Ghana ont signé mardi "
    "un accord sur la sécurité de leur frontière commune, selon Lomé.</p></article>"
    "</body></html>"
).encode()

NO_VALIDATORS = Validators()
Responder = Callable[[str, Validators], FetchResult]


class LiteralFetcher:
    """Serves what the test says, and remembers what was asked."""

    def __init__(self, feed: Responder, pages: dict[str, FetchResult]) -> None:
        self.feed = feed
        self.pages = pages
        self.requests: list[tuple[str, Validators]] = []

    def fetch_feed(self, url: str, validators: Validators = NO_VALIDATORS) -> FetchResult:
        self.requests.append((url, validators))
        return self.feed(url, validators)

    def fetch_page(self, url: str, *, feed_url: str) -> FetchResult:
        self.requests.append((url, Validators()))
        return self.pages[url]

    def close(self) -> None:
        pass


def ok(url: str, content: bytes, etag: str | None = None) -> Fetched:
    return Fetched(
        url=url,
        status=200,
        headers={"content-type": "text/xml"},
        content=content,
        validators=Validators(etag=etag),
    )


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "monitor.db") as opened:
        yield opened


def pipeline_for(store: Store, fetcher: LiteralFetcher, now: list[datetime]) -> Pipeline:
    return Pipeline(
        store=store,
        fetcher=fetcher,
        articles=InlineArticles(WATCHLISTS),
        clock=lambda: now[0],
        page_threads=2,
    )


def test_a_poll_stores_pages_and_fallbacks_and_reports_its_next_poll(store: Store) -> None:
    page_ok, page_gone = "https://news.example.org/1", "https://news.example.org/2"
    fetcher = LiteralFetcher(
        lambda url, _: ok(url, rss(page_ok, page_gone), etag='"v1"'),
        {
            page_ok: ok(page_ok, ARTICLE),
            page_gone: FetchFailed(
                url=page_gone,
                kind=FetchErrorKind.HTTP_STATUS,
                message=f"{page_gone}: HTTP 404",
                status=404,
            ),
        },
    )
    now = [NOW]
    pipeline = pipeline_for(store, fetcher, now)
    report = pipeline.poll_feed(SPEC)
    assert report.outcome is PollOutcome.UPDATED
    assert (report.entries, report.new_entries, report.new_hits, report.fallbacks) == (2, 2, 2, 1)
    assert report.next_poll == NOW + timedelta(minutes=30)
    state = store.feed_state(FEED)
    assert state.next_poll == report.next_poll
    assert state.validators.etag == '"v1"'
    assert {hit.url for hit in store.hits()} == {page_ok, page_gone}
    # The same body again: not parsed, nothing fetched but the feed.
    now[0] = NOW + timedelta(minutes=30)
    fetcher.requests.clear()
    again = pipeline.poll_feed(SPEC)
    assert again.outcome is PollOutcome.UNCHANGED
    assert [url for url, _ in fetcher.requests] == [FEED]
    assert fetcher.requests[0][1].etag == '"v1"'  # a conditional request
    pipeline.close()


def test_failures_back_off_and_a_304_recovers(store: Store) -> None:
    answers: list[FetchResult] = [
        FetchFailed(
            url=FEED,
            kind=FetchErrorKind.HTTP_STATUS,
            message=f"{FEED}: HTTP 503",
            status=503,
            retry_after=timedelta(hours=2),
        ),
        FetchFailed(url=FEED, kind=FetchErrorKind.TIMEOUT, message=f"{FEED}: timed out"),
        NotModified(url=FEED),
    ]
    fetcher = LiteralFetcher(lambda url, _: answers.pop(0), {})
    now = [NOW]
    pipeline = pipeline_for(store, fetcher, now)
    first = pipeline.poll_feed(SPEC)
    assert (first.outcome, first.status) == (PollOutcome.FAILED, 503)
    assert first.next_poll == NOW + timedelta(hours=2)  # Retry-After beats one doubling
    second = pipeline.poll_feed(SPEC)
    assert second.next_poll == NOW + timedelta(minutes=30 * 4)  # two failures: doubled twice
    assert store.feed_state(FEED).error_count == 2
    third = pipeline.poll_feed(SPEC)
    assert third.outcome is PollOutcome.NOT_MODIFIED
    assert third.next_poll == NOW + timedelta(minutes=30)
    state = store.feed_state(FEED)
    assert (state.error_count, state.last_error) == (0, None)
    pipeline.close()


def test_a_bug_while_polling_fails_that_feed_alone(store: Store) -> None:
    def broken(url: str, validators: Validators) -> FetchResult:
        raise RuntimeError("boom")

    pipeline = pipeline_for(store, LiteralFetcher(broken, {}), [NOW])
    report = pipeline.poll_feed(SPEC)
    assert report.outcome is PollOutcome.FAILED
    assert report.error == f"{FEED}: unexpected error (RuntimeError: boom)"
    assert report.next_poll == NOW + timedelta(minutes=60)
    assert store.feed_state(FEED).last_error == report.error
    pipeline.close()


def test_a_body_that_is_not_a_feed_is_a_failure_with_its_status(store: Store) -> None:
    html = b"<!DOCTYPE html><html><body><h1>Connexion</h1></body></html>"
    fetcher = LiteralFetcher(lambda url, _: ok(url, html), {})
    pipeline = pipeline_for(store, fetcher, [NOW])
    report = pipeline.poll_feed(SPEC)
    assert (report.outcome, report.status) == (PollOutcome.FAILED, 200)
    assert report.error is not None and "HTML" in report.error
    assert store.feed_state(FEED).body_hash is None  # the page is not remembered as a body
    pipeline.close()
