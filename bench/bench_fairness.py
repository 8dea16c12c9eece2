"""Benchmark: how long one good feed's poll takes next to a feed on a tarpit host, and
what reading a huge feed costs.

    .venv/bin/python bench/bench_fairness.py                  # this checkout
    PYTHONPATH=/work/main .venv/bin/python bench/bench_fairness.py   # another checkout

PYTHONPATH wins over this file's checkout, so the same script measures before and after.
Everything runs on this machine (127.0.0.1 and 127.0.0.2), with the daemon's own
wiring (`service.open_pipeline`: 8 feeds at once, 32 page threads, 2 requests per host)
and poll.timeout 5 s:

1. A good feed of 10 articles (each response 0.5 s late) polled alone, then polled together with
   a feed of 40, then 100 entries whose pages are on a tarpit host (it accepts, sends
   headers, then nothing: every page takes the whole timeout). The figure is the time
   until the good feed's report arrives; the tarpit feed is then abandoned (the
   pipeline is stopped), so the run does not wait it out.
2. A feed of 60,000 entries (about 14 MB, under the 15 MiB cap): the time and the
   polling process's peak memory to parse it in the polling thread (`parse_feed`, as
   before), and in a process of its own (`ExtractionPool.parse`, as a poll now does
   for a body over 256 KiB), each in a fresh process.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

sys.path.append(str(Path(__file__).resolve().parent.parent))  # PYTHONPATH first

from monitor.config import Config, DigestSettings, PollSettings
from monitor.models import FeedSpec, Watchlist, utc_now
from monitor.pipeline import FeedReport
from monitor.query import parse_query
from monitor.service import open_pipeline
from monitor.store import Store
from monitor.workers import ExtractionPool

TIMEOUT = 5.0
LATENCY = 0.5  # before each answer of the good site: a distant server


def article(number: int) -> bytes:
    words = " ".join(f"mot{number}x{index}" for index in range(200))
    return (
        f"<html lang='fr'><head><title>Article {number}</title></head><body><article>"
        f"<h1>Nouvelle {number} de Lomé</h1><p>Lomé, le {number} : {words}.</p>"
        f"<p>Le gouvernement a annoncé la mesure {number} mardi, selon le ministère.</p>"
        "</article></body></html>"
    ).encode()


def rss(links: list[str], title: str) -> bytes:
    items = "".join(
        f"<item><title>Entry {index} {title}</title><link>{link}</link><guid>{link}</guid>"
        f"<description>Entree {index} sur Lome et le Togo.</description>"
        "<pubDate>Tue, 01 Dec 2026 10:00:00 +0000</pubDate></item>"
        for index, link in enumerate(links)
    )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}'
        f"</title><language>fr</language>{items}</channel></rss>"
    ).encode()


class GoodSite:
    """127.0.0.1: a feed of 10 articles and their pages, each answered after LATENCY."""

    def __init__(self) -> None:
        routes: dict[str, bytes] = {}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler(routes))
        self.server.daemon_threads = True
        port = self.server.server_address[1]
        links = [f"http://127.0.0.1:{port}/a/{number}.html" for number in range(10)]
        routes["/feed.xml"] = rss(links, "Good")
        routes.update({f"/a/{number}.html": article(number) for number in range(10)})
        self.feed_url = f"http://127.0.0.1:{port}/feed.xml"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _handler(routes: dict[str, bytes]) -> type[BaseHTTPRequestHandler]:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                time.sleep(LATENCY)
                body = routes.get(self.path)
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Length", str(len(body or b"")))
                self.end_headers()
                self.wfile.write(body or b"")

            def log_message(self, format: str, *args: object) -> None:
                pass

        return Handler

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Tarpit:
    """127.0.0.2: /feed-N.xml lists N pages on this host; a page request gets headers
    promising a body, then nothing until the client gives up."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.2", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def feed_url(self, entries: int) -> str:
        return f"http://127.0.0.2:{self.port}/feed-{entries}.xml"

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            try:
                head = b""
                while b"\r\n\r\n" not in head:
                    data = connection.recv(4096)
                    if not data:
                        return
                    head += data
                path = head.split(b" ", 2)[1].decode()
                if path.startswith("/feed-"):
                    entries = int(path.removeprefix("/feed-").removesuffix(".xml"))
                    links = [f"http://127.0.0.2:{self.port}/p/{n}.html" for n in range(entries)]
                    body = rss(links, f"Tarpit {entries}")
                    connection.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n"
                        % len(body)
                        + body
                    )
                    return
                connection.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
                self.stopping.wait(3 * TIMEOUT)
            except OSError:
                return

    def close(self) -> None:
        self.stopping.set()
        self.listener.close()


