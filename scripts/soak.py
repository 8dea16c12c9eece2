"""Kill the real daemon with SIGKILL many times, then prove that nothing was lost or doubled.

    python scripts/soak.py --kills 200 --seed 1 --report soak.json

A local world serves feeds whose entries keep appearing (a few more at every
fetch, up to a cap) and the article pages they link to; a local SMTP server
(aiosmtpd) receives the digests and can stall at chosen points of a session.
The daemon (`monitor.daemon.run_daemon`, the code behind `monitor run`, in its
own process) is started, killed with SIGKILL at a chosen moment and started
again, `--kills` times:

* at a random moment (start-up, polls, page fetches, extraction);
* just after a page request came in (its fetch or its extraction);
* inside a write transaction (`Store.record`, a digest claim): the harness
  spins on ``BEGIN IMMEDIATE`` and kills as soon as the write lock is taken;
* during a digest send: before DATA, after the message data arrived but before
  the server's 250, and after the 250 but before the daemon marks the digest
  sent (the server stalls its QUIT reply).
* every fourth run, once it has polled every feed (a poll is all or nothing:
  a daemon killed every few seconds would never record a feed with many new
  entries, so these runs let the world drain).

Digests are daily, so the daemon runs on a clock that the harness moves a few
simulated hours forward at every restart (as if the machine had been down
that long): a digest comes due every few restarts. At the end the world stops
growing, the daemon drains it and sends the last digest, and the harness
checks: every hit a reference matcher finds in the served text is stored
exactly once; every digest with hits was received, a second copy only with the
same Message-ID and only after a kill between the server's acceptance and the
daemon's record; ``PRAGMA integrity_check`` is ok; no process of the daemon
outlived it. The reference matches the text the world generated with
`monitor.matching.Matcher`, without extraction and without the database.

Exit status 0 when every check holds; the figures are printed (and written as
JSON with ``--report``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import email
import email.policy
import itertools
import json
import logging
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from html import escape
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from aiosmtpd.controller import Controller  # noqa: E402

from monitor.config import load_config  # noqa: E402
from monitor.matching import Matcher  # noqa: E402
from monitor.models import ArticleText, TextSource  # noqa: E402
from monitor.schedule import latest_digest_time  # noqa: E402
from tests.processes import alive, descendants  # noqa: E402
from tests.servers import HTTPTestServer, Received, Reply  # noqa: E402
from tests.smtp_server import _free_port  # noqa: E402

SMTP_TARGETS = ("smtp_before_data", "smtp_after_data", "smtp_before_recorded")

# Sentences an article is made of; some carry what the watchlists look for.
SENTENCES = (
    "Le Togo a signé un accord de défense avec un partenaire européen.",
    "Les autorités de Lomé annoncent une coopération militaire renforcée.",
    "Au Bénin, la commission électorale prépare le prochain scrutin présidentiel.",
    "Les observateurs jugent que l'élection au Bénin s'est déroulée dans le calme.",
    "Au Sahel, la situation sécuritaire reste préoccupante selon plusieurs ONG.",
    "Le Niger et le Mali renforcent leur coordination aux frontières.",
    "Le championnat de football reprend ce week-end après la trêve.",
    "Les prix des denrées alimentaires ont augmenté de trois pour cent en un an.",
    "La saison des pluies a commencé plus tôt que prévu dans la région.",
    "Une nouvelle université ouvrira ses portes à la rentrée prochaine.",
    "Les exportations de cacao ont atteint un niveau record cette année.",
    "Le gouvernement a présenté son budget pour l'exercice à venir devant les députés.",
)
FILLER = (
    "Cette information a été confirmée par plusieurs sources proches du dossier, qui ont "
    "requis l'anonymat. Les détails de l'accord devraient être rendus publics dans les "
    "prochaines semaines, selon un communiqué diffusé en fin de journée."
)
WATCHLISTS_YAML = """
watchlists:
  - name: Togo défense
    all: [Togo]
    any: ["accord de défense", "coopération militaire"]
  - name: Bénin élections
    query: 'Bénin AND (élection OR scrutin)'
  - name: Sahel
    any: [Sahel, Niger, Mali]
    none: [football]
