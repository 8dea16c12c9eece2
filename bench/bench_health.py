"""Benchmark `Store.feed_health`: what `monitor status` and the digest pay to know every
feed's health, on a database with many feeds and a long history of entries.

    .venv/bin/python bench/bench_health.py            # 1,000 feeds x 300 entries
    .venv/bin/python bench/bench_health.py --quick    # 100 feeds x 100 entries

Feed rows are written by `Store.record` from the real decider (a mix of healthy,
failing and gone feeds); each feed's entries, one arriving every hour, are inserted in
bulk. Then `feed_health` is timed over all feeds. Prints the sizes and the time per call.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from monitor.models import BodyUnchanged, FeedSpec, Fetched, FetchErrorKind, FetchFailed
from monitor.schedule import decide_update
from monitor.store import Store
from monitor.store.rows import to_db

START = datetime(2026, 1, 1, tzinfo=UTC)


def failure(url: str, status: int) -> FetchFailed:
    return FetchFailed(
        url=url, kind=FetchErrorKind.HTTP_STATUS, message=f"{url}: HTTP {status}", status=status
    )


def fill(store: Store, path: Path, feeds: int, entries: int) -> list[FeedSpec]:
    """Feed rows through the decider and `Store.record`; the history of entries (one
    arrival an hour) inserted in bulk, as thousands of polls would have left it."""
    specs = [FeedSpec(url=f"https://site{n}.example/feed.xml") for n in range(feeds)]
    fetched_at = START + timedelta(hours=entries)
    for number, spec in enumerate(specs):
        state = store.feed_state(spec.url)
        body = Fetched(url=spec.url, status=200, headers={}, content=b"")
        update = decide_update(state, spec, BodyUnchanged(body), fetched_at)
        store.record(update)
        if number % 10 == 0:  # a tenth fail; a tenth of those answer 404 (gone after a day)
            status = 404 if number % 100 == 0 else 503
            for hours in (1, 30):
                state = store.feed_state(spec.url)
                at = fetched_at + timedelta(hours=hours)
                store.record(decide_update(state, spec, failure(spec.url, status), at))
    with sqlite3.connect(path) as db:
        feed_ids = [row[0] for row in db.execute("SELECT id FROM feeds ORDER BY id")]
        for feed_id in feed_ids:
            times = [to_db(START + timedelta(hours=index)) for index in range(entries)]
            db.executemany(
                "INSERT INTO articles (url_key, title, text, text_source, first_seen, "
                "first_feed_id) VALUES (?, 't', 'x', 'feed', ?, ?)",
                [(f"entry:{feed_id}:{n}", at, feed_id) for n, at in enumerate(times)],
            )
            db.executemany(
                "INSERT INTO entries (feed_id, entry_key, article_id, title, first_seen) "
                "SELECT ?, ?, id, 't', ? FROM articles WHERE url_key = ?",
                [(feed_id, str(n), at, f"entry:{feed_id}:{n}") for n, at in enumerate(times)],
            )
    return specs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=1000)
    parser.add_argument("--entries", type=int, default=300)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.feeds, args.entries = 100, 100
    with tempfile.TemporaryDirectory() as directory, Store(Path(directory) / "m.db") as store:
        started = time.perf_counter()
        specs = fill(store, Path(directory) / "m.db", args.feeds, args.entries)
        print(
            f"filled {args.feeds:,} feeds x {args.entries:,} entries "
            f"in {time.perf_counter() - started:.1f} s"
        )
        now = START + timedelta(hours=args.entries + 48)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            healths = store.feed_health(now, specs)
            timings.append(time.perf_counter() - started)
        states = Counter(health.state.value for health in healths)
        print(f"states: {dict(sorted(states.items()))}")
        best, worst = min(timings), max(timings)
        print(
            f"feed_health over {len(specs):,} feeds: best {best * 1000:.0f} ms, "
            f"worst {worst * 1000:.0f} ms of {len(timings)} calls "
            f"({best / len(specs) * 1e6:.0f} µs per feed)"
        )


if __name__ == "__main__":
    main()