def config_for(root: Path, **extra: object) -> Config:
    fields = {field.name for field in dataclasses.fields(PollSettings)}
    settings: dict[str, Any] = {"timeout": TIMEOUT, "connect_timeout": 2.0, **extra}
    poll = PollSettings(**{key: value for key, value in settings.items() if key in fields})
    return Config(
        path=root / "feeds.yaml",
        database=root / "bench.db",
        timezone=ZoneInfo("UTC"),
        poll=poll,
        feeds=(),
        watchlists=(Watchlist(name="Lomé", query=parse_query("Lomé", {})),),
        digests=(DigestSettings(outbox=root / "digests"),),
    )


def good_feed_time(good: GoodSite, tarpit: Tarpit, tarpit_entries: int) -> tuple[float, str]:
    """Seconds until the good feed's report arrives, polled next to a tarpit feed of
    `tarpit_entries` entries (none: alone), on a fresh database; and its log line."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        config = config_for(root)
        specs = [FeedSpec(url=good.feed_url, name="good")]
        if tarpit_entries:
            specs.insert(0, FeedSpec(url=tarpit.feed_url(tarpit_entries), name="tarpit"))
        with (
            Store(root / "bench.db") as store,
            open_pipeline(config, store, clock=utc_now) as pipeline,
        ):
            arrived: dict[str, float] = {}
            lines: dict[str, str] = {}
            started = time.perf_counter()

            def done(report: FeedReport) -> None:
                arrived[report.name] = time.perf_counter() - started
                lines[report.name] = report.log_line()
                if report.name == "good":  # the tarpit's own poll is not measured
                    pipeline.stopping.set()
                    pipeline.fetcher.close()

            pipeline.poll_all(specs, threads=config.poll.concurrency, on_done=done)
    return arrived["good"], lines["good"]


def tarpit_alone(tarpit: Tarpit, entries: int, deadline: timedelta) -> tuple[float, str]:
    """Seconds one poll of a tarpit feed takes under `deadline`, and its log line."""
    with tempfile.TemporaryDirectory() as directory:
        root = Path(directory)
        config = config_for(root, feed_deadline=deadline)
        with (
            Store(root / "bench.db") as store,
            open_pipeline(config, store, clock=utc_now) as pipeline,
        ):
            started = time.perf_counter()
            report = pipeline.poll_feed(FeedSpec(url=tarpit.feed_url(entries), name="tarpit"))
            return time.perf_counter() - started, report.log_line()


BIG_ENTRIES = 60_000


def big_feed() -> bytes:
    links = [f"https://big.example/news/2026/{number}" for number in range(BIG_ENTRIES)]
    return rss(links, "Big")


def big_parse(mode: str) -> None:
    """In a fresh process: parse the big feed `inline` or in a `worker`; print seconds,
    entries and this process's peak resident memory growth in MiB."""
    from monitor.parse import parse_feed

    body = big_feed()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if mode == "worker":
        with ExtractionPool(1) as pool:
            pool.start()
            before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            started = time.perf_counter()
            parsed = pool.parse(body, url="https://big.example/feed.xml", headers={}, timeout=600)
            elapsed = time.perf_counter() - started
    else:
        started = time.perf_counter()
        parsed = parse_feed(body, url="https://big.example/feed.xml", headers={})
        elapsed = time.perf_counter() - started
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    entries = len(getattr(parsed, "entries", ()))
    print(f"{elapsed:.1f} {entries} {grown:.0f} {len(body) / 1e6:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big-parse", choices=["inline", "worker"], help=argparse.SUPPRESS)
    parser.add_argument("--skip-big", action="store_true", help="only the tarpit figures")
    args = parser.parse_args()
    if args.big_parse:
        big_parse(args.big_parse)
        return
    import monitor

    print(f"monitor from {Path(monitor.__file__).parent}")
    good, tarpit = GoodSite(), Tarpit()
    try:
        for entries in (0, 40, 100):
            seconds, line = good_feed_time(good, tarpit, entries)
            label = "alone" if not entries else f"next to {entries} tarpit entries"
            print(f"good feed {label}: {seconds:.1f} s  ({line})")
        if "feed_deadline" in {field.name for field in dataclasses.fields(PollSettings)}:
            seconds, line = tarpit_alone(tarpit, 100, timedelta(seconds=30))
            print(f"tarpit feed of 100 entries alone, poll.feed_deadline 30s: {seconds:.1f} s")
            print(f"  ({line})")
    finally:
        good.close()
        tarpit.close()
    if args.skip_big:
        return
    for mode in ("inline", "worker") if hasattr(ExtractionPool, "parse") else ("inline",):
        out = subprocess.run(
            [sys.executable, __file__, "--big-parse", mode],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        parse_seconds, parsed_entries, grown, size = out
        where = "in the polling thread" if mode == "inline" else "in a process of its own"
        print(
            f"{BIG_ENTRIES:,}-entry feed ({size} MB) parsed {where}: {parse_seconds} s, "
            f"{parsed_entries} entries, polling process peak memory +{grown} MiB"
        )


if __name__ == "__main__":
    main()
