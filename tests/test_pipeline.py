"""The pipeline against real local servers: one bad feed never stops the others,
re-polling adds nothing, a kill mid-poll loses nothing, and a hung extraction is
abandoned without losing the entry."""

from __future__ import annotations

import gzip
import os
import signal
import sqlite3
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.fetch import Fetcher
from monitor.matching import Matcher
from monitor.models import (
    ArticleJob,
    Entry,
    FeedSpec,
    Fetched,
    FetchLimits,
    TextSource,
    Watchlist,
    utc_now,
)
from monitor.pipeline import Pipeline
from monitor.query import from_lists, parse_query
from monitor.store import Store
from monitor.workers import ExtractionPool
from tests.servers import HTTPTestServer, RawServer, Reply, stall_after_headers

ARTICLE = (
    b"<html lang='fr'><head><title>Accord de defense</title></head><body><article>"
    b"<h1>Le Togo signe un accord de d\xc3\xa9fense</h1>"
    b"<p>Lom\xc3\xa9 et ses partenaires ont sign\xc3\xa9 mardi un accord de d\xc3\xa9fense "
    b"qui pr\xc3\xa9voit la formation d'officiers togolais et des exercices communs.</p>"
    b"<p>Le texte doit encore \xc3\xaatre ratifi\xc3\xa9 par le Parlement dans les semaines "
    b"\xc3\xa0 venir, selon le minist\xc3\xa8re.</p></article></body></html>"
)


def rss(items: list[tuple[str, str]]) -> bytes:
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{link}</guid>"
        f"<description>{title}</description></item>"
        for title, link in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
        f"<language>fr</language>{body}</channel></rss>"
    ).encode()


WATCHLISTS = [
    Watchlist(name="Togo défense", query=from_lists(["Togo"], ["accord de défense"], [], {})),
    Watchlist(name="Lomé", query=parse_query("Lomé", {})),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "monitor.db") as opened:
        yield opened


@pytest.fixture
def pipeline(store: Store) -> Iterator[Pipeline]:
    limits = FetchLimits(timeout=1.5, connect_timeout=1.0, max_bytes=64 * 1024)
    with Fetcher(limits) as fetcher, ExtractionPool(1, watchlists=WATCHLISTS) as extractor:
        built = Pipeline(store=store, fetcher=fetcher, articles=extractor, clock=utc_now)
        yield built
        built.close()


def test_each_bad_feed_fails_alone_with_a_clear_error(pipeline: Pipeline, store: Store) -> None:
    bomb = zlib.compressobj(9, zlib.DEFLATED, 31)
    bomb_body = bomb.compress(b"\0" * (8 * 1024 * 1024)) + bomb.flush()
    with HTTPTestServer() as server, RawServer(stall_after_headers()) as staller:
        server.routes.update(
            {
                "/good.xml": Reply(
                    body=rss([("Accord", server.url("/article.html"))]),
                    headers={"Content-Type": "application/rss+xml"},
                ),
                "/article.html": Reply(body=ARTICLE, headers={"Content-Type": "text/html"}),
                "/html.xml": Reply(
                    body=b"<!DOCTYPE html><html><body><h1>Log in</h1></body></html>",
                    headers={"Content-Type": "text/html"},
                ),
                "/loop.xml": Reply(status=302, headers={"Location": "/loop.xml"}),
                "/bomb.xml": Reply(body=bomb_body, headers={"Content-Encoding": "gzip"}),
            }
        )
        specs = [
            FeedSpec(url=server.url(path), name=name)
            for name, path in [
                ("good", "/good.xml"),
                ("html", "/html.xml"),
                ("missing", "/missing.xml"),
                ("loop", "/loop.xml"),
                ("bomb", "/bomb.xml"),
            ]
        ] + [FeedSpec(url=staller.url("/feed.xml"), name="stall")]
        reports = {report.name: report for report in pipeline.poll_all(specs, threads=6)}

    assert reports["good"].outcome == "updated"
    assert reports["good"].new_hits == 2
    expectations = {
        "html": "HTML",
        "missing": "404",
        "loop": "redirect",
        "bomb": "limit",
        "stall": "no complete response within 1.5 s",
    }
    for name, phrase in expectations.items():
        report = reports[name]
        assert report.outcome == "failed", name
        assert report.error is not None and phrase.lower() in report.error.lower(), report.error
        assert specs[[s.name for s in specs].index(name)].url.split("/")[2] in report.error
    states = {state.url: state for state in store.feed_states()}
    for spec in specs[1:]:
        state = states[spec.url]
        assert state.error_count == 1 and state.last_error
        assert state.next_poll is not None and state.next_poll > datetime.now(UTC) + timedelta(
            minutes=20
        )


