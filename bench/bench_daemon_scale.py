"""The daemon at 10,000 feeds: a whole poll round, CPU per feed, memory of every process.

    .venv/bin/python bench/bench_daemon_scale.py                    # 10,000 feeds, 2 rounds
    .venv/bin/python bench/bench_daemon_scale.py --feeds 1000 --hosts 4   # a smaller world
    .venv/bin/python bench/bench_daemon_scale.py --scheduler-only   # the scheduler alone

What it does, on this machine only (127.0.0.x):

1. Starts one server process per loopback address (127.0.0.2, 127.0.0.3, ...), an
   asyncio HTTP/1.1 server with keep-alive that adds --latency (200 ms) to every
   response. Together they serve --feeds feeds, each with one entry linking to a small
   article page at first. From the second fetch on, 80 % of the feeds answer 304 to
   the conditional request, 10 % resend an identical body without validators, and
   10 % show one new entry (its page is served too) at every fetch.
2. Writes a feeds.yaml (poll.concurrency, poll.per_host, a 30-minute interval, a few
   watchlists) and runs the real `monitor run` as a subprocess, once per round. Round 1
   is the first poll of every feed (every entry new, every page fetched and
   extracted); before each later round the feeds' `next_poll` is set to the past in
   the database, as after a restart that followed an outage, so that every feed is due
   at once and the round measures throughput rather than the spread of the first one.
3. While the daemon runs it samples, every --sample seconds, the RSS of the daemon's
   main process (and its peak, VmHWM), the PSS of each of its processes from
   /proc/<pid>/smaps_rollup (main, fork server, extraction workers, resource tracker),
   and their CPU time from /proc/<pid>/stat. A round ends when every feed's
   `last_poll` is later than the daemon's start; the daemon then gets SIGTERM.
4. Prints per round: start-up (process start to first poll), the round (first to last
   poll), feeds/s, CPU seconds per feed (main and helpers), peak RSS of the main
   process, peak PSS summed over the daemon's processes, and what each process held.
5. `--scheduler-only` (also run after the rounds unless --no-scheduler) measures the
   daemon's scheduling alone: the real `Daemon` with a stand-in pipeline whose polls
   return at once, so that what is left is the schedule's own cost with --feeds feeds:
   the time and memory to create the feed jobs, and the wall and CPU time of a round
   in which every feed is due.
6. `--raw-httpx` measures the floor instead: the same world and the same requests as a
   round after the first (a conditional GET with the feed's ETag, and the new page of
   the 10 % that gain an entry) sent by --concurrency threads with one bare
   `httpx.Client`, nothing parsed or stored. It tells what --concurrency requests in
   flight at --latency allow on this machine, whatever the daemon does.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import hashlib
import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.procfs import free_port, pss_kib, status_kib  # noqa: E402

PUBLISHED = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)
SHOWN = 5  # entries a feed shows
SENTENCES = (
    "Le Togo et le Bénin ont signé un accord de coopération militaire à Lomé.",
    "La Banque centrale a relevé ses taux d'intérêt pour contenir l'inflation.",
    "Le président de la commission électorale a annoncé la date du vote.",
    "Les pluies ont endommagé les routes du nord du pays, selon les autorités.",
    "Le ministre de l'Économie a présenté le budget devant l'Assemblée nationale.",
    "Une délégation russe a été reçue par le gouvernement pour parler de sécurité.",
    "Les agriculteurs attendent la saison des pluies pour semer le maïs.",
    "Le port autonome a enregistré une hausse de son trafic de conteneurs.",
)
WATCHLISTS_YAML = """watchlists:
  - name: Togo — coopération militaire
    query: Togo AND ("coopération militaire" OR "accord de défense")
  - name: Élections
    query: (élection OR vote) NEAR/8 président
  - name: Économie
    query: inflation OR "taux d'intérêt"
