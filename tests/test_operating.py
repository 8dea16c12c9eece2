"""What operators meet: a full disk, a read-only database, a reader holding a long
transaction, a daemon on another clock. Real SQLite files, real local HTTP servers."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from html import escape
from pathlib import Path

import pytest

from monitor.articles import InlineArticles
from monitor.config import Config, load_config
from monitor.daemon import Daemon
from monitor.fetch import Fetcher
from monitor.models import PollOutcome, utc_now
from monitor.pipeline import Pipeline
from monitor.reload import ConfigWatcher
from monitor.service import backfill, run_digest, run_due_digest
from monitor.store import Store
from tests.servers import HTTPTestServer, Received, Reply


def story(number: int) -> str:
    """Text of article `number`: each is its own story (near-duplicates are one story and
    get one hit, so identical texts would hide every article but the first)."""
    return " ".join(
        f"Le Togo signe l'accord {number}-{part} de défense, dossier {number}.{part}."
        for part in range(12)
    )


def page(number: int) -> bytes:
    return (
        f"<html><head><title>Accord {number}</title></head><body><article>"
        f"<h1>Accord {number}</h1><p>{story(number)}</p></article></body></html>"
    ).encode()


class GrowingFeed:
    """An RSS feed that shows `shown` items, each linking to a page that matches `Togo`."""

    def __init__(self, server: HTTPTestServer, *, pages: bool = True) -> None:
        self.server = server
        self.shown = 5
        self.pages = pages  # False: no links, the items' own text is matched (no extraction)
        server.routes["/feed.xml"] = self.route
        for number in range(100):
            server.routes[f"/a/{number}.html"] = Reply(body=page(number))

    def route(self, request: Received) -> Reply:
        items = "".join(
            f"<item><title>Accord {n}</title><guid>a-{n}</guid>"
            + (
                f"<link>{escape(self.server.url(f'/a/{n}.html'))}</link>"
                if self.pages
                else f"<description>{story(n)}</description>"
            )
            + "</item>"
            for n in range(self.shown)
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
        return Reply(body=body.encode(), headers={"Content-Type": "application/rss+xml"})


def write_config(directory: Path, feed_url: str, *, interval: str = "1m") -> Config:
    path = directory / "feeds.yaml"
    path.write_text(
        f"""
database: monitor.db
poll:
  interval: {interval}
feeds:
  - url: {feed_url}
    name: Growing
watchlists:
  - name: Togo
    query: Togo
digest:
  from: veille@example.org
  to: [analyste@example.org]