def test_repolling_adds_nothing_and_two_feeds_share_one_article(
    pipeline: Pipeline, store: Store
) -> None:
    with HTTPTestServer() as server:
        article = server.url("/article.html")
        server.routes.update(
            {
                "/a.xml": Reply(body=rss([("Accord", article)]), etag='"a"'),
                "/b.xml": Reply(body=rss([("Accord (repris)", article + "?utm_source=rss")])),
                "/article.html": Reply(body=ARTICLE),
            }
        )
        specs = [
            FeedSpec(url=server.url("/a.xml"), name="A"),
            FeedSpec(url=server.url("/b.xml"), name="B"),
        ]
        # One after the other: two feeds polled at the same moment may both fetch a page
        # neither has stored yet (the article and its hits are still stored once).
        first = [pipeline.poll_feed(spec) for spec in specs]
        second = [pipeline.poll_feed(spec) for spec in specs]
        page_requests = sum(
            1 for request in server.requests if request.path.split("?")[0] == "/article.html"
        )
    assert sum(r.new_hits for r in first) == 2  # one article, two watchlists
    assert [r.outcome for r in second] == ["not_modified", "unchanged"]
    assert page_requests == 1  # the second feed reused the stored article
    assert len(store.hits()) == 2


def test_page_that_cannot_be_fetched_falls_back_to_the_feed_text(
    pipeline: Pipeline, store: Store
) -> None:
    with HTTPTestServer() as server:
        server.routes["/feed.xml"] = Reply(
            body=rss(
                [
                    ("Lomé accueille un sommet", server.url("/gone.html")),
                    ("Lomé: lien local refusé", "http://10.0.0.1/private.html"),
                ]
            )
        )
        [report] = pipeline.poll_all([FeedSpec(url=server.url("/feed.xml"), name="F")])
    assert report.new_entries == 2 and report.fallbacks == 2
    assert report.new_hits == 2
    hits = store.hits()
    assert {hit.watchlist for hit in hits} == {"Lomé"}


def test_kill_during_poll_loses_nothing(tmp_path: Path) -> None:
    """SIGKILL `monitor poll` while pages are still being fetched, run it again, and
    compare with an uninterrupted run: same articles, same hits, no duplicates."""
    with HTTPTestServer() as server:
        items = [(f"Accord {n}", server.url(f"/article/{n}.html")) for n in range(12)]
        server.routes["/feed.xml"] = Reply(body=rss(items[:6]))
        server.routes["/feed2.xml"] = Reply(body=rss(items[6:]))
        for n in range(12):
            server.routes[f"/article/{n}.html"] = Reply(
                body=ARTICLE.replace(b"mardi", f"jour {n}".encode()), delay=0.4
            )

        def config(directory: Path) -> Path:
            directory.mkdir()
            path = directory / "feeds.yaml"
            path.write_text(
                f"""
feeds:
  - url: {server.url("/feed.xml")}
  - url: {server.url("/feed2.xml")}
poll:
  concurrency: 2
  per_host: 1
watchlists:
  - name: Togo défense
    all: [Togo]
    any: ["accord de défense"]
digest:
  from: a@example.org
  to: [b@example.org]
""",
                encoding="utf-8",
            )
            return path

        def poll(path: Path) -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                [sys.executable, "-m", "monitor", "-c", str(path), "poll"],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )

        reference = config(tmp_path / "reference")
        assert poll(reference).wait(120) == 0
        interrupted = config(tmp_path / "interrupted")
        for delay in (2.0, 3.0):
            victim = poll(interrupted)
            time.sleep(delay)
            os.killpg(victim.pid, signal.SIGKILL)
            victim.wait(10)
        assert poll(interrupted).wait(120) == 0

    def rows(path: Path) -> tuple[list[tuple[str, str]], str]:
        with sqlite3.connect(path.parent / "monitor.db") as db:
            hits = db.execute(
                "SELECT hits.watchlist, articles.url FROM hits JOIN articles "
                "ON articles.id = hits.article_id ORDER BY 1, 2"
            ).fetchall()
            return hits, db.execute("PRAGMA integrity_check").fetchone()[0]

    expected, _ = rows(reference)
    got, integrity = rows(interrupted)
    assert integrity == "ok"
    assert len(expected) == 12
    assert got == expected