"""

# --------------------------------------------------------------------------- the world


def feed_kind(feed: int) -> str:
    """80 % answer 304, 10 % resend the same body, 10 % gain an entry at every fetch."""
    share = feed % 10
    return "new" if share == 9 else "same" if share == 8 else "304"


def page_html(feed: int, number: int) -> bytes:
    title = f"Dépêche {feed}-{number}"
    paragraphs = "".join(
        f"<p>{SENTENCES[(feed + number + offset) % len(SENTENCES)]} "
        "Les observateurs suivront la suite de ce dossier dans les prochaines semaines, "
        "car plusieurs partenaires régionaux ont déjà fait part de leur intérêt.</p>"
        for offset in range(4)
    )
    return (
        f'<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8"><title>{title}</title>'
        f"</head><body><nav>Accueil | Monde | Afrique</nav><article><h1>{title}</h1>"
        f"{paragraphs}</article><footer>© Bench</footer></body></html>"
    ).encode()


def feed_xml(base: str, feed: int, newest: int) -> bytes:
    items = "".join(
        f"<item><title>Dépêche {feed}-{number}</title>"
        f"<link>{base}/page/{feed}/{number}.html</link><guid>{feed}-{number}</guid>"
        f"<pubDate>{format_datetime(PUBLISHED + timedelta(minutes=number))}</pubDate></item>"
        for number in range(newest, max(-1, newest - SHOWN), -1)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>Flux {feed}</title><link>{base}/</link><language>fr</language>"
        f"{items}</channel></rss>"
    ).encode()


def serve(host: str, port: int, latency: float, ready: Any) -> None:
    """One loopback address: its feeds and pages, generated on demand."""
    base = f"http://{host}:{port}"
    fetches: dict[int, int] = {}

    def respond(path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        parts = path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "feed" and parts[1].endswith(".xml"):
            feed = int(parts[1][:-4])
            kind = feed_kind(feed)
            count = fetches.get(feed, 0)
            fetches[feed] = count + 1
            newest = count if kind == "new" else 0
            body = feed_xml(base, feed, newest)
            if kind == "304":
                etag = '"' + hashlib.sha1(body).hexdigest()[:16] + '"'
                if headers.get("if-none-match") == etag:
                    return 304, {"ETag": etag}, b""
                return 200, {"ETag": etag, "Content-Type": "application/rss+xml"}, body
            return 200, {"Content-Type": "application/rss+xml"}, body
        if len(parts) == 3 and parts[0] == "page" and parts[2].endswith(".html"):
            body = page_html(int(parts[1]), int(parts[2][:-5]))
            return 200, {"Content-Type": "text/html; charset=utf-8"}, body
        return 404, {}, b""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                path = lines[0].split(" ")[1]
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (line.partition(":") for line in lines[1:] if line)
                }
                await asyncio.sleep(latency)
                status, extra, body = respond(path, headers)
                reason = {200: "OK", 304: "Not Modified", 404: "Not Found"}[status]
                out = [f"HTTP/1.1 {status} {reason}", f"Content-Length: {len(body)}"]
                out += [f"{name}: {value}" for name, value in extra.items()]
                writer.write(("\r\n".join(out) + "\r\n\r\n").encode() + body)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, host, port, backlog=1024)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class World:
    def __init__(self, feeds: int, hosts: int, latency: float) -> None:
        self.port = free_port()
        self.hosts = [f"127.0.0.{2 + index}" for index in range(hosts)]
        self.feeds = feeds
        self.processes: list[multiprocessing.process.BaseProcess] = []
        context = multiprocessing.get_context("fork")
        for host in self.hosts:
            ready = context.Event()
            process = context.Process(
                target=serve, args=(host, self.port, latency, ready), daemon=True
            )
            process.start()
            if not ready.wait(30):
                raise SystemExit(f"server on {host}:{self.port} did not start")
            self.processes.append(process)

    def url(self, feed: int) -> str:
        return f"http://{self.hosts[feed % len(self.hosts)]}:{self.port}/feed/{feed}.xml"

    def close(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.join(5)


# --------------------------------------------------------------------------- /proc


TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds used) of a live process."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS


def _cmdline(pid: int) -> str:
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    return ""


def descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None:
                parents[int(entry.name)] = stat[0]
    found: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, ppid in parents.items() if ppid == parent]
        found += children
        frontier += children
    return found


def role(pid: int, root: int) -> str:
    stat = _stat(pid)
    if stat is not None and stat[0] != root:
        return "extraction worker"  # forked by the fork server
    command = _cmdline(pid)
    if "forkserver" in command:
        return "fork server"
    if "resource_tracker" in command:
        return "resource tracker"
    return "other"


# --------------------------------------------------------------------------- one daemon run


@dataclass
class RoundResult:
    name: str
    feeds: int
    started: float  # monotonic, process start
    first_poll: float | None = None
    last_poll: float | None = None
    polled: int = 0
    articles: int = 0
    cpu_main: float = 0.0
    cpu_helpers: float = 0.0
    peak_rss_kib: int = 0  # VmHWM of the main process
    peak_pss_kib: int = 0  # summed over the daemon's processes
    peak_pss_parts: dict[str, int] = field(default_factory=dict)
    rest_pss_parts: dict[str, int] = field(default_factory=dict)
    rest_rss_kib: int = 0
    workers_seen: int = 0
    load: str = ""

    @property
    def startup(self) -> float:
        return (self.first_poll or self.started) - self.started

    @property
    def round_seconds(self) -> float:
        if self.first_poll is None or self.last_poll is None:
            return float("nan")
        return self.last_poll - self.first_poll


def polled_since(database: Path, since: str) -> tuple[int, int]:
    """(feeds polled since `since`, articles stored)."""
    try:
        with contextlib.closing(sqlite3.connect(database, timeout=5)) as db:
            polled = db.execute("SELECT COUNT(*) FROM feeds WHERE last_poll >= ?", (since,))
            articles = db.execute("SELECT COUNT(*) FROM articles")
            return int(polled.fetchone()[0]), int(articles.fetchone()[0])
    except sqlite3.Error:
        return 0, 0


def make_all_due(database: Path) -> None:
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat(timespec="microseconds")
    with contextlib.closing(sqlite3.connect(database, timeout=30)) as db, db:
        db.execute("UPDATE feeds SET next_poll = ?", (past,))


def snapshot(root: int) -> dict[str, int]:
    """PSS (KiB) of the daemon's processes by role."""
    parts: dict[str, int] = {"main": pss_kib(root)}
    for pid in descendants(root):
        name = role(pid, root)
        parts[name] = parts.get(name, 0) + pss_kib(pid)
    return parts


