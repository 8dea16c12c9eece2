"""SQLite plumbing: one connection per thread, WAL, write transactions that take
the lock up front, and errors that say what was being done on which file.

Connections are opened here rather than by sqlite-utils, which would open
them with ``check_same_thread=True`` and a 5 s timeout. Every write runs
inside ``BEGIN IMMEDIATE``: a transaction that reads and then writes under a
plain ``BEGIN`` fails at once with "database is locked" when another
connection wrote in between, instead of waiting for the lock; taking the
write lock first makes it wait up to the busy timeout. sqlite-utils' own
``atomic()`` issues a plain ``BEGIN``; called inside our transaction it only
opens a savepoint, which is how the migrations run.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monitor.errors import DatabaseFull, StorageError

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a write waits for another connection's lock
# SQLite's page cache is per connection, and the daemon has one connection per poll
# thread (poll.concurrency, up to 64): at SQLite's default of 2 MiB each they held about
# 100 MiB of a 10,000-feed daemon (bench/bench_daemon_scale.py). Polls read a few pages
# each, which the operating system's file cache serves as fast.
PAGE_CACHE_KIB = 256


def explain_sqlite_error(error: sqlite3.Error, timeout: float) -> str:
    """SQLite's message, with what the user can do about it."""
    text = str(error)
    if "locked" in text or "busy" in text:
        return (
            f"{text}: another process held a write lock for more than {timeout:g} s; "
            "check that no other `monitor` is running and no sqlite3 shell has a transaction open"
        )
    if "disk is full" in text or "disk I/O" in text:
        return f"{text}: free some disk space; nothing was half-written, the work will be redone"
    if "readonly" in text or "read-only" in text or "unable to open" in text:
        return (
            f"{text}: the database or its folder cannot be written by this user; make both "
            "writable (SQLite keeps -wal and -shm files beside the database), or use a "
            "command that only reads (hits, status, digest --dry-run)"
        )
    if "malformed" in text or "not a database" in text:
        return (
            f"{text}: the file is damaged or is not a monitor database; "
            "restore it from a backup or move it away to start afresh"
        )
    return text


class Connections:
    """The connections of one process to one database file. Safe to share between threads.

    A thread that asks for `connection()` gets one of its own, kept until `close()`.
    `read` and `write` use that one when the thread has it, and otherwise borrow a
    spare connection for the statement or the transaction (a read inside a write uses
    the write's): the daemon's poll threads only read and write, so they share a few
    connections instead of holding one each. A connection holds about 180 KiB however
    little it reads (SQLite's schema, lookaside memory and cached statements): with
    `poll.concurrency` 128 that was about 25 MB of the main process.
    """

    def __init__(
        self, path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, read_only: bool = False
    ) -> None:
        self.path = path
        self.busy_timeout = busy_timeout
        self.read_only = read_only
        self._local = threading.local()
        self._all: list[sqlite3.Connection] = []
        self._spare: list[sqlite3.Connection] = []  # to borrow; none of them in a thread's use
        self._all_lock = threading.Lock()
        # Re-entrant: a write begun inside a write fails on SQLite's BEGIN, as it always did.
        self._write_lock = threading.RLock()
        self._closed = False

    def connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use (the one it borrowed, while it
        is inside `read` or `write` without one of its own)."""
        if self._closed:
            raise StorageError(f"the store for {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            borrowed: sqlite3.Connection | None = getattr(self._local, "borrowed", None)
            if borrowed is not None:
                return borrowed
            conn = self._open()
            self._local.conn = conn
        return conn

    @property
    def opened(self) -> int:
        """Connections open now (own and spare), for tests and benchmarks."""
        with self._all_lock:
            return len(self._all)

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            f"{self.path.as_uri()}?mode=ro" if self.read_only else self.path,
            timeout=self.busy_timeout,
            check_same_thread=False,
            isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            uri=self.read_only,
        )
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")
        with self._all_lock:
            self._all.append(conn)
        return conn

    @contextmanager
    def _in_use(self) -> Iterator[sqlite3.Connection]:
        """The thread's own connection, or the one it is using, or a spare borrowed for
        the duration."""
        if self._closed:
            raise StorageError(f"the store for {self.path} is closed")
        current: sqlite3.Connection | None = getattr(self._local, "conn", None) or getattr(
            self._local, "borrowed", None
        )
        if current is not None:
            yield current
            return
        with self._all_lock:
            spare = self._spare.pop() if self._spare else None
        conn = spare or self._open()
        self._local.borrowed = conn
        try:
            yield conn
        finally:
            self._local.borrowed = None
            with self._all_lock:
                if not self._closed:
                    self._spare.append(conn)

    def enable_wal(self) -> None:
        """Switch the file to WAL (a property of the file, kept once set).

        While another connection converts a new file, SQLite answers "locked"
        at once, without calling the busy handler, so that case is retried here
        within the same busy timeout.
        """
        conn = self.connection()
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    @contextmanager
    def errors(self, action: str) -> Iterator[None]:
        """Turn SQLite errors into a `StorageError` naming `action` and the file."""
        try:
            yield
        except sqlite3.Error as error:
            full = getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            raise (DatabaseFull if full else StorageError)(
                f"{action} failed in {self.path}: {explain_sqlite_error(error, self.busy_timeout)}"
            ) from error

    @contextmanager
    def write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock up front.

        Writers of this process queue on a lock of their own before asking SQLite's, and
        each is woken as soon as the one before has committed. A connection that finds
        SQLite's lock taken sleeps in its busy handler instead (1, 2, 5, 10 ... 100 ms,
        not woken when the lock frees): with 64 poll threads each BEGIN IMMEDIATE or
        COMMIT took 48 ms on average (3,000 polls of bench/bench_daemon_scale.py's feeds
        under cProfile), against 1.5 ms for a commit alone. Other processes still meet
        SQLite's lock and its busy timeout.
        """
        if not self._write_lock.acquire(timeout=self.busy_timeout):
            raise StorageError(
                f"{action} failed in {self.path}: another write of this process held the "
                f"database for more than {self.busy_timeout:g} s; it is tried again later"
            )
        try:
            with self.errors(action), self._in_use() as conn:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        self._rollback(conn)
                    raise
        finally:
            self._write_lock.release()

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The original error is the one worth reporting; SQLite rolls back on next open anyway.
            log.exception("rolling back a failed transaction in %s also failed", self.path)

    def read(self, action: str, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self.errors(action), self._in_use() as conn:
            return conn.execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Close every thread's connection; nothing can be used afterwards."""
        self._closed = True
        with self._all_lock:
            connections, self._all, self._spare = self._all, [], []
        for conn in connections:
            conn.close()