def test_hung_extraction_is_abandoned_and_the_pool_recovers(tmp_path: Path) -> None:
    huge = b"<html><body>" + b"<div><p>bloc</p></div>" * 60_000 + b"</body></html>"
    entry = Entry(
        key="k",
        link="http://example.org/a",
        title="Lomé",
        summary="Résumé de Lomé",
        content="",
        published=None,
    )

    def job(page: bytes, url: str) -> ArticleJob:
        fetched = Fetched(url=url, status=200, headers={}, content=page)
        return ArticleJob(entry=entry, feed_name="F", feed_language="fr", page=fetched)

    with ExtractionPool(1, timeout=0.05, watchlists=WATCHLISTS) as pool:
        abandoned, hits, _ = pool.process(job(huge, "http://example.org/a"))
        assert abandoned.source is TextSource.FEED
        assert abandoned.note is not None and "abandoned" in abandoned.note
        assert abandoned.text == "Résumé de Lomé"
        assert [hit.watchlist for hit in hits] == ["Lomé"]  # the feed's text is still matched
        pool.timeout = 30
        recovered, _, _ = pool.process(job(ARTICLE, "http://example.org/b"))
    assert recovered.source is TextSource.PAGE
    assert "Parlement" in recovered.text


def test_gzip_corpus_page_is_identical_through_the_pool() -> None:
    from monitor.articles import article_from_page
    from tests.corpus import require_corpus

    page = gzip.decompress(
        require_corpus("articles", "aeb-scrapinghub", "374ac9a59a85196c.html.gz").read_bytes()
    )
    entry = Entry(
        key="k", link="http://example.org/p", title="", summary="", content="", published=None
    )
    fetched = Fetched(url="http://example.org/p", status=200, headers={}, content=page)
    with ExtractionPool(1, watchlists=WATCHLISTS) as pool:
        pooled, hits, _ = pool.process(
            ArticleJob(entry=entry, feed_name=None, feed_language=None, page=fetched)
        )
    assert pooled == article_from_page(page, url="http://example.org/p", entry=entry)
    assert hits == tuple(Matcher(WATCHLISTS).match(pooled))


def test_a_poll_cut_off_by_shutdown_records_nothing(pipeline: Pipeline, store: Store) -> None:
    """Pages that fail only because the daemon closed the client must not be stored as
    feed-text fallbacks: their entries would count as seen and never be extracted."""
    import threading

    with HTTPTestServer() as server:
        server.routes["/feed.xml"] = Reply(body=rss([("Accord", server.url("/slow.html"))]))
        server.routes["/slow.html"] = Reply(body=ARTICLE, delay=1.0)
        spec = FeedSpec(url=server.url("/feed.xml"), name="F")

        def stop() -> None:
            pipeline.stopping.set()
            pipeline.fetcher.close()

        stopper = threading.Timer(0.4, stop)
        stopper.start()
        report = pipeline.poll_feed(spec)
        stopper.join()
    assert report.outcome == "abandoned"
    state = store.feed_state(spec.url)
    assert state.entries == 0 and state.error_count == 0 and state.last_error is None
    assert store.hits() == []