def run_round(
    name: str, config: Path, feeds: int, *, sample_every: float, timeout: float
) -> RoundResult:
    database = config.parent / "monitor.db"
    since = datetime.now(UTC).isoformat(timespec="microseconds")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    log_path = config.parent / f"daemon-round{name.split()[0]}.log"
    cpu: dict[int, float] = {}  # last CPU seconds seen per process
    with open(log_path, "w", encoding="utf-8") as log_file:
        started = time.monotonic()
        daemon = subprocess.Popen(
            [sys.executable, "-m", "monitor", "-c", str(config), "run"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    result = RoundResult(name=name, feeds=feeds, started=started)
    previous = 0
    try:
        while daemon.poll() is None:
            now = time.monotonic()
            polled, articles = polled_since(database, since)
            if polled and result.first_poll is None:
                result.first_poll = now - sample_every / 2
            if polled > previous:
                result.last_poll = now
                previous = polled
            result.polled, result.articles = polled, articles
            helpers = descendants(daemon.pid)
            for pid in [daemon.pid, *helpers]:
                stat = _stat(pid)
                if stat is not None:
                    cpu[pid] = stat[1]
            result.workers_seen = max(
                result.workers_seen,
                sum(1 for pid in helpers if role(pid, daemon.pid) == "extraction worker"),
            )
            parts = snapshot(daemon.pid)
            total = sum(parts.values())
            if total > result.peak_pss_kib:
                result.peak_pss_kib, result.peak_pss_parts = total, parts
            result.peak_rss_kib = max(result.peak_rss_kib, status_kib(daemon.pid, "VmHWM"))
            if polled >= feeds:
                break
            if now - started > timeout:
                print(f"  round {name}: timed out with {polled} of {feeds} feeds polled")
                break
            time.sleep(sample_every)
        result.load = _load()
        time.sleep(2.0)  # at rest, every poll done
        result.rest_pss_parts = snapshot(daemon.pid)
        result.rest_rss_kib = status_kib(daemon.pid, "VmRSS")
        result.peak_rss_kib = max(result.peak_rss_kib, status_kib(daemon.pid, "VmHWM"))
        for pid in [daemon.pid, *descendants(daemon.pid)]:
            stat = _stat(pid)
            if stat is not None:
                cpu[pid] = stat[1]
    finally:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(60)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
    result.cpu_main = cpu.pop(daemon.pid, 0.0)
    result.cpu_helpers = sum(cpu.values())
    if daemon.returncode not in (0, None):
        print(f"  the daemon exited with {daemon.returncode}; log: {log_path}")
    return result


def write_config(directory: Path, world: World, *, concurrency: int, per_host: int) -> Path:
    config = directory / "feeds.yaml"
    listed = "".join(f"  - url: {world.url(feed)}\n" for feed in range(world.feeds))
    config.write_text(
        "database: monitor.db\n"
        f"poll:\n  interval: 30m\n  concurrency: {concurrency}\n  per_host: {per_host}\n"
        f"feeds:\n{listed}{WATCHLISTS_YAML}"
        "digest:\n  from: veille@example.org\n  to: [analyste@example.org]\n",
        encoding="utf-8",
    )
    return config


def mib(kib: int) -> str:
    return f"{kib / 1024:.0f}"


def print_round(result: RoundResult) -> None:
    rate = result.polled / result.round_seconds if result.round_seconds else float("nan")
    cpu = result.cpu_main + result.cpu_helpers
    print(f"\nround {result.name}: {result.polled} feeds polled, {result.articles} articles stored")
    print(f"  start-up (process start to first poll)  {result.startup:7.1f} s")
    print(
        f"  round (first poll to last poll)         {result.round_seconds:7.1f} s  {rate:6.0f} feeds/s"
    )
    print(
        f"  CPU: main {result.cpu_main:.1f} s, helpers {result.cpu_helpers:.1f} s: "
        f"{1000 * cpu / max(1, result.polled):.2f} ms per feed"
    )
    print(
        f"  main process: peak RSS {mib(result.peak_rss_kib)} MiB, at rest "
        f"{mib(result.rest_rss_kib)} MiB; extraction workers seen: {result.workers_seen}"
    )
    peak = ", ".join(f"{name} {mib(kib)}" for name, kib in result.peak_pss_parts.items())
    rest = ", ".join(f"{name} {mib(kib)}" for name, kib in result.rest_pss_parts.items())
    print(f"  peak PSS {mib(result.peak_pss_kib)} MiB ({peak})")
    print(f"  PSS at rest {mib(sum(result.rest_pss_parts.values()))} MiB ({rest})")
    print(f"  load average at the end {result.load}")


# --------------------------------------------------------------------------- the scheduler alone


class InstantPipeline:
    """What the daemon asks of a pipeline, with polls that return at once: the rest of a
    round is the schedule's own work."""

    def __init__(self, interval: timedelta, total: int) -> None:
        self.interval = interval
        self.stopping = threading.Event()
        self.polls = 0
        self.total = total
        self.done = threading.Event()
        self._lock = threading.Lock()
        self.fetcher = self

    def poll_feed(self, spec: Any) -> Any:
        from monitor.models import PollOutcome
        from monitor.pipeline import FeedReport

        with self._lock:
            self.polls += 1
            if self.polls >= self.total:
                self.done.set()
        return FeedReport(
            url=spec.url,
            name=spec.url,
            outcome=PollOutcome.NOT_MODIFIED,
            status=304,
            next_poll=datetime.now(UTC) + self.interval,
        )

    def set_watchlists(self, watchlists: Any) -> None:
        return

    def close(self) -> None:
        return


def scheduler_only(feeds: int, directory: Path) -> None:
    import logging

    from monitor.config import load_config
    from monitor.daemon import Daemon
    from monitor.reload import ConfigWatcher
    from monitor.store import Store

    logging.disable(logging.INFO)
    config_path = directory / "feeds.yaml"
    listed = "".join(f"  - url: http://127.0.0.2:9/feed/{feed}.xml\n" for feed in range(feeds))
    config_path.write_text(
        f"database: sched.db\npoll:\n  interval: 30m\n  concurrency: 64\nfeeds:\n{listed}"
        f"{WATCHLISTS_YAML}digest:\n  from: veille@example.org\n  to: [analyste@example.org]\n",
        encoding="utf-8",
    )
    config = load_config(config_path)
    with Store(config.database) as store:
        pipeline = InstantPipeline(config.poll.interval, feeds)
        gc.collect()
        rss_before = status_kib(os.getpid(), "VmRSS")
        tracemalloc.start()
        cpu_before = time.process_time()
        wall_before = time.perf_counter()
        daemon = Daemon(config, ConfigWatcher(config.path), store, pipeline)  # type: ignore[arg-type]
        daemon.start()
        created = time.perf_counter() - wall_before
        if not pipeline.done.wait(600):
            print("the scheduler never ran every feed")
        time.sleep(1.0)  # the last reschedules
        wall = time.perf_counter() - wall_before - 1.0
        cpu = time.process_time() - cpu_before
        traced, _ = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        rss_after = status_kib(os.getpid(), "VmRSS")
        daemon.stop()
    print(f"\nscheduling {feeds} feeds, polls that return at once (load {_load()}):")
    print(f"  start (feed jobs created)   {created:6.2f} s")
    print(
        f"  a round with every feed due {wall:6.2f} s wall, {cpu:.2f} s CPU: "
        f"{1e6 * cpu / feeds:.0f} µs CPU per feed"
    )
    print(
        f"  memory held: {traced / 2**20:.1f} MiB traced by tracemalloc, "
        f"RSS +{(rss_after - rss_before) / 1024:.1f} MiB"
    )


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


# --------------------------------------------------------------------------- bare httpx


def raw_httpx_round(world: World, threads: int, number: int) -> None:
    """A round's requests (after the first) from `threads` threads sharing one httpx
    client: what that many requests in flight give, with nothing else to do."""
    import queue

    import httpx

    etags = {
        feed: '"'
        + hashlib.sha1(feed_xml(world.url(feed).rsplit("/feed/", 1)[0], feed, 0)).hexdigest()[:16]
        + '"'
        for feed in range(world.feeds)
        if feed_kind(feed) == "304"
    }
    todo: queue.SimpleQueue[int] = queue.SimpleQueue()
    for feed in range(world.feeds):
        todo.put(feed)
    limits = httpx.Limits(max_connections=2 * threads, max_keepalive_connections=2 * threads)
    statuses: dict[int, int] = {}
    with httpx.Client(limits=limits, timeout=60) as client:

        def work() -> None:
            while True:
                try:
                    feed = todo.get_nowait()
                except queue.Empty:
                    return
                url = world.url(feed)
                etag = etags.get(feed)
                response = client.get(url, headers={"If-None-Match": etag} if etag else {})
                statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
                if feed_kind(feed) == "new":
                    client.get(url.replace("/feed/", "/page/").replace(".xml", "/1.html"))

        workers = [threading.Thread(target=work) for _ in range(threads)]
        cpu, started = time.process_time(), time.perf_counter()
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"\nbare httpx, round {number}: {threads} threads, {world.feeds} feeds in {wall:.1f} s, "
        f"{world.feeds / wall:.0f} feeds/s, {1000 * cpu / world.feeds:.2f} ms CPU per feed "
        f"(statuses {dict(sorted(statuses.items()))}); load average {_load()}"
    )


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--feeds", type=int, default=10_000)
    parser.add_argument("--hosts", type=int, default=10, help="loopback addresses")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per response")
    parser.add_argument("--concurrency", type=int, default=64, help="poll.concurrency")
    parser.add_argument("--per-host", type=int, default=16, help="poll.per_host")
    parser.add_argument("--rounds", type=int, default=2, help="round 1 is the first poll")
    parser.add_argument("--sample", type=float, default=0.5, help="seconds between samples")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per round at most")
    parser.add_argument("--scheduler-only", action="store_true")
    parser.add_argument("--no-scheduler", action="store_true", help="skip the scheduler part")
    parser.add_argument(
        "--raw-httpx", action="store_true", help="the same requests from bare httpx threads"
    )
    parser.add_argument("--workdir", type=Path, help="keep the database and logs here")
    args = parser.parse_args(argv)
    directory = args.workdir or Path(tempfile.mkdtemp(prefix="monitor-daemon-scale-"))
    directory.mkdir(parents=True, exist_ok=True)
    print(f"load average at the start {_load()}; work directory {directory}")
    if args.scheduler_only:
        scheduler_only(args.feeds, directory)
        return 0
    world = World(args.feeds, args.hosts, args.latency)
    if args.raw_httpx:
        try:
            for number in range(1, args.rounds + 1):
                raw_httpx_round(world, args.concurrency, number)
        finally:
            world.close()
        return 0
    try:
        config = write_config(
            directory, world, concurrency=args.concurrency, per_host=args.per_host
        )
        print(
            f"{args.feeds} feeds on {args.hosts} addresses, {1000 * args.latency:.0f} ms per "
            f"response; poll.concurrency {args.concurrency}, per_host {args.per_host}"
        )
        for number in range(1, args.rounds + 1):
            if number > 1:
                make_all_due(directory / "monitor.db")
            name = "1 (first poll)" if number == 1 else f"{number} (80/10/10 mix)"
            result = run_round(
                name, config, args.feeds, sample_every=args.sample, timeout=args.timeout
            )
            print_round(result)
    finally:
        world.close()
    if not args.no_scheduler:
        scheduler_only(args.feeds, directory)
    return 0


if __name__ == "__main__":
    sys.exit(main())
