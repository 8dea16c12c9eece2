"""Extraction workers start with the first page to extract, not with the pipeline: a poll
where nothing is new (304, an unchanged body, an empty feed) pays for no worker process.
Real processes, read from /proc."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from monitor.config import Config, load_config
from monitor.models import ArticleJob, Entry, utc_now
from monitor.service import open_pipeline
from monitor.store import Store
from monitor.workers import ExtractionPool
from tests.processes import descendants
from tests.servers import HTTPTestServer, Received, Reply


class Feed:
    def __init__(self) -> None:
        self.items = 0

    def route(self, request: Received) -> Reply:
        items = "".join(
            f"<item><title>Le Togo {n}</title><guid>togo-{n}</guid>"
            f"<description>Le Togo signe l'accord {n}.</description></item>"
            for n in range(self.items)
        )
        body = f'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title>{items}</channel></rss>'
        return Reply(
            body=body.encode(),
            headers={"Content-Type": "application/rss+xml"},
            etag=f'"{self.items}"',
        )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_workers_start_with_the_first_entry_and_not_before(tmp_path: Path) -> None:
    feed = Feed()
    with HTTPTestServer() as server, Store(tmp_path / "monitor.db") as store:
        server.routes["/feed.xml"] = feed.route
        config = _config(tmp_path, server.url("/feed.xml"))
        [spec] = config.feeds
        before = descendants(os.getpid())  # a fork server left by another test may be there
        with open_pipeline(config, store, clock=utc_now, extract_workers=1) as pipeline:
            pool = pipeline.articles
            assert isinstance(pool, ExtractionPool)
            assert not pool.started
            assert pipeline.poll_feed(spec).new_entries == 0  # an empty feed
            assert pipeline.poll_feed(spec).status == 304
            assert not pool.started
            assert descendants(os.getpid()) == before

            feed.items = 1
            report = pipeline.poll_feed(spec)
            assert (report.new_entries, report.new_hits) == (1, 1)
            assert pool.started
            assert descendants(os.getpid()) - before, "no worker process started"


def test_the_default_leaves_the_main_process_a_core() -> None:
    cores = len(os.sched_getaffinity(0))
    assert ExtractionPool().workers == max(1, cores - 1)


def _config(tmp_path: Path, feed_url: str, poll: str = "") -> Config:
    """A configuration of one feed and one watchlist (`Togo`); `poll`: lines of `poll:`."""
    config_path = tmp_path / "feeds.yaml"
    config_path.write_text(
        "database: monitor.db\n"
        + (f"poll:\n{poll}" if poll else "")
        + f"feeds:\n  - url: {feed_url}\n"
        "watchlists:\n  - name: Togo\n    query: Togo\n"
        "digest:\n  from: veille@example.org\n  to: [analyste@example.org]\n",
        encoding="utf-8",
    )
    return load_config(config_path)


def test_poll_workers_sets_how_many_workers_extract(tmp_path: Path) -> None:
    config = _config(tmp_path, "http://127.0.0.1:9/f.xml", poll="  workers: 3\n")
    with (
        Store(tmp_path / "monitor.db") as store,
        open_pipeline(config, store, clock=utc_now) as pipeline,
    ):
        assert isinstance(pipeline.articles, ExtractionPool)
        assert pipeline.articles.workers == 3
        assert not pipeline.articles.started  # set, not started: no page yet


def test_the_daemon_starts_its_workers_in_the_background(tmp_path: Path) -> None:
    """`monitor run` will need the workers: `start_workers` starts them at once, without
    holding up the caller (the daemon polls meanwhile)."""
    config = _config(tmp_path, "http://127.0.0.1:9/feed.xml")
    with (
        Store(tmp_path / "monitor.db") as store,
        open_pipeline(
            config, store, clock=utc_now, extract_workers=1, start_workers=True
        ) as pipeline,
    ):
        pool = pipeline.articles
        assert isinstance(pool, ExtractionPool)
        deadline = time.monotonic() + 60
        while not pool.started:
            assert time.monotonic() < deadline, "the workers never started"
            time.sleep(0.05)
        time.sleep(0.5)  # the starting thread's own end would come now: it must not kill them
        entry = Entry(
            key="k",
            link=None,
            title="Le Togo",
            summary="Le Togo signe un accord.",
            content="",
            published=None,
        )
        article, hits, _ = pool.process(ArticleJob(entry=entry, feed_name="F", feed_language="fr"))
        assert [hit.watchlist for hit in hits] == ["Togo"]
        assert "died" not in (article.note or "")


_EARLY_FORK_SERVER = """
import os, sys, time
from pathlib import Path
from monitor.models import ArticleJob, Entry, Watchlist
from monitor.query import parse_query
from monitor.workers import ExtractionPool, start_fork_server

def children(pid):
    return {int(child) for task in Path(f"/proc/{pid}/task").iterdir()
            for child in (task / "children").read_text().split()}

def forkserver(pid):
    return b"forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()

start_fork_server()
# The fork server (and multiprocessing's resource tracker), before any pool exists; on a
# busy machine /proc may show the new child a moment after it was started.
deadline = time.monotonic() + 10
while True:
    before = children(os.getpid())
    servers = [child for child in before if forkserver(child)]
    if servers or time.monotonic() > deadline:
        break
    time.sleep(0.05)
(server,) = servers
watchlists = [Watchlist(name="Kara", query=parse_query("Kara", {}))]
with ExtractionPool(1, watchlists=watchlists) as pool:
    pool.start()
    workers = children(server)
    entry = Entry(key="k", link=None, title="Dépêche", summary="Kara et Lomé.", content="",
                  published=None)
    job = ArticleJob(entry=entry, feed_name=None, feed_language="fr", no_page_reason="test")
    print(len(workers), children(os.getpid()) == before,
          [hit.watchlist for hit in pool.process(job)[1]])
"""


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_the_fork_server_started_early_is_the_one_the_workers_come_from(tmp_path: Path) -> None:
    # `monitor run` starts it before reading feeds.yaml, so that its imports overlap the
    # load; the workers started afterwards come from it and match.
    finished = subprocess.run(
        [sys.executable, "-c", _EARLY_FORK_SERVER],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert finished.stdout.split("\n")[0] == "1 True ['Kara']"