""",
        encoding="utf-8",
    )
    return load_config(path)


@contextlib.contextmanager
def pipeline_for(config: Config, store: Store) -> Iterator[Pipeline]:
    with Fetcher(config.poll) as fetcher:
        pipeline = Pipeline(
            store=store,
            fetcher=fetcher,
            articles=InlineArticles(config.watchlists),
            clock=utc_now,
        )
        try:
            yield pipeline
        finally:
            pipeline.close()


def test_a_full_disk_fails_the_poll_cleanly_and_the_next_poll_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        feed = GrowingFeed(server, pages=False)
        config = write_config(tmp_path, server.url("/feed.xml"))
        spec = config.feeds[0]
        feed.shown = 30
        with pipeline_for(config, store) as pipeline:
            store.feed_state(spec.url)
            # SQLite's page limit gives SQLITE_FULL deterministically, as a full disk does;
            # it is per connection, and the poll writes from this thread.
            limited = store._db.connection()
            pages = limited.execute("PRAGMA page_count").fetchone()[0]
            limited.execute(f"PRAGMA max_page_count = {pages}")
            with caplog.at_level(logging.INFO):
                full = pipeline.poll_feed(spec)
            assert full.outcome is PollOutcome.FAILED
            assert full.error is not None and "free some disk space" in full.error
            lines = [r for r in caplog.records if r.getMessage().startswith("database full: ")]
            assert len(lines) == 1 and lines[0].exc_info is None, caplog.text
            assert "Traceback" not in caplog.text
            state = store.feed_state(spec.url)
            assert (state.entries, state.body_hash, state.last_poll) == (0, None, None)
            assert store.hits() == []
            assert limited.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

            limited.execute("PRAGMA max_page_count = 1073741823")  # space is back
            recovered = pipeline.poll_feed(spec)
            assert recovered.outcome is PollOutcome.UPDATED
            assert (recovered.new_entries, recovered.new_hits) == (30, 30)
            again = pipeline.poll_feed(spec)
            assert again.new_hits == 0
        assert len(store.hits()) == 30


def make_unwritable(path: Path) -> bool:
    """Make `path` unwritable even for root (`chattr +i`); False when that is impossible."""
    if os.geteuid() != 0:
        path.chmod(0o555 if path.is_dir() else 0o444)
        return True
    if shutil.which("chattr") is None:
        return False
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def make_writable(path: Path) -> None:
    if os.geteuid() != 0:
        path.chmod(0o755 if path.is_dir() else 0o644)
    else:
        subprocess.run(["chattr", "-i", str(path)], capture_output=True)


@pytest.mark.parametrize("what", ["file", "folder"])
def test_run_on_a_read_only_database_stops_at_once_with_one_clear_error(
    tmp_path: Path, what: str
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/feed.xml")
    Store(config.database).close()  # an existing database, as after a first run
    for leftover in tmp_path.glob("monitor.db?*"):
        leftover.unlink()
    target = config.database if what == "file" else tmp_path
    if not make_unwritable(target):
        pytest.skip("cannot make a file read-only for this user here")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "-c", str(config.path), "run"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        make_writable(target)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    assert "monitor running" not in result.stderr
    assert str(tmp_path) in result.stderr
    assert "writable" in result.stderr, result.stderr


def test_a_long_reader_blocks_no_write_and_the_wal_is_emptied_after_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A user's sqlite3 shell left inside a transaction (here 5 s; 60 s or an hour are
    the same, since WAL readers never take the write lock): every poll is written, none
    waits for the busy timeout (1 s here: a wait would fail the poll), and the checkpoint
    says why it cannot empty the log until the reader ends."""
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db", busy_timeout=1.0) as store:
        feed = GrowingFeed(server, pages=False)
        config = write_config(tmp_path, server.url("/feed.xml"))
        spec = config.feeds[0]
        with pipeline_for(config, store) as pipeline:
            pipeline.poll_feed(spec)
            reader = sqlite3.connect(config.database, isolation_level=None)
            reader.execute("BEGIN")
            seen = reader.execute("SELECT COUNT(*) FROM hits").fetchone()[0]
            held_since = time.monotonic()
            for shown in (10, 15, 20):
                feed.shown = shown
                report = pipeline.poll_feed(spec)
                assert report.outcome is PollOutcome.UPDATED, report.error
            daemon = Daemon(config, ConfigWatcher(config.path), store, pipeline)
            with caplog.at_level(logging.WARNING):
                daemon._checkpoint_job()
            assert "old read transaction" in caplog.text
            time.sleep(max(0.0, 5.0 - (time.monotonic() - held_since)))
            # The reader still sees its snapshot; the writes are all there for everyone else.
            assert reader.execute("SELECT COUNT(*) FROM hits").fetchone()[0] == seen == 5
            assert len(store.hits()) == 20
            wal = tmp_path / "monitor.db-wal"
            assert wal.stat().st_size > 0
            reader.execute("ROLLBACK")
            reader.close()
            caplog.clear()
            daemon._checkpoint_job()  # its next turn (every 30 minutes in the daemon)
            assert "old read transaction" not in caplog.text
            assert wal.stat().st_size == 0


def test_a_daemon_on_another_clock_still_polls_on_time(tmp_path: Path) -> None:
    """The daemon's clock (here three days ahead, as the soak runs it) decides dates,
    digests and the feeds' schedule. A feed must be polled again one interval later,
    not three days later or at once."""
    ahead = timedelta(days=3)

    def clock() -> datetime:
        return utc_now() + ahead

    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        GrowingFeed(server)
        config = write_config(tmp_path, server.url("/feed.xml"))
        url = config.feeds[0].url
        with Fetcher(config.poll, wall_clock=clock) as fetcher:
            pipeline = Pipeline(
                store=store,
                fetcher=fetcher,
                articles=InlineArticles(config.watchlists),
                clock=clock,
            )
            daemon = Daemon(config, ConfigWatcher(config.path), store, pipeline, clock=clock)
            daemon.start()
            try:
                deadline = time.monotonic() + 30
                while store.feed_state(url).last_poll is None:
                    assert time.monotonic() < deadline, "the first poll never ran"
                    time.sleep(0.05)
                time.sleep(0.5)  # the feed is rescheduled right after the poll is recorded
                next_poll = daemon.next_poll(url)
                state = store.feed_state(url)
                now = clock()
            finally:
                daemon.stop()
                pipeline.close()
    assert state.last_poll is not None and state.last_poll > utc_now() + ahead - timedelta(hours=1)
    assert next_poll is not None and now < next_poll <= now + config.poll.interval


