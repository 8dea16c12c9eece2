"""`monitor run`: APScheduler wiring, live reload, single-instance lock, signals.

Feeds are polled by one timer, not by a job each:

* ``feed-timer``: a thread that holds every feed's next poll time
  (`schedule.DueFeeds`, read from ``feeds.next_poll`` when the daemon starts)
  and hands the feeds that are due to a pool of ``poll.concurrency`` threads.
  After each poll the feed is put back at the `next_poll` the poll's report
  carries (the same value the store recorded, so back-off and Retry-After
  survive restarts and a feed is never disabled). A feed being polled is out of
  the schedule, so it is never polled twice at once and runs that would have
  piled up are one. The timer waits on the daemon's clock, until the earliest
  due time and at most a second, so a clock that jumps is followed within a
  second.

Why not a job per feed (as before): with 10,000 feeds APScheduler took about 6 s
to create the jobs at start and about 0.7 ms of CPU per poll to run and
reschedule them (bench/bench_daemon_scale.py --scheduler-only), all of it on the
GIL the polls need; the timer's heap costs microseconds per poll.

APScheduler jobs (all in UTC; local time appears only in `schedule.due_digest`):

* ``digest``: every minute, for each configured digest, send its latest
  scheduled issue if it has not run since (a digest missed while the daemon
  was down is sent on start; a digest new to the configuration waits for its
  first scheduled time).
* ``reload``: every 2 seconds, re-read feeds.yaml if it changed; an invalid
  edit is logged and the last good configuration stays in force. SIGHUP
  (``systemctl reload``) runs it at once. A feed new to the configuration is
  due at once (or when its stored back-off ends); a feed whose interval changed
  is due one new interval later.
* ``checkpoint``: every 30 minutes, empty the SQLite write-ahead log, with a
  warning when a reader elsewhere prevents it.

Instant alerts are sent by a thread of their own rather than a job, woken at
once by a poll that recorded hits (a job already running would make APScheduler
skip the wake-up with a warning) and every 30 seconds for retries, so a slow
destination never holds up polls, digests or reloads.
After a poll, at most once an hour, `retention.article_text` is applied (the text
of old articles that no unsent hit needs is dropped; see `service.apply_retention`).

No job is ever dropped for running late (``misfire_grace_time=None``), runs
that piled up are merged (``coalesce``), and one job never runs twice at once
(``max_instances=1``).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import IO

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerThreadPool
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from monitor.config import Config, lint_config
from monitor.errors import (
    AlreadyRunning,
    ConfigError,
    DamagedDatabase,
    MonitorError,
    StorageError,
)
from monitor.models import Clock, FeedSpec, PollOutcome, utc_now
from monitor.pipeline import FeedReport, Pipeline, PollSummary
from monitor.reload import ConfigWatcher
from monitor.schedule import DueFeeds, next_digest_time
from monitor.service import (
    alert_routes,
    apply_retention,
    open_pipeline,
    rescore_hits,
    run_due_digest,
    send_alerts,
)
from monitor.store import Store

log = logging.getLogger(__name__)

DIGEST_CHECK_SECONDS = 60
RELOAD_CHECK_SECONDS = 2
CHECKPOINT_SECONDS = 30 * 60
ALERT_CHECK_SECONDS = 30
DIGEST_RETRY_AFTER = timedelta(minutes=10)
RETENTION_EVERY = timedelta(hours=1)
SHUTDOWN_GRACE_SECONDS = 10.0
TIMER_MAX_WAIT_SECONDS = 1.0  # the feed timer looks at the clock at least this often
POLL_SUMMARY_EVERY = timedelta(minutes=10)  # a log line counting the polls since the last


@contextmanager
def single_instance(database: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the database for the daemon's lifetime.

    `flock` on a separate file (not the database: closing any descriptor of a
    SQLite file drops its POSIX locks) and no PID file: the kernel releases
    the lock when the process dies, even by SIGKILL.
    """
    # The real file's name: a symlink to the database must find the same lock.
    database = database.resolve()
    lock_path = database.with_name(database.name + ".lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        handle: IO[str] = open(lock_path, "a+")  # noqa: SIM115  (held for the daemon's lifetime)
    except OSError as error:
        raise StorageError(
            f"cannot open the lock file {lock_path} ({error.strerror}): the folder of the "
            "database must be writable by the user running monitor"
        ) from error
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyRunning(
                f"another monitor daemon already uses {database} (lock {lock_path} is held); "
                "stop it first, or point this one at another database"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()


class Daemon:
    def __init__(
        self,
        config: Config,
        watcher: ConfigWatcher,
        store: Store,
        pipeline: Pipeline,
        *,
        clock: Clock = utc_now,
    ) -> None:
        self.config = config
        self.watcher = watcher
        self.store = store
        self.pipeline = pipeline
        self.clock = clock
        self.stopping = threading.Event()
        self._digest_failed_at: dict[str, datetime | None] = {}
        self._alerts_wanted = threading.Event()
        self._alert_thread = threading.Thread(target=self._alert_loop, name="alerts", daemon=True)
        self._retention_at: datetime | None = None
        self._retention_lock = threading.Lock()
        self.scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={
                "default": SchedulerThreadPool(max_workers=1),
                "control": SchedulerThreadPool(max_workers=2),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
        )
        # The feeds' schedule: each configured feed is either waiting in `_due` or being
        # polled (in `_polling`), never both; `_specs` is the configuration it follows.
        self._specs: dict[str, FeedSpec] = {spec.url: spec for spec in config.feeds}
        self._due = DueFeeds()
        self._polling: set[str] = set()
        self._schedule_lock = threading.Lock()
        self._timer_wake = threading.Event()
        self._summary = PollSummary(since=clock())
        self._summary_lock = threading.Lock()
        # When the timer looks at the schedule next unless woken: a feed put back due later
        # needs no wake-up (at 10,000 feeds, one per poll was a twentieth of the CPU).
        self._timer_next_look = datetime.min.replace(tzinfo=UTC)
        self._timer = threading.Thread(target=self._timer_loop, name="feed-timer", daemon=True)
        self._polls = ThreadPoolExecutor(
            max_workers=max(1, config.poll.concurrency), thread_name_prefix="poll"
        )

    # ------------------------------------------------------------------ jobs

    def _sync_feeds(self) -> None:
        """Bring the schedule in line with `self.config.feeds` (at start and after a reload)."""
        wanted = {spec.url: spec for spec in self.config.feeds}
        with self._schedule_lock:
            previous, self._specs = self._specs, wanted
            for url in previous.keys() - wanted.keys():
                self._due.remove(url)  # one being polled is dropped when its poll ends
                log.info("feed removed from the configuration: %s", url)
            now = self.clock()
            added = [url for url in wanted if url not in self._due and url not in self._polling]
            if added:
                # One read of the feeds' states: `feed_state` is a query each.
                next_polls = {state.url: state.next_poll for state in self.store.feed_states()}
                for url in added:
                    # A feed never polled has no row yet: its first poll registers it.
                    next_poll = next_polls.get(url)
                    self._due.set(url, next_poll if next_poll and next_poll > now else now)
            for url, spec in wanted.items():
                old = previous.get(url)
                if old is not None and old.interval != spec.interval and url in self._due:
                    self._due.set(url, now + spec.interval)
        self._timer_wake.set()

    def next_poll(self, url: str) -> datetime | None:
        """When the daemon polls `url` next, on its clock; None while it is being polled."""
        with self._schedule_lock:
            return self._due.when(url)

    def _timer_loop(self) -> None:
        while not self.stopping.is_set():
            with self._schedule_lock:
                now = self.clock()
                due = self._due.pop_due(now)
                self._polling.update(due)
                next_due = self._due.next_due()
                wait = TIMER_MAX_WAIT_SECONDS
                if next_due is not None:
                    wait = min(wait, max(0.0, (next_due - now).total_seconds()))
                self._timer_next_look = now + timedelta(seconds=wait)
            for url in due:
                try:
                    self._polls.submit(self._poll_job, url)
                except RuntimeError:  # the pool was shut down: the daemon is stopping
                    return
            self._timer_wake.wait(wait)
            self._timer_wake.clear()

    def _poll_job(self, url: str) -> None:
        next_poll: datetime | None = None
        try:
            if self.stopping.is_set():
                return
            spec = self._specs.get(url)
            if spec is None:
                return
            report = self.pipeline.poll_feed(spec)
            level = logging.WARNING if report.outcome is PollOutcome.FAILED else logging.INFO
            if report.quiet:
                level = logging.DEBUG
            if log.isEnabledFor(level):
                log.log(level, report.log_line(), extra=report.log_fields())
            self._count_poll(report)
            next_poll = report.next_poll
            if report.new_hits and self.config.alerts:
                self._alerts_wanted.set()  # the hits are committed: announce them now
            self._retention_after_poll()
        finally:
            self._schedule_again(url, next_poll)

    def _count_poll(self, report: FeedReport) -> None:
        """Count the poll, and log the summary of the last `POLL_SUMMARY_EVERY` when it is due."""
        with self._summary_lock:
            summary = self._summary
            summary.count(report)
            now = self.clock()
            if summary.since <= now < summary.since + POLL_SUMMARY_EVERY:
                return  # (a clock set back ends the period now)
            self._summary = PollSummary(since=now)
        log.info(summary.log_line(now), extra=summary.log_fields(now))

    def _schedule_again(self, url: str, next_poll: datetime | None) -> None:
        """Put `url` back in the schedule after its poll: at the time the poll recorded, or
        one interval from now when it recorded nothing."""
        with self._schedule_lock:
            self._polling.discard(url)
            spec = self._specs.get(url)
            if spec is None or self.stopping.is_set() or url in self._due:
                return
            when = next_poll or self.clock() + spec.interval
            self._due.set(url, when)
            wake = when < self._timer_next_look
        if wake:
            self._timer_wake.set()

    def _retention_after_poll(self) -> None:
        """Apply `retention:` after a poll, at most once per RETENTION_EVERY; one poll thread
        does it while the others carry on."""
        if self.config.retention.article_text is None or self.stopping.is_set():
            return
        if not self._retention_lock.acquire(blocking=False):
            return
        try:
            now = self.clock()
            if self._retention_at is not None and now - self._retention_at < RETENTION_EVERY:
                return
            self._retention_at = now
            apply_retention(self.store, self.config, now=now)
        except MonitorError as error:
            log.error("retention failed, tried again in an hour: %s", error)
        finally:
            self._retention_lock.release()

    def _digest_job(self) -> None:
        now = self.clock()
        config = self.config  # one configuration for the whole round, even if reloaded
        for digest in config.digests:
            failed_at = self._digest_failed_at.get(digest.name)
            if failed_at and now - failed_at < DIGEST_RETRY_AFTER:
                continue
            try:
                runs = run_due_digest(self.store, config, digest, now=now)
            except StorageError as error:
                # Nothing was claimed or marked (each step is one transaction): the next
                # check, a minute later, starts again from what the database holds.
                log.error("digest %s: %s (the daemon tries again in a minute)", digest.name, error)
                continue
            if not runs:
                continue
            failed = any(not run.delivered and run.hits for run in runs)
            self._digest_failed_at[digest.name] = now if failed else None
            for run in runs:
                if run.busy:
                    log.info(
                        "digest %s: %s (the daemon tries again in a minute)",
                        run.key,
                        run.description,
                    )
                elif run.hits == 0:
                    log.debug("digest %s: %s", run.key, run.description)

    def _alert_loop(self) -> None:
        while not self.stopping.is_set():
            self._alerts_wanted.wait(ALERT_CHECK_SECONDS)
            self._alerts_wanted.clear()
            if self.stopping.is_set():
                return
            try:
                run = send_alerts(self.store, self.config, self.clock())
            except Exception:  # the thread must outlive a full disk or a bug
                log.exception("alerts: sending failed; trying again in %d s", ALERT_CHECK_SECONDS)
                continue
            if run.busy:
                log.debug("alerts: %s", run.describe())
            elif run.sent or run.retrying or run.failed or run.cancelled:
                log.info("alerts: %s", run.describe())

    def _checkpoint_job(self) -> None:
        if not self.store.checkpoint():
            log.warning(
                "%s: the write-ahead log could not be emptied because another program holds "
                "an old read transaction (an open sqlite3 shell?); it will grow until that ends",
                self.config.database,
            )

    def _reload_job(self) -> None:
        try:
            new_config = self.watcher.poll()
        except ConfigError as error:
            log.error(
                "%s changed but is invalid; keeping the previous configuration:\n%s",
                self.config.path,
                "\n".join(error.problems),
            )
            return
        if new_config is None:
            return
        if new_config.database != self.config.database:
            log.error(
                "%s: `database` cannot change while running; restart to use %s "
                "(other changes applied)",
                new_config.path,
                new_config.database,
            )
        if replace(new_config.poll, interval=self.config.poll.interval) != self.config.poll:
            log.warning(
                "%s: poll settings (timeouts, sizes, concurrency) apply after a restart; "
                "intervals and all other changes apply now",
                new_config.path,
            )
        self.pipeline.set_watchlists(new_config.watchlists)
        self.store.set_alert_routes(alert_routes(new_config))
        self.config = new_config
        self._sync_feeds()
        for warning in lint_config(new_config.path):
            log.warning("%s", warning)
        log.info(
            "configuration reloaded: %d feeds, %d watchlists",
            len(new_config.feeds),
            len(new_config.watchlists),
        )

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.store.set_alert_routes(alert_routes(self.config))
        self._sync_feeds()
        self.scheduler.add_job(
            self._digest_job,
            IntervalTrigger(seconds=DIGEST_CHECK_SECONDS, timezone=UTC),
            id="digest",
            executor="control",
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.add_job(
            self._reload_job,
            IntervalTrigger(seconds=RELOAD_CHECK_SECONDS, timezone=UTC),
            id="reload",
            executor="control",
        )
        self.scheduler.add_job(
            self._checkpoint_job,
            IntervalTrigger(seconds=CHECKPOINT_SECONDS, timezone=UTC),
            id="checkpoint",
            executor="control",
        )
        self.scheduler.start()
        self._timer.start()
        self._alerts_wanted.set()  # what a previous run left due goes out at once
        self._alert_thread.start()
        log.info(
            "monitor running: %d feeds, %d watchlists; next %s",
            len(self.config.feeds),
            len(self.config.watchlists),
            "; ".join(
                f"{digest.label} at "
                + next_digest_time(
                    self.clock(), self.config.timezone, digest.at, digest.every
                ).strftime("%Y-%m-%d %H:%M %Z")
                for digest in self.config.digests
            ),
        )

    def reload_now(self) -> None:
        """Look at feeds.yaml at once rather than at the next 2-second check (SIGHUP)."""
        with contextlib.suppress(JobLookupError):
            self.scheduler.modify_job("reload", next_run_time=datetime.now(UTC))

    def stop(self) -> None:
        """Stop scheduling; polls in flight finish or are abandoned (their transaction never commits)."""
        self.stopping.set()
        self.pipeline.stopping.set()
        # Closing the fetcher makes requests in flight fail fast instead of waiting out
        # their deadline; the polls they belong to then record nothing.
        self.pipeline.fetcher.close()
        self._alerts_wanted.set()
        self._timer_wake.set()
        self.scheduler.shutdown(wait=True)
        if self._timer.is_alive():
            self._timer.join()
        # Polls not started are dropped (their feeds are due again at the next start);
        # those running end fast, their fetches failing on the closed client.
        self._polls.shutdown(wait=True, cancel_futures=True)
        if self._alert_thread.is_alive():
            self._alert_thread.join()  # at most one alert's timeout


def run_daemon(
    config_path: Path, environ: Mapping[str, str] | None = None, *, clock: Clock = utc_now
) -> int:
    """Load the config, take the lock, run until SIGINT/SIGTERM. Returns the exit status."""
    watcher = ConfigWatcher(config_path, environ=environ)
    config = watcher.current
    with single_instance(config.database), Store(config.database) as store:
        problems = store.integrity_problems()
        if problems:
            raise DamagedDatabase(
                f"{config.database} is damaged ({'; '.join(problems[:5])}); stopping rather "
                "than losing more: restore a backup, or move the file aside to start afresh"
            )
        store.check_writable()
        rescore_hits(store, config.watchlists, now=clock())
        with open_pipeline(config, store, clock=clock, start_workers=True) as pipeline:
            _run_until_signalled(Daemon(config, watcher, store, pipeline, clock=clock))
    log.info("monitor stopped")
    return 0


def _run_until_signalled(daemon: Daemon) -> None:
    stop_requested = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        stop_requested.set()

    def request_reload(signum: int, frame: FrameType | None) -> None:
        log.info("received SIGHUP: re-reading %s now", daemon.config.path)
        daemon.reload_now()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGHUP, request_reload)  # systemctl reload
    daemon.start()
    while not stop_requested.wait(1.0):
        pass
    _exit_after(SHUTDOWN_GRACE_SECONDS)
    daemon.stop()


def _exit_after(grace: float) -> None:
    """Guarantee the process ends `grace` seconds after a stop was requested.

    Shutdown normally takes well under a second; this covers a poll stuck in
    extraction or in SQLite. Abandoning it is safe: its transaction never
    committed, so the next start redoes that feed.
    """

    def abandon() -> None:
        log.warning(
            "some work did not finish within %.0f s of the stop request; abandoning it", grace
        )
        logging.shutdown()
        os._exit(0)

    timer = threading.Timer(grace, abandon)
    timer.daemon = True
    timer.start()