def test_validators_are_dropped_once_a_day_against_a_304_forever_server(
    pipeline: Pipeline, store: Store
) -> None:
    """A server that answers 304 to any conditional request (a bogus future
    Last-Modified) would hide new entries forever; a day after the last whole body the
    request goes out without validators."""
    from tests.servers import Received

    requests: list[Received] = []

    def reply(request: Received) -> Reply:
        requests.append(request)
        if "if-none-match" in request.headers:
            return Reply(status=304, headers={"ETag": '"stuck"'})
        return Reply(body=rss([("Accord", "https://example.org/a")]), headers={"ETag": '"stuck"'})

    start = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    now = [start]
    pipeline.clock = lambda: now[0]
    with HTTPTestServer({"/feed.xml": reply}) as server:
        spec = FeedSpec(url=server.url("/feed.xml"), name="F")
        assert pipeline.poll_feed(spec).outcome == "updated"
        now[0] = start + timedelta(hours=23)
        assert pipeline.poll_feed(spec).outcome == "not_modified"
        now[0] = start + timedelta(hours=25)
        assert pipeline.poll_feed(spec).outcome == "unchanged"  # a whole body, the same one
        now[0] = start + timedelta(hours=26)
        assert pipeline.poll_feed(spec).outcome == "not_modified"
    conditional = ["if-none-match" in request.headers for request in requests]
    assert conditional == [False, True, False, True]
    assert store.feed_state(spec.url).last_full_fetch == start + timedelta(hours=25)


def test_migration_adds_the_last_full_fetch_column_to_an_existing_database(tmp_path: Path) -> None:
    import sqlite_utils

    from monitor.store import MIGRATIONS

    path = tmp_path / "old.db"
    old = sqlite_utils.Database(path)
    MIGRATIONS.apply(old, stop_before="0002_feed_last_full_fetch")
    old.execute("INSERT INTO feeds (url) VALUES ('https://example.org/feed')")
    old.conn.commit()
    old.close()
    assert "last_full_fetch" not in sqlite_utils.Database(path)["feeds"].columns_dict
    with Store(path) as store:
        state = store.feed_state("https://example.org/feed")
    assert state.last_full_fetch is None
    assert "last_full_fetch" in sqlite_utils.Database(path)["feeds"].columns_dict


def _feed_text_job(text: str) -> ArticleJob:
    entry = Entry(key=text, link=None, title="Dépêche", summary=text, content="", published=None)
    return ArticleJob(entry=entry, feed_name=None, feed_language="fr", no_page_reason="test")


def test_a_reload_of_a_few_watchlists_keeps_the_workers_and_matches_the_new_ones() -> None:
    names = [f"Nom{index}" for index in range(30)]
    watchlists = [Watchlist(name=name, query=parse_query(name, {})) for name in names]
    with ExtractionPool(1, watchlists=watchlists) as pool:
        pool.start()
        first = pool._pool
        assert first is not None
        job = _feed_text_job("Nom3 a rencontré Nom7 et Kara à Lomé.")
        assert [hit.watchlist for hit in pool.process(job)[1]] == ["Nom3", "Nom7"]
        # Nom3 dropped, Kara added, Nom7 moved to the end: the others are the same objects.
        edited = [watchlists[0], Watchlist("Kara", parse_query("Kara", {}))]
        edited += watchlists[4:7] + watchlists[8:] + [watchlists[7]]
        pool.set_watchlists(edited)
        assert pool._pool is first  # an update carried by the jobs, no new workers
        assert [hit.watchlist for hit in pool.process(job)[1]] == ["Kara", "Nom7"]
        assert [hit.watchlist for hit in pool.process(job)[1]] == ["Kara", "Nom7"]
        # A worker that dies is replaced by one started from the current watchlists.
        pool._recycle(first)
        assert [hit.watchlist for hit in pool.process(job)[1]] == ["Kara", "Nom7"]
        second = pool._pool
        assert second is not first
        renamed = [Watchlist(f"{w.name}!", w.query) for w in edited]  # all new objects
        pool.set_watchlists(renamed)
        assert pool._pool is None  # too many new ones for an update: new workers
        assert [hit.watchlist for hit in pool.process(job)[1]] == ["Kara!", "Nom7!"]


def test_an_update_names_ranges_of_the_workers_watchlists_and_the_new_ones() -> None:
    import pickle

    from monitor.workers import _update_of

    base = [Watchlist(name=f"w{index}", query=parse_query("Togo", {})) for index in range(40)]
    new = Watchlist("new", parse_query("Lomé", {}))
    update = _update_of(base, [*base[:10], new, *base[12:40], base[10]], generation=3)
    assert update is not None and update.generation == 3
    assert pickle.loads(update.parts) == (range(0, 10), new, range(12, 40), range(10, 11))
    assert _update_of(base, [Watchlist(w.name, w.query) for w in base], generation=4) is None
