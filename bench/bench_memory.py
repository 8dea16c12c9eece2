"""Memory of the daemon over many polls: does it grow once warm?

    .venv/bin/python bench/bench_memory.py                      # 20 feeds every 5 s, 15 minutes
    .venv/bin/python bench/bench_memory.py --rounds 60 --feeds 10 --interval 3

A local world serves `--feeds` feeds; every fetch of a feed adds 0-3 entries
(the feed shows its latest 30), each linking to a page of its own, so every
round brings new pages to fetch, extract, match and store. The daemon runs in
its own process (the `Daemon` of `monitor run`, with its fork server and
extraction workers), with each feed's interval set to `--interval` seconds:
below the one-minute floor of feeds.yaml, which exists to spare real servers,
so that a day of polling passes in minutes. A round is one poll of every feed.

Every `--sample` seconds it records the daemon's RSS and PSS and the PSS of
each of its helper processes (fork server, extraction workers), from
/proc/<pid>/status and /proc/<pid>/smaps_rollup; PSS shares the pages the
workers have in common with the fork server fairly among them. It prints the
curve, then the growth from the end of the warm-up (`--warmup` of the rounds)
to the end of the run: the goal is at most 10 %.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from html import escape
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.procfs import pss_kib, status_kib  # noqa: E402
from scripts.soak import FILLER, SENTENCES, WATCHLISTS_YAML  # noqa: E402
from tests.processes import descendants  # noqa: E402
from tests.servers import HTTPTestServer, Received, Reply  # noqa: E402

WINDOW = 30  # entries a feed shows


class EndlessWorld:
    """Feeds that gain 0-3 entries at every fetch, forever; pages made on demand."""

    def __init__(self, feeds: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.counts = [0] * feeds
        self.fetches = [0] * feeds
        self._lock = threading.Lock()
        self.server = HTTPTestServer()
        for feed in range(feeds):
            self.server.routes[f"/feeds/{feed}.xml"] = self._feed_route(feed)

    def _page(self, feed: int, number: int) -> Reply:
        rng = random.Random(feed * 1_000_003 + number)
        paragraphs = "".join(
            f"<p>{escape(sentence)} {FILLER}</p>"
            for sentence in rng.sample(SENTENCES, rng.randint(2, 4))
        )
        title = f"Dépêche {feed}-{number}"
        body = (
            f'<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>{title}</title>'
            f"</head><body><article><h1>{title}</h1>{paragraphs}</article></body></html>"
        ).encode()
        return Reply(body=body, headers={"Content-Type": "text/html; charset=utf-8"})

    def _feed_route(self, feed: int) -> Callable[[Received], Reply]:
        def route(request: Received) -> Reply:
            with self._lock:
                self.fetches[feed] += 1
                first_new = self.counts[feed]
                self.counts[feed] += self.rng.randint(0, 3)
                last = self.counts[feed]
            for number in range(first_new, last):
                self.server.routes[f"/news/{feed}/{number}.html"] = self._page(feed, number)
            items = "".join(
                f"<item><title>Dépêche {feed}-{n}</title>"
                f"<link>{self.server.url(f'/news/{feed}/{n}.html')}</link>"
                f"<guid>{feed}-{n}</guid></item>"
                for n in range(last - 1, max(-1, last - 1 - WINDOW), -1)
            )
            body = (
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>Feed {feed}</title><language>fr</language>{items}</channel></rss>"
            ).encode()
            return Reply(body=body, headers={"Content-Type": "application/rss+xml"})

        return route

    def rounds(self) -> int:
        with self._lock:
            return min(self.fetches)


@dataclass(frozen=True)
class Sample:
    seconds: float
    rounds: int
    articles: int
    daemon_rss: int  # KiB
    daemon_pss: int
    helpers_pss: int
    helpers: int

    @property
    def total_pss(self) -> int:
        return self.daemon_pss + self.helpers_pss


def daemon_child(config_path: Path, interval: float) -> int:
    """The daemon with every feed polled each `interval` seconds (run in the child)."""
    from monitor.daemon import Daemon, _run_until_signalled, single_instance
    from monitor.logs import setup_logging
    from monitor.models import utc_now
    from monitor.reload import ConfigWatcher
    from monitor.service import open_pipeline
    from monitor.store import Store

    setup_logging(verbose=False)
    watcher = ConfigWatcher(config_path)
    every = timedelta(seconds=interval)
    config = watcher.current
    config = replace(config, feeds=tuple(replace(spec, interval=every) for spec in config.feeds))
    with (
        single_instance(config.database),
        Store(config.database) as store,
        open_pipeline(config, store, clock=utc_now) as pipeline,
    ):
        _run_until_signalled(Daemon(config, watcher, store, pipeline))
    return 0


def articles_stored(database: Path) -> int:
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=10)) as db:
            return int(db.execute("SELECT COUNT(*) FROM articles").fetchone()[0])
    except sqlite3.Error:
        return 0


def run(
    *, feeds: int, interval: float, rounds: int, minutes: float, sample_every: float, seed: int
) -> list[Sample]:
    workdir = Path(tempfile.mkdtemp(prefix="monitor-memory-"))
    world = EndlessWorld(feeds, seed)
    world.server.start()
    config = workdir / "feeds.yaml"
    listed = "".join(
        f"  - url: {world.server.url(f'/feeds/{feed}.xml')}\n    name: Feed {feed}\n"
        for feed in range(feeds)
    )
    config.write_text(
        f"database: monitor.db\npoll:\n  concurrency: 4\nfeeds:\n{listed}{WATCHLISTS_YAML}"
        "digest:\n  from: a@example.org\n  to: [b@example.org]\n",
        encoding="utf-8",
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log_path = workdir / "daemon.log"
    samples: list[Sample] = []
    started = time.monotonic()
    with open(log_path, "w", encoding="utf-8") as log_file:
        daemon = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--daemon-child", str(config),
             "--interval", str(interval)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )  # fmt: skip
    try:
        while daemon.poll() is None:
            elapsed = time.monotonic() - started
            done = world.rounds()
            helpers = descendants(daemon.pid)
            samples.append(
                Sample(
                    seconds=elapsed,
                    rounds=done,
                    articles=articles_stored(workdir / "monitor.db"),
                    daemon_rss=status_kib(daemon.pid, "VmRSS"),
                    daemon_pss=pss_kib(daemon.pid),
                    helpers_pss=sum(pss_kib(pid) for pid in helpers),
                    helpers=len(helpers),
                )
            )
            print(format_sample(samples[-1]), flush=True)
            if done >= rounds or elapsed >= minutes * 60:
                break
            time.sleep(sample_every)
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(30)
        except subprocess.TimeoutExpired:
            daemon.kill()
        world.server.stop()
    if daemon.returncode not in (0, None):
        print(f"the daemon exited with {daemon.returncode}; log: {log_path}")
    return samples


def format_sample(sample: Sample) -> str:
    return (
        f"{sample.seconds:7.0f} {sample.rounds:6d} {sample.articles:8d} "
        f"{sample.daemon_rss / 1024:10.1f} {sample.daemon_pss / 1024:10.1f} "
        f"{sample.helpers_pss / 1024:11.1f} {sample.helpers:7d} {sample.total_pss / 1024:10.1f}"
    )


HEADER = "   time rounds articles daemon RSS daemon PSS helpers PSS helpers  total PSS"
UNITS = "      s                       MiB        MiB         MiB                MiB"


def growth(samples: list[Sample], warmup: float) -> tuple[Sample, Sample, float, float]:
    """(warm sample, last sample, daemon RSS growth %, total PSS growth %) after warm-up."""
    last_rounds = samples[-1].rounds
    warm = next(s for s in samples if s.rounds >= warmup * last_rounds and s.daemon_rss)
    last = samples[-1]

    def percent(before: int, after: int) -> float:
        return 100.0 * (after - before) / before if before else 0.0

    return (
        warm,
        last,
        percent(warm.daemon_rss, last.daemon_rss),
        percent(warm.total_pss, last.total_pss),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=20)
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    parser.add_argument("--rounds", type=int, default=10_000, help="stop after this many rounds")
    parser.add_argument("--minutes", type=float, default=15.0, help="or after this long")
    parser.add_argument("--sample", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup", type=float, default=0.2, help="share of the rounds")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--daemon-child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.daemon_child is not None:
        return daemon_child(args.daemon_child, args.interval)
    print(HEADER)
    print(UNITS)
    samples = run(
        feeds=args.feeds,
        interval=args.interval,
        rounds=args.rounds,
        minutes=args.minutes,
        sample_every=args.sample,
        seed=args.seed,
    )
    if len(samples) < 3:
        print("too few samples to say anything")
        return 1
    warm, last, rss_growth, pss_growth = growth(samples, args.warmup)
    polls = last.rounds * args.feeds
    print(
        f"\n{last.rounds} rounds ({polls} polls, {last.articles} articles) in "
        f"{last.seconds / 60:.1f} min: {last.rounds / 96:.1f} days of these {args.feeds} feeds "
        "at a 15-minute interval"
    )
    print(
        f"after warm-up (round {warm.rounds}, {warm.seconds:.0f} s): daemon RSS "
        f"{warm.daemon_rss / 1024:.1f} -> {last.daemon_rss / 1024:.1f} MiB ({rss_growth:+.1f} %), "
        f"total PSS {warm.total_pss / 1024:.1f} -> {last.total_pss / 1024:.1f} MiB "
        f"({pss_growth:+.1f} %); goal <= +10 %"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
