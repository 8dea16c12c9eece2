"""The daemon's feed timer: one schedule of due times (`schedule.DueFeeds`) and one thread
that hands due feeds to the poll threads, on the daemon's clock. Real local HTTP server,
real SQLite file, a clock the test moves."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from monitor.articles import InlineArticles
from monitor.config import Config, load_config
from monitor.daemon import Daemon
from monitor.fetch import Fetcher
from monitor.pipeline import Pipeline
from monitor.reload import ConfigWatcher
from monitor.schedule import DueFeeds
from monitor.store import Store
from tests.servers import HTTPTestServer, Reply

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
EMPTY_FEED = (
    b'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>F</title>'
    b"</channel></rss>"
)


def test_due_feeds_come_out_earliest_first_and_only_when_due() -> None:
    due = DueFeeds()
    due.set("b", T0 + timedelta(minutes=2))
    due.set("a", T0 + timedelta(minutes=1))
    due.set("c", T0 + timedelta(minutes=5))
    assert due.pop_due(T0) == []
    assert due.next_due() == T0 + timedelta(minutes=1)
    assert due.pop_due(T0 + timedelta(minutes=3)) == ["a", "b"]
    assert "a" not in due and "c" in due and len(due) == 1
    assert due.when("a") is None and due.when("c") == T0 + timedelta(minutes=5)


def test_feeds_due_together_come_out_in_the_order_they_were_set_not_by_url() -> None:
    due = DueFeeds()
    urls = [f"http://site-{n % 3}.example/feed/{n}.xml" for n in range(9)]
    for url in urls:
        due.set(url, T0)
    assert due.pop_due(T0) == urls


def test_a_replaced_or_removed_feed_comes_out_once_at_its_current_time() -> None:
    due = DueFeeds()
    due.set("a", T0 + timedelta(minutes=1))
    due.set("a", T0 + timedelta(minutes=10))  # rescheduled later: the old time is stale
    due.set("b", T0 + timedelta(minutes=2))
    due.remove("b")
    assert due.next_due() == T0 + timedelta(minutes=10)
    assert due.pop_due(T0 + timedelta(minutes=5)) == []
    assert due.pop_due(T0 + timedelta(minutes=10)) == ["a"]
    assert due.next_due() is None and due.pop_due(T0 + timedelta(days=1)) == []


class MovableClock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def write_config(directory: Path, urls: list[str]) -> Config:
    path = directory / "feeds.yaml"
    feeds = "".join(f"  - url: {url}\n" for url in urls)
    path.write_text(
        f"database: monitor.db\nfeeds:\n{feeds}watchlists:\n  - name: Togo\n    query: Togo\n"
        "digest:\n  from: veille@example.org\n  to: [analyste@example.org]\n",
        encoding="utf-8",
    )
    return load_config(path)


@contextmanager
def running_daemon(config: Config, store: Store, clock: MovableClock) -> Iterator[Daemon]:
    with Fetcher(config.poll, wall_clock=clock) as fetcher:
        pipeline = Pipeline(
            store=store, fetcher=fetcher, articles=InlineArticles(config.watchlists), clock=clock
        )
        daemon = Daemon(config, ConfigWatcher(config.path), store, pipeline, clock=clock)
        daemon.start()
        try:
            yield daemon
        finally:
            daemon.stop()
            pipeline.close()


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never happened: {what}"
        time.sleep(0.02)


def test_the_timer_polls_each_feed_at_its_own_interval(tmp_path: Path) -> None:
    clock = MovableClock(T0)
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        for name in ("fast", "slow"):
            server.routes[f"/{name}.xml"] = Reply(
                body=EMPTY_FEED, headers={"Content-Type": "application/rss+xml"}
            )
        fast, slow = server.url("/fast.xml"), server.url("/slow.xml")
        config = write_config(tmp_path, [fast, slow])
        every = {fast: timedelta(minutes=1), slow: timedelta(minutes=3)}
        config = replace(
            config, feeds=tuple(replace(spec, interval=every[spec.url]) for spec in config.feeds)
        )
        with running_daemon(config, store, clock) as daemon:
            wait_for(lambda: None not in (daemon.next_poll(fast), daemon.next_poll(slow)), "polls")
            assert server.count("/fast.xml") == server.count("/slow.xml") == 1
            assert daemon.next_poll(fast) == T0 + timedelta(minutes=1)
            assert daemon.next_poll(slow) == T0 + timedelta(minutes=3)

            clock.now = T0 + timedelta(minutes=1)
            wait_for(lambda: daemon.next_poll(fast) == T0 + timedelta(minutes=2), "fast again")
            assert server.count("/fast.xml") == 2
            # The same look at the clock would have taken the slow feed out had it been due.
            assert daemon.next_poll(slow) == T0 + timedelta(minutes=3)
            assert server.count("/slow.xml") == 1

            clock.now = T0 + timedelta(minutes=3)
            wait_for(lambda: daemon.next_poll(slow) == T0 + timedelta(minutes=6), "slow again")
            wait_for(lambda: daemon.next_poll(fast) == T0 + timedelta(minutes=4), "fast, third")
            assert (server.count("/fast.xml"), server.count("/slow.xml")) == (3, 2)


def test_a_restart_keeps_each_feeds_recorded_next_poll(tmp_path: Path) -> None:
    """What the store recorded (here the next poll an interval after the last) decides when a
    feed is polled after a restart; a feed never polled is due at once."""
    clock = MovableClock(T0)
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        for name in ("old", "new"):
            server.routes[f"/{name}.xml"] = Reply(
                body=EMPTY_FEED, headers={"Content-Type": "application/rss+xml"}
            )
        old, new = server.url("/old.xml"), server.url("/new.xml")
        config = write_config(tmp_path, [old])
        with running_daemon(config, store, clock) as daemon:
            wait_for(lambda: daemon.next_poll(old) is not None, "first poll")
        recorded = store.feed_state(old).next_poll
        assert recorded == T0 + config.poll.interval

        clock.now = T0 + timedelta(minutes=5)
        config = write_config(tmp_path, [old, new])
        with running_daemon(config, store, clock) as daemon:
            wait_for(lambda: daemon.next_poll(new) is not None, "the new feed's first poll")
            assert daemon.next_poll(old) == recorded
            assert server.count("/old.xml") == 1 and server.count("/new.xml") == 1


def test_a_reload_drops_removed_feeds_and_applies_a_new_interval(tmp_path: Path) -> None:
    clock = MovableClock(T0)
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        for name in ("kept", "dropped"):
            server.routes[f"/{name}.xml"] = Reply(
                body=EMPTY_FEED, headers={"Content-Type": "application/rss+xml"}
            )
        kept, dropped = server.url("/kept.xml"), server.url("/dropped.xml")
        config = write_config(tmp_path, [kept, dropped])
        with running_daemon(config, store, clock) as daemon:
            wait_for(
                lambda: None not in (daemon.next_poll(kept), daemon.next_poll(dropped)), "polls"
            )
            clock.now = T0 + timedelta(minutes=2)
            daemon.config = replace(
                config,
                feeds=tuple(
                    replace(spec, interval=timedelta(hours=2))
                    for spec in config.feeds
                    if spec.url == kept
                ),
            )
            daemon._sync_feeds()
            assert daemon.next_poll(kept) == clock.now + timedelta(hours=2)
            assert daemon.next_poll(dropped) is None
            clock.now = T0 + timedelta(days=1)
            wait_for(lambda: server.count("/kept.xml") == 2, "the kept feed's second poll")
            assert server.count("/dropped.xml") == 1


def test_polls_with_nothing_new_are_counted_in_a_summary_not_logged_one_by_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    clock = MovableClock(T0)
    caplog.set_level(logging.INFO, logger="monitor.daemon")
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        server.routes["/quiet.xml"] = Reply(
            body=EMPTY_FEED, headers={"Content-Type": "application/rss+xml", "ETag": '"v1"'}
        )
        server.routes["/broken.xml"] = Reply(status=500, body=b"oops")
        quiet, broken = server.url("/quiet.xml"), server.url("/broken.xml")
        config = write_config(tmp_path, [quiet, broken])
        config = replace(
            config,
            feeds=tuple(replace(spec, interval=timedelta(minutes=5)) for spec in config.feeds),
        )
        with running_daemon(config, store, clock) as daemon:
            wait_for(lambda: daemon.next_poll(quiet) is not None, "first poll")
            wait_for(lambda: daemon.next_poll(broken) is not None, "first poll of the broken feed")
            clock.now = T0 + timedelta(minutes=6)  # the quiet feed answers 304 this time
            wait_for(lambda: server.count("/quiet.xml") == 2, "second poll")
            wait_for(lambda: daemon.next_poll(quiet) is not None, "second poll recorded")
            clock.now = T0 + timedelta(minutes=12)  # ten minutes since the daemon started
            wait_for(lambda: server.count("/quiet.xml") == 3, "third poll")
            wait_for(lambda: "polls in the last" in caplog.text, "the summary")
    lines = [record.getMessage() for record in caplog.records]
    assert sum("FAILED" in line for line in lines) >= 1  # failures are still logged one by one
    [summary] = [line for line in lines if line.startswith("polls in the last")]
    assert re.fullmatch(
        r"polls in the last 12 min: \d+: (\d+ not modified, )?\d+ unchanged, "
        r"1 with new entries, \d+ failed; 0 new articles, 0 new hits",
        summary,
    ), summary
    assert not any("unchanged (HTTP" in line or "not modified (HTTP" in line for line in lines)