def test_a_feed_that_empties_then_comes_back_deletes_nothing_and_hits_nothing_twice(
    tmp_path: Path,
) -> None:
    """RELIABILITY B10: a feed served empty (or cut short) for a while."""
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        feed = GrowingFeed(server, pages=False)
        config = write_config(tmp_path, server.url("/feed.xml"))
        spec = config.feeds[0]
        with pipeline_for(config, store) as pipeline:
            assert pipeline.poll_feed(spec).new_hits == 5
            feed.shown = 0
            emptied = pipeline.poll_feed(spec)
            assert emptied.new_entries == 0
            feed.shown = 2  # cut short
            assert pipeline.poll_feed(spec).new_hits == 0
            feed.shown = 6  # back, with one new item
            back = pipeline.poll_feed(spec)
            assert (back.new_entries, back.new_hits) == (1, 1)
        assert store.feed_state(spec.url).entries == 6
        assert len(store.hits()) == 6


def test_a_digest_check_that_cannot_write_logs_one_line_and_runs_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/feed.xml")
    with Store(config.database, busy_timeout=0.1) as store, Fetcher(config.poll) as fetcher:
        pipeline = Pipeline(
            store=store, fetcher=fetcher, articles=InlineArticles(config.watchlists), clock=utc_now
        )
        daemon = Daemon(config, ConfigWatcher(config.path), store, pipeline)
        holder = sqlite3.connect(config.database, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another program holds the write lock
        try:
            with caplog.at_level(logging.INFO):
                daemon._digest_job()  # used to raise, and APScheduler logged a traceback
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert "the daemon tries again in a minute" in caplog.text
        assert "locked" in caplog.text
        daemon._digest_job()  # the next minute's check
        assert store.last_digest_done(config.digest.name) is not None  # nothing to send: empty
        pipeline.close()


def test_a_renamed_watchlist_mails_nothing_twice_and_backfills_only_when_asked(
    tmp_path: Path,
) -> None:
    """RELIABILITY C6: hits are filed under the watchlist's name. Renamed, it is a new
    watchlist: what was mailed is not mailed again, the stored articles are matched
    again only by an explicit `monitor backfill` (with its window), and new articles
    are hit once under the new name."""
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        feed = GrowingFeed(server, pages=False)
        config = write_config(tmp_path, server.url("/feed.xml"))
        feed.shown = 3
        with pipeline_for(config, store) as pipeline:
            assert pipeline.poll_feed(config.feeds[0]).new_hits == 3
        [first] = run_due_digest(store, config, config.digest, now=utc_now())
        assert first.delivered and first.hits == 3
        path = config.path
        path.write_text(path.read_text().replace("name: Togo", "name: Togo (renommé)"))
        renamed = load_config(path)
        feed.shown = 5
        with pipeline_for(renamed, store) as pipeline:
            report = pipeline.poll_feed(renamed.feeds[0])
        assert (report.new_entries, report.new_hits) == (2, 2)  # only the new articles
        assert {hit.watchlist for hit in store.hits()} == {"Togo", "Togo (renommé)"}
        [second] = run_digest(store, renamed, renamed.digest, key="digest@manual", now=utc_now())
        assert second.delivered and second.hits == 2  # nothing mailed twice
        scanned, added = backfill(
            store, renamed.watchlists[0], since=None, now=utc_now(), quiet=True
        )
        assert (scanned, added) == (5, 3)  # the explicit backfill adds the older three
        assert (
            run_digest(store, renamed, renamed.digest, key="digest@later", now=utc_now())[0].hits
            == 0
        )  # quiet: left out of digests
    assert len(list(renamed.digest.outbox.glob("*.eml"))) == 2