"""


# --------------------------------------------------------------------------- the world


@dataclass(frozen=True)
class Article:
    path: str
    title: str
    paragraphs: tuple[str, ...]

    def html(self) -> bytes:
        body = "".join(f"<p>{escape(paragraph)}</p>" for paragraph in self.paragraphs)
        return (
            '<!DOCTYPE html><html lang="fr"><head><meta charset="utf-8">'
            f"<title>{escape(self.title)}</title></head><body>"
            "<nav><a href='/'>Accueil</a> | <a href='/monde'>Monde</a></nav>"
            f"<article><h1>{escape(self.title)}</h1>{body}</article>"
            "<footer>© Presse Test</footer></body></html>"
        ).encode()


class FeedWorld:
    """Feeds that gain 0-3 entries at every fetch (up to `cap` each) and their pages."""

    def __init__(self, rng: random.Random, *, feeds: int, cap: int, page_delay: float) -> None:
        self.rng = rng
        self.cap = cap
        self.page_delay = page_delay
        self.counts = [0] * feeds
        self.growing = True
        self.page_requested = threading.Event()
        self._lock = threading.Lock()
        self.server = HTTPTestServer()
        self.articles: list[list[Article]] = []
        for feed in range(feeds):
            articles = []
            for number in range(cap):
                chosen = rng.sample(SENTENCES, rng.randint(1, 3))
                paragraphs = tuple(f"{sentence} {FILLER}" for sentence in chosen)
                title = f"Dépêche {feed}-{number} : " + chosen[0].split(",")[0][:40]
                articles.append(Article(f"/news/{feed}/{number}.html", title, paragraphs))
            self.articles.append(articles)
        for feed in range(feeds):
            self.server.routes[f"/feeds/{feed}.xml"] = self._feed_route(feed)
            for article in self.articles[feed]:
                self.server.routes[article.path] = self._page_route(article)

    def feed_name(self, feed: int) -> str:
        return f"Feed {feed}"

    def feed_url(self, feed: int) -> str:
        return self.server.url(f"/feeds/{feed}.xml")

    def finish(self) -> None:
        """Stop growing, with every entry published."""
        with self._lock:
            self.growing = False
            self.counts = [self.cap] * len(self.counts)

    def _feed_route(self, feed: int) -> Callable[[Received], Reply]:
        def route(request: Received) -> Reply:
            with self._lock:
                if self.growing:
                    self.counts[feed] = min(self.cap, self.counts[feed] + self.rng.randint(0, 3))
                shown = self.articles[feed][: self.counts[feed]]
            items = "".join(
                f"<item><title>{escape(article.title)}</title>"
                f"<link>{escape(self.server.url(article.path))}</link>"
                f"<guid>{escape(self.server.url(article.path))}</guid>"
                f"<description>{escape(article.paragraphs[0][:80])}</description></item>"
                for article in reversed(shown)
            )
            body = (
                '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
                f"<title>{self.feed_name(feed)}</title><link>http://example.org/</link>"
                f"<language>fr</language>{items}</channel></rss>"
            ).encode()
            return Reply(body=body, headers={"Content-Type": "application/rss+xml"})

        return route

    def _page_route(self, article: Article) -> Callable[[Received], Reply]:
        def route(request: Received) -> Reply:
            self.page_requested.set()
            return Reply(
                body=article.html(),
                headers={"Content-Type": "text/html; charset=utf-8"},
                delay=self.page_delay,
            )

        return route

    def reference_hits(self, config_path: Path) -> set[tuple[str, str]]:
        """(watchlist, url) of every hit in the served text, matched here without the daemon."""
        matcher = Matcher(load_config(config_path).watchlists)
        expected: set[tuple[str, str]] = set()
        for feed, articles in enumerate(self.articles):
            for article in articles[: self.counts[feed]]:
                url = self.server.url(article.path)
                text = ArticleText(
                    url=url,
                    title=article.title,
                    text="\n".join(article.paragraphs),
                    source=TextSource.PAGE,
                    language="fr",
                )
                for hit in matcher.match(text, feed_name=self.feed_name(feed)):
                    expected.add((hit.watchlist, url))
        return expected


# --------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class Delivery:
    message_id: str
    received_at: float  # time.monotonic()
    body: str


class StallingSmtp:
    """An aiosmtpd server that records every message and can hold one session at a stage:

    ``smtp_before_data`` (at RCPT), ``smtp_after_data`` (the data arrived and is
    recorded, the 250 not yet sent) or ``smtp_before_recorded`` (the 250 was sent,
    the QUIT reply is held, so the daemon has not yet marked the digest sent).
    """

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []
        self.armed: str | None = None
        self.reached = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        self.port = _free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    def start(self) -> None:
        self._controller.start()

    def stop(self) -> None:
        self.release.set()
        self._controller.stop()

    def arm(self, stage: str | None) -> None:
        self.reached.clear()
        self.release.clear()
        self.armed = stage

    async def _stall(self, stage: str) -> None:
        if self.armed != stage:
            return
        self.armed = None
        self.reached.set()
        while not self.release.is_set():
            await asyncio.sleep(0.02)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        await self._stall("smtp_before_data")
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content)
        parsed = email.message_from_bytes(raw, policy=email.policy.default)
        body = "\n".join(
            part.get_content()
            for part in parsed.walk()
            if part.get_content_type() in ("text/plain", "text/html")
        )
        with self._lock:
            self.deliveries.append(
                Delivery(str(parsed["Message-ID"]).strip(), time.monotonic(), body)
            )
        await self._stall("smtp_after_data")
        return "250 Message accepted"

    async def handle_QUIT(self, server: Any, session: Any, envelope: Any) -> str:
        await self._stall("smtp_before_recorded")
        return "221 Bye"


# --------------------------------------------------------------------------- processes


def write_lock_held(database: Path) -> bool:
    """True while another connection holds the database's write lock (a write transaction)."""
    if not database.exists():
        return False
    conn = sqlite3.connect(database, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError as error:
        return "locked" in str(error) or "busy" in str(error)
    finally:
        conn.close()


def daemon_child(config: Path, offset_seconds: float) -> int:
    """The daemon on a clock `offset_seconds` ahead of the system's (run in the child)."""
    from monitor.daemon import run_daemon
    from monitor.errors import MonitorError
    from monitor.logs import setup_logging
    from monitor.models import utc_now

    setup_logging(verbose=False)
    # `wait_until_polled` reads one line per poll, also for polls that bring nothing new,
    # which the daemon logs at DEBUG.
    logging.getLogger("monitor.daemon").setLevel(logging.DEBUG)
    offset = timedelta(seconds=offset_seconds)

    def clock() -> datetime:
        return utc_now() + offset

    try:
        return run_daemon(config, clock=clock)
    except MonitorError as error:
        print(error, file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- the soak


@dataclass
class SoakReport:
    kills: int = 0
    kills_by_target: dict[str, int] = field(default_factory=dict)
    targets_missed: int = 0  # an aimed kill whose moment never came: killed at random instead
    served_articles: int = 0
    expected_hits: int = 0
    stored_hits: int = 0
    missing_hits: int = 0
    unexpected_hits: int = 0
    digests_sent: int = 0
    digests_empty: int = 0
    messages_received: int = 0
    duplicate_messages: int = 0  # extra copies of a Message-ID already received
    resends: int = 0  # claims of a digest left "sending" by a kill (digests.attempts - 1)
    integrity: str = ""
    orphans: int = 0
    elapsed_seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    workdir: str = ""

    def lines(self) -> list[str]:
        targets = ", ".join(
            f"{name} {count}" for name, count in sorted(self.kills_by_target.items())
        )
        return [
            f"kills: {self.kills} ({targets}; {self.targets_missed} aimed kills fell back to random)",
            f"articles served: {self.served_articles}; hits expected {self.expected_hits}, "
            f"stored {self.stored_hits}, missing {self.missing_hits}, "
            f"unexpected {self.unexpected_hits}",
            f"digests: {self.digests_sent} sent, {self.digests_empty} empty; "
            f"messages received {self.messages_received}, duplicates by Message-ID "
            f"{self.duplicate_messages}, re-sends {self.resends}",
            f"integrity_check: {self.integrity}; orphan processes: {self.orphans}",
            f"time: {self.elapsed_seconds:.0f} s; workdir {self.workdir}",
            "OK" if not self.problems else "PROBLEMS:\n  " + "\n  ".join(self.problems),
        ]


class Soak:
    def __init__(
        self,
        workdir: Path,
        *,
        kills: int,
        seed: int,
        feeds: int,
        cap: int,
        max_run_seconds: float,
        log: Callable[[str], None] = print,
    ) -> None:
        self.workdir = workdir
        self.kills = kills
        self.rng = random.Random(seed)
        self.max_run_seconds = max_run_seconds
        self.log = log
        self.world = FeedWorld(random.Random(seed + 1), feeds=feeds, cap=cap, page_delay=0.05)
        self.smtp = StallingSmtp()
        self.config = workdir / "feeds.yaml"
        self.database = workdir / "monitor.db"
        self.daemon_log = workdir / "daemon.log"
        self.offset = timedelta(0)
        self.report = SoakReport(workdir=str(workdir))
        self.kill_times: list[float] = []  # time.monotonic() of every SIGKILL

    # -------------------------------------------------------------- setup

    def write_config(self) -> None:
        feeds = "".join(
            f"  - url: {self.world.feed_url(feed)}\n    name: {self.world.feed_name(feed)}\n"
            for feed in range(len(self.world.counts))
        )
        self.config.write_text(
            f"""
database: monitor.db
timezone: Africa/Lome
poll:
  interval: 1m
  timeout: 10s
  concurrency: 4
feeds:
{feeds}{WATCHLISTS_YAML}
digest:
  at: "06:00"
  from: veille@example.org
  to: [analyste@example.org]
  smtp:
    host: 127.0.0.1
    port: {self.smtp.port}
    security: none
    timeout: 20s
""",
            encoding="utf-8",
        )

    # -------------------------------------------------------------- one daemon run

    def start_daemon(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONUTF8": "1"}
        env["PYTHONPATH"] = os.pathsep.join(
            part for part in (str(REPO), env.get("PYTHONPATH", "")) if part
        )
        with open(self.daemon_log, "a", encoding="utf-8") as log_file:
            log_file.write(f"=== start, clock offset {self.offset}\n")
            log_file.flush()
            return subprocess.Popen(
                [
                    sys.executable,
                    str(Path(__file__).resolve()),
                    "--daemon-child",
                    str(self.config),
                    "--clock-offset",
                    str(self.offset.total_seconds()),
                ],
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def sim_now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def digest_would_send(self) -> bool:
        """Whether a start now would deliver something (a stuck or a due digest with hits)."""
        if not self.database.exists():
            return False
        config = load_config(self.config)
        digest = config.digest
        due_at = latest_digest_time(self.sim_now(), config.timezone, digest.at, digest.every)
        try:
            with contextlib.closing(sqlite3.connect(self.database)) as db:
                stuck = db.execute("SELECT COUNT(*) FROM digests WHERE state = 'sending'")
                stuck_count = stuck.fetchone()[0]
                # `schedule.due_digest`: due unless the digest ran to the end since due_at.
                last_done = db.execute(
                    "SELECT MAX(COALESCE(sent_at, created_at)) FROM digests "
                    "WHERE name = ? AND state IN ('sent', 'empty')",
                    [digest.name],
                ).fetchone()[0]
                done = last_done is not None and (
                    datetime.fromisoformat(last_done).timestamp() >= due_at.timestamp()
                )
                pending = db.execute(
                    "SELECT COUNT(*) FROM hits WHERE digest_key IS NULL AND quiet = 0"
                ).fetchone()[0]
        except sqlite3.OperationalError:  # killed before the schema was created
            return False
        return bool(stuck_count or (not done and pending))

    def choose_target(self) -> str:
        if self.digest_would_send() and self.rng.random() < 0.5:
            return self.rng.choice(SMTP_TARGETS)
        return self.rng.choices(("random", "page", "write"), weights=(3, 1, 1))[0]

    def wait_until_polled(self, daemon: subprocess.Popen[bytes], log_offset: int) -> bool:
        """Let this run poll every feed (a poll is all or nothing: killed every few seconds,
        a feed with many new entries would never be recorded), then kill at random soon after."""
        names = [self.world.feed_name(feed) for feed in range(len(self.world.counts))]
        deadline = time.monotonic() + 120
        while daemon.poll() is None and time.monotonic() < deadline:
            with open(self.daemon_log, "rb") as log_file:
                log_file.seek(log_offset)
                text = log_file.read().decode("utf-8", "replace")
            if all(f"{name}: " in text for name in names):
                time.sleep(self.rng.uniform(0, 1.5))
                return True
            time.sleep(0.1)
        return False

    def running(self, log_offset: int) -> bool:
        """Whether the daemon started at `log_offset` of the log says it is running."""
        with open(self.daemon_log, "rb") as log_file:
            log_file.seek(log_offset)
            return b"monitor running" in log_file.read()

    def wait_for_target(
        self, target: str, daemon: subprocess.Popen[bytes], log_offset: int
    ) -> bool:
        """Wait for the moment `target` names; False if it never came.

        A random kill lands during start-up one time in four, otherwise up to
        `max_run_seconds` after the daemon said it runs; an aimed kill waits for its
        moment until `max_run_seconds` after that.
        """
        if target == "random" and self.rng.random() < 0.25:
            time.sleep(self.rng.uniform(0, 4))
            return True
        if target == "idle":
            return self.wait_until_polled(daemon, log_offset)
        start_deadline = time.monotonic() + 120
        deadline: float | None = None
        delay = self.rng.uniform(0.0, self.max_run_seconds)
        while daemon.poll() is None:
            now = time.monotonic()
            if deadline is None:
                if self.running(log_offset):
                    deadline = now + (delay if target == "random" else self.max_run_seconds)
                elif now > start_deadline:
                    self.report.problems.append("a daemon did not start within 120 s")
                    return False
            elif now >= deadline:
                return target == "random"
            if target == "page":
                if self.world.page_requested.wait(0.02):
                    time.sleep(self.rng.uniform(0, 0.1))
                    return True
            elif target == "write":
                if write_lock_held(self.database):
                    return True
                time.sleep(0.001)
            elif target in SMTP_TARGETS:
                if self.smtp.reached.wait(0.02):
                    return True
            else:
                time.sleep(0.02)
        return False

    def kill(self, daemon: subprocess.Popen[bytes]) -> None:
        helpers = descendants(daemon.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(daemon.pid, signal.SIGKILL)
        self.kill_times.append(time.monotonic())
        daemon.wait(30)
        self.smtp.release.set()
        self.reap(helpers)

    def reap(self, helpers: set[int]) -> None:
        """The daemon's helpers must die by themselves; any left after 15 s is an orphan."""
        deadline = time.monotonic() + 15
        while (left := {pid for pid in helpers if alive(pid)}) and time.monotonic() < deadline:
            time.sleep(0.05)
        if left:
            self.report.orphans += len(left)
            self.report.problems.append(f"processes outlived the daemon: {sorted(left)}")
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    def stop(self, daemon: subprocess.Popen[bytes]) -> None:
        helpers = descendants(daemon.pid)
        daemon.send_signal(signal.SIGTERM)
        try:
            code = daemon.wait(30)
        except subprocess.TimeoutExpired:
            self.report.problems.append("the daemon did not stop within 30 s of SIGTERM")
            daemon.kill()
            code = daemon.wait(10)
        if code != 0:
            self.report.problems.append(f"the daemon exited with status {code} on SIGTERM")
        self.reap(helpers)

    def kill_cycle(self, number: int) -> None:
        self.offset += timedelta(hours=self.rng.uniform(2, 10))
        # Every fourth run polls all feeds before its kill, so the world is drained in
        # the end; the others are killed wherever the moment falls.
        target = "idle" if number % 4 == 0 else self.choose_target()
        self.world.page_requested.clear()
        self.smtp.arm(target if target in SMTP_TARGETS else None)
        log_offset = self.daemon_log.stat().st_size if self.daemon_log.exists() else 0
        daemon = self.start_daemon()
        try:
            reached = self.wait_for_target(target, daemon, log_offset)
            if daemon.poll() is not None:
                self.report.problems.append(
                    f"run {number}: the daemon exited by itself (status {daemon.returncode})"
                )
                return
            if not reached:
                self.report.targets_missed += 1
                target = "random"
            self.kill(daemon)
        finally:
            self.smtp.arm(None)
            if daemon.poll() is None:
                daemon.kill()
                daemon.wait(10)
        self.report.kills += 1
        self.report.kills_by_target[target] = self.report.kills_by_target.get(target, 0) + 1

    def wait_until(self, condition: Callable[[], bool], seconds: float, what: str) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if condition():
                return True
            time.sleep(0.25)
        self.report.problems.append(f"timed out waiting for {what}")
        return False

    def stored_entries(self) -> int:
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as db:
            return int(db.execute("SELECT COUNT(*) FROM entries").fetchone()[0])

    def undelivered(self) -> int:
        with contextlib.closing(sqlite3.connect(self.database, timeout=30)) as db:
            pending = db.execute(
                "SELECT COUNT(*) FROM hits WHERE quiet = 0 AND (digest_key IS NULL OR digest_key "
                "IN (SELECT key FROM digests WHERE state != 'sent'))"
            ).fetchone()[0]
            return int(pending)

    def drain(self) -> None:
        """No more kills: the daemon stores what is left, then sends the last digest."""
        self.world.finish()
        self.smtp.arm(None)
        self.offset += timedelta(hours=1)
        log_offset = self.daemon_log.stat().st_size
        daemon = self.start_daemon()
        served = sum(self.world.counts)
        self.wait_until(lambda: self.running(log_offset), 120, "the daemon to start")
        self.wait_until(lambda: self.stored_entries() >= served, 180, "every entry to be stored")
        self.stop(daemon)
        self.offset += timedelta(days=1)
        log_offset = self.daemon_log.stat().st_size
        daemon = self.start_daemon()
        self.wait_until(lambda: self.running(log_offset), 120, "the daemon to start")
        self.wait_until(lambda: self.undelivered() == 0, 180, "every hit to be delivered")
        self.stop(daemon)

    # -------------------------------------------------------------- checks

    def verify(self) -> None:
        report = self.report
        expected = self.world.reference_hits(self.config)
        report.served_articles = sum(self.world.counts)
        with contextlib.closing(sqlite3.connect(self.database)) as db:
            rows = db.execute(
                "SELECT hits.watchlist, articles.url, hits.digest_key FROM hits "
                "JOIN articles ON articles.id = hits.article_id"
            ).fetchall()
            digests = db.execute("SELECT key, message_id, state FROM digests").fetchall()
            report.resends = db.execute(
                "SELECT COALESCE(SUM(attempts - 1), 0) FROM digests WHERE state = 'sent'"
            ).fetchone()[0]
            report.integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        stored = Counter((watchlist, url) for watchlist, url, _ in rows)
        report.expected_hits = len(expected)
        report.stored_hits = sum(stored.values())
        missing = expected - set(stored)
        unexpected = set(stored) - expected
        report.missing_hits, report.unexpected_hits = len(missing), len(unexpected)
        if missing:
            report.problems.append(f"hits lost: {sorted(missing)[:5]}")
        if unexpected:
            report.problems.append(f"hits the reference does not expect: {sorted(unexpected)[:5]}")
        doubled = [hit for hit, count in stored.items() if count > 1]
        if doubled:
            report.problems.append(f"hits stored twice: {doubled[:5]}")
        if report.integrity != "ok":
            report.problems.append(f"integrity_check: {report.integrity}")

        states = {key: (message_id, state) for key, message_id, state in digests}
        report.digests_sent = sum(1 for _, state in states.values() if state == "sent")
        report.digests_empty = sum(1 for _, state in states.values() if state == "empty")
        left = [key for key, (_, state) in states.items() if state not in ("sent", "empty")]
        if left:
            report.problems.append(f"digests not finished: {left}")
        deliveries = list(self.smtp.deliveries)
        report.messages_received = len(deliveries)
        copies: dict[str, list[Delivery]] = {}
        for delivery in deliveries:
            copies.setdefault(delivery.message_id, []).append(delivery)
        report.duplicate_messages = sum(len(found) - 1 for found in copies.values())
        sent_ids = {
            message_id: key for key, (message_id, state) in states.items() if state == "sent"
        }
        for message_id, key in sent_ids.items():
            if message_id not in copies:
                report.problems.append(f"digest {key} is marked sent but never arrived")
        for message_id, found in copies.items():
            if message_id not in sent_ids:
                report.problems.append(f"a message {message_id} arrived that no digest sent")
            # Each extra copy must follow a kill that came after the previous copy arrived
            # (the server had it; the daemon died before recording it).
            for earlier, later in itertools.pairwise(found):
                if not any(earlier.received_at <= t <= later.received_at for t in self.kill_times):
                    report.problems.append(f"{message_id} was sent twice without a kill in between")
        # Every hit went out in the digest that claimed it, and in no other message.
        by_key = {key: message_id for key, (message_id, _) in states.items()}
        for watchlist, url, digest_key in rows:
            message_id = by_key.get(digest_key or "")
            carrying = {d.message_id for d in deliveries if url in d.body}
            if message_id is None or message_id not in carrying:
                report.problems.append(f"hit {watchlist} / {url} was never mailed")
            elif carrying - {message_id}:
                report.problems.append(f"{url} was mailed in two different digests")

    # -------------------------------------------------------------- all of it

    def run(self) -> SoakReport:
        started = time.monotonic()
        self.world.server.start()
        self.smtp.start()
        try:
            self.write_config()
            for number in range(1, self.kills + 1):
                self.kill_cycle(number)
                if number % 10 == 0:
                    self.log(
                        f"{number} kills, {sum(self.world.counts)} entries served, "
                        f"{len(self.smtp.deliveries)} messages, {time.monotonic() - started:.0f} s"
                    )
            self.drain()
            self.verify()
        finally:
            self.smtp.stop()
            self.world.server.stop()
        self.report.elapsed_seconds = time.monotonic() - started
        return self.report


def soak(
    *,
    kills: int,
    seed: int,
    workdir: Path | None = None,
    feeds: int = 4,
    cap: int = 60,
    max_run_seconds: float = 3.0,
    log: Callable[[str], None] = print,
) -> SoakReport:
    directory = workdir or Path(tempfile.mkdtemp(prefix="monitor-soak-"))
    directory.mkdir(parents=True, exist_ok=True)
    return Soak(
        directory,
        kills=kills,
        seed=seed,
        feeds=feeds,
        cap=cap,
        max_run_seconds=max_run_seconds,
        log=log,
    ).run()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=200, help="SIGKILLs before the drain")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--report", type=Path, help="write the figures as JSON here")
    parser.add_argument("--feeds", type=int, default=4)
    parser.add_argument("--cap", type=int, default=60, help="entries per feed in the end")
    parser.add_argument("--workdir", type=Path, help="keep the database and logs here")
    parser.add_argument(
        "--max-run-seconds", type=float, default=3.0, help="longest a daemon runs before its kill"
    )
    parser.add_argument("--daemon-child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--clock-offset", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.daemon_child is not None:
        return daemon_child(args.daemon_child, args.clock_offset)
    report = soak(
        kills=args.kills,
        seed=args.seed,
        workdir=args.workdir,
        feeds=args.feeds,
        cap=args.cap,
        max_run_seconds=args.max_run_seconds,
    )
    print("\n".join(report.lines()))
    if args.report is not None:
        args.report.write_text(json.dumps(asdict(report), indent=2) + "\n", encoding="utf-8")
    return 0 if not report.problems else 1


if __name__ == "__main__":
    sys.exit(main())
