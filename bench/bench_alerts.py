"""Benchmark instant alerts: what they add to a poll's transaction, and how fast they go out.

    .venv/bin/python bench/bench_alerts.py            # 2,000 polls; 500 alerts
    .venv/bin/python bench/bench_alerts.py --quick    # 200 polls; 50 alerts

Everything on this machine (127.0.0.1), real SQLite files in a temporary folder, real
Apprise. Printed:

1. `Store.record` of a poll with one new hit, without alerts and with 3 destinations
   (3 delivery rows written in the same transaction): ms per poll.
2. `service.send_alerts` of N due alerts to one local JSON webhook: alerts/s.
3. The same with a second destination that refuses connections (nothing listens):
   the round's time, since a failing destination is tried once per round.
4. The same with a destination that accepts and never answers, with a 2 s send
   timeout: the round's time (one timeout, not N).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.stored

from monitor.config import Config, load_config
from monitor.destinations import send_alert
from monitor.service import alert_routes, send_alerts
from monitor.store import Store
from tests.stored import record_accord_hit

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
FEED = "https://news.example.org/feed.xml"


class _Hook(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def webhook() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def silent_listener() -> Iterator[int]:
    """Accepts connections and never answers."""
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        thread.join()
        for connection in held:
            connection.close()
        listener.close()


def config(folder: Path, *urls: str) -> Config:
    listed = ", ".join(f'"{url}"' for url in urls)
    path = folder / "feeds.yaml"
    path.write_text(
        f"""
feeds:
  - url: {FEED}
watchlists:
  - name: accord
    query: accord
digest:
  from: monitor@example.org
  to: [analyste@example.org]
alerts:
  - name: bench
    watchlists: [accord]
    urls: [{listed}]
""",
        encoding="utf-8",
    )
    return load_config(path, environ={})


def record_polls(store: Store, count: int, first: int = 0) -> float:
    """Seconds to record `count` polls of one new article with one hit each."""
    started = time.perf_counter()
    for number in range(first, first + count):
        record_accord_hit(store, number, NOW, feed_url=FEED)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    arguments = parser.parse_args()
    polls, alerts = (200, 50) if arguments.quick else (2000, 500)
    with tempfile.TemporaryDirectory() as folder_name, webhook() as port:
        folder = Path(folder_name)
        hook = f"json://127.0.0.1:{port}/hook"
        three = config(folder, hook, "ntfy://ntfy.example.org/a", "json://hooks.example.org/b")

        with Store(folder / "plain.db") as store:
            record_polls(store, 50)  # warm up
            plain = record_polls(store, polls, first=50)
        with Store(folder / "alerts.db") as store:
            store.set_alert_routes(alert_routes(three))
            record_polls(store, 50)
            routed = record_polls(store, polls, first=50)
        print(f"record(), 1 hit per poll, {polls} polls:")
        print(f"  without alerts          {plain / polls * 1000:7.3f} ms/poll")
        print(f"  with 3 destinations     {routed / polls * 1000:7.3f} ms/poll (3 rows more)")

        one = config(folder, hook)
        with Store(folder / "send.db") as store:
            store.set_alert_routes(alert_routes(one))
            record_polls(store, alerts)
            started = time.perf_counter()
            run = send_alerts(store, one, NOW)
            elapsed = time.perf_counter() - started
        print(f"send_alerts, {alerts} alerts to one local JSON webhook:")
        print(f"  {run.sent} sent in {elapsed:.2f} s = {run.sent / elapsed:.0f} alerts/s")

        refused = config(folder, hook, "json://127.0.0.1:9/refused")
        with Store(folder / "refused.db") as store:
            store.set_alert_routes(alert_routes(refused))
            record_polls(store, alerts)
            started = time.perf_counter()
            run = send_alerts(store, refused, NOW)
            elapsed = time.perf_counter() - started
        print(f"the same beside a destination that refuses connections ({alerts} due there too):")
        print(f"  {run.sent} sent, {run.retrying} to retry, round {elapsed:.2f} s")

        with silent_listener() as silent_port:
            silent = config(folder, hook, f"json://127.0.0.1:{silent_port}/silent")
            with Store(folder / "silent.db") as store:
                store.set_alert_routes(alert_routes(silent))
                record_polls(store, alerts)
                started = time.perf_counter()
                run = send_alerts(store, silent, NOW, send=partial(send_alert, timeout=2.0))
                elapsed = time.perf_counter() - started
                again = send_alerts(store, silent, NOW + timedelta(seconds=30))
        print(
            f"the same beside a destination that never answers (2 s timeout, {alerts} due there):"
        )
        print(f"  {run.sent} sent, {run.retrying} to retry, round {elapsed:.2f} s")
        print(f"  next round 30 s later: {again.sent} sent, {again.retrying} to retry")


if __name__ == "__main__":
    main()
