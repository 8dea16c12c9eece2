"""The only SQL in `monitor`: feeds, articles, hits and digests in one SQLite file.

Schema (created and upgraded by the `MIGRATIONS` below)::

    feeds ──< entries >── articles ──< hits >── digests
              (feed_id, entry_key) unique    (article_id, watchlist) unique

* An *entry* is one item of one feed; `UNIQUE(feed_id, entry_key)` makes a
  re-poll add nothing twice.
* An *article* is deduplicated across feeds by its normalised URL, so the same
  story in two feeds is one article with two entry links. An entry without a
  link is its own article, keyed by feed and entry key.
* A *hit* is one watchlist matching one article; a second identical hit is
  ignored, two watchlists give two hits.
* A *digest* row makes delivery exactly-once (see `Store.claim_digest`).

Concurrency: one connection per thread, opened by us (sqlite-utils would open
it with ``check_same_thread=True`` and a 5 s timeout), WAL journal, and every
write inside ``BEGIN IMMEDIATE`` so that a transaction takes the write lock
before reading and waits for it up to the busy timeout, instead of failing
with "database is locked" on the read-to-write upgrade (RELIABILITY.md §0.7).
sqlite-utils' own ``atomic()`` issues a plain ``BEGIN``; called inside our
transaction it only opens a savepoint, which is how the migrations run.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlite_utils
from sqlite_utils.migrations import Migrations

from monitor.errors import StorageError
from monitor.models import (
    ArticleText,
    Entry,
    HitResult,
    StoredHit,
    TextSource,
    Validators,
)

log = logging.getLogger(__name__)

DEFAULT_BUSY_TIMEOUT = 30.0  # seconds a write waits for another connection's lock
_ARTICLE_PAGE = 200  # rows per query when streaming articles for a backfill


@dataclass(frozen=True)
class FeedState:
    feed_id: int
    url: str
    title: str | None
    validators: Validators
    body_hash: str | None
    last_poll: datetime | None
    last_success: datetime | None
    http_status: int | None
    entries: int  # entries stored for this feed so far
    last_error: str | None
    error_count: int
    next_poll: datetime | None
    last_full_fetch: datetime | None = None  # last 200 with a whole body


@dataclass(frozen=True)
class NewArticle:
    """One new entry, processed, ready to store."""

    entry: Entry
    article: ArticleText
    hits: tuple[HitResult, ...]


@dataclass(frozen=True)
class PollOutcome:
    new_entries: int
    new_articles: int
    new_hits: int


@dataclass(frozen=True)
class ClaimedDigest:
    """A digest reserved for sending: its hits belong to it until finished or released."""

    key: str
    message_id: str  # deterministic: a re-send after a crash carries the same one
    hits: tuple[StoredHit, ...]  # oldest first
    created_at: datetime
    attempts: int  # 1 on the first claim; more when re-sent after a crash or failure


# --------------------------------------------------------------------------- helpers


def normalise_url(url: str) -> str:
    """The identity of an article URL across feeds.

    Lower-case scheme and host, default port dropped, empty path as "/",
    fragment and utm_* tracking parameters removed; the rest (path case, other
    parameters and their order) is kept because servers may depend on it.
    """
    stripped = url.strip()
    try:
        parts = urlsplit(stripped)
        port = parts.port
    except ValueError:  # an invalid port or IPv6 literal: keep the text as its own identity
        return stripped
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in {("http", 80), ("https", 443)}:
        host = f"{host}:{port}"
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    netloc = f"{userinfo}@{host}" if userinfo else host
    query = [
        (name, value)
        for name, value in parse_qsl(parts.query, keep_blank_values=True)
        if not name.lower().startswith("utm_")
    ]
    path = parts.path or ("/" if netloc else "")
    return urlunsplit((scheme, netloc, path, urlencode(query), ""))


def _to_db(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store only accepts aware datetimes")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _from_db(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def _required_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _message_id(db_path: Path, key: str) -> str:
    digest = hashlib.sha256(f"{db_path}{key}".encode()).hexdigest()[:12]
    safe_key = re.sub(r"[^A-Za-z0-9._-]", "_", key)
    return f"<digest-{safe_key}-{digest}@monitor.local>"


def _explain(error: sqlite3.Error, timeout: float) -> str:
    text = str(error)
    if "locked" in text or "busy" in text:
        return (
            f"{text}: another process held a write lock for more than {timeout:g} s; "
            "check that no other `monitor` is running and no sqlite3 shell has a transaction open"
        )
    if "disk is full" in text or "disk I/O" in text:
        return f"{text}: free some disk space; nothing was half-written, the work will be redone"
    if "malformed" in text or "not a database" in text:
        return (
            f"{text}: the file is damaged or is not a monitor database; "
            "restore it from a backup or move it away to start afresh"
        )
    return text


# --------------------------------------------------------------------------- schema

MIGRATIONS = Migrations("monitor")


@MIGRATIONS(name="0001_initial_schema")
def _initial_schema(db: sqlite_utils.Database) -> None:
    statements = [
        """
        CREATE TABLE feeds (
            id INTEGER PRIMARY KEY,
            url TEXT NOT NULL UNIQUE,
            title TEXT,
            etag TEXT,
            last_modified TEXT,
            body_hash TEXT,
            last_poll TEXT,
            last_success TEXT,
            http_status INTEGER,
            last_error TEXT,
            error_count INTEGER NOT NULL DEFAULT 0,
            next_poll TEXT
        )
        """,
        """
        CREATE TABLE articles (
            id INTEGER PRIMARY KEY,
            url TEXT,
            url_key TEXT NOT NULL UNIQUE,  -- normalised URL, or entry:<feed id>:<entry key>
            title TEXT NOT NULL,
            text TEXT NOT NULL,
            text_source TEXT NOT NULL CHECK (text_source IN ('page', 'feed')),
            note TEXT,
            language TEXT,
            published TEXT,
            first_seen TEXT NOT NULL,
            first_feed_id INTEGER NOT NULL REFERENCES feeds (id)
        )
        """,
        "CREATE INDEX articles_first_seen ON articles (first_seen)",
        """
        CREATE TABLE entries (
            id INTEGER PRIMARY KEY,
            feed_id INTEGER NOT NULL REFERENCES feeds (id),
            entry_key TEXT NOT NULL,
            article_id INTEGER NOT NULL REFERENCES articles (id),
            link TEXT,
            title TEXT NOT NULL,
            published TEXT,
            first_seen TEXT NOT NULL,
            UNIQUE (feed_id, entry_key)
        )
        """,
        "CREATE INDEX entries_article ON entries (article_id)",
        """
        CREATE TABLE digests (
            key TEXT PRIMARY KEY,
            message_id TEXT NOT NULL,
            state TEXT NOT NULL CHECK (state IN ('sending', 'sent', 'empty', 'failed')),
            created_at TEXT NOT NULL,
            sent_at TEXT,
            attempts INTEGER NOT NULL DEFAULT 0,
            error TEXT
        )
        """,
        """
        CREATE TABLE hits (
            id INTEGER PRIMARY KEY,
            watchlist TEXT NOT NULL,
            article_id INTEGER NOT NULL REFERENCES articles (id),
            matched TEXT NOT NULL,   -- JSON list of terms
            clauses TEXT NOT NULL,   -- JSON list of {clause, words, field}
            snippets TEXT NOT NULL,  -- JSON list of sentences with [[marks]]
            found_at TEXT NOT NULL,
            backfilled INTEGER NOT NULL DEFAULT 0,
            quiet INTEGER NOT NULL DEFAULT 0,  -- a quiet backfill: never mailed
            digest_key TEXT REFERENCES digests (key),
            UNIQUE (article_id, watchlist)
        )
        """,
        "CREATE INDEX hits_digest_key ON hits (digest_key)",
        "CREATE INDEX hits_found_at ON hits (found_at)",
    ]
    for statement in statements:
        db.execute(statement)


@MIGRATIONS(name="0002_feed_last_full_fetch")
def _feed_last_full_fetch(db: sqlite_utils.Database) -> None:
    # When a whole body last arrived (200, changed or not). A server can answer 304
    # forever to bogus validators; the pipeline ignores validators older than a day.
    db.execute("ALTER TABLE feeds ADD COLUMN last_full_fetch TEXT")


# --------------------------------------------------------------------------- store

_HIT_COLUMNS = """
    hits.id AS hit_id, hits.watchlist, hits.article_id, hits.matched, hits.snippets,
    hits.found_at, hits.backfilled, articles.title, articles.url, articles.published,
    COALESCE(feeds.title, feeds.url) AS feed
"""
_HIT_JOINS = """
    FROM hits
    JOIN articles ON articles.id = hits.article_id
    JOIN feeds ON feeds.id = articles.first_feed_id
"""
_FEED_COLUMNS = """
    feeds.*, (SELECT COUNT(*) FROM entries WHERE entries.feed_id = feeds.id) AS entry_count
"""


class Store:
    """Typed access to the database. Safe to share between threads."""

    def __init__(self, path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self.path = Path(path).resolve()
        self.busy_timeout = busy_timeout
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise StorageError(
                f"cannot create the directory for the database {self.path}: {error}"
            ) from error
        try:
            self._migrate()
        except BaseException:
            self.close()
            raise

    def _migrate(self) -> None:
        with self._errors("opening the database"):
            conn = self._connection()
            self._enable_wal(conn)
            # No plugins: whatever sqlite-utils plugins are installed must not touch our connection.
            database = sqlite_utils.Database(conn, execute_plugins=False)
            if not MIGRATIONS.pending(database):
                return
        # Re-checked under the write lock: another process may have migrated meanwhile.
        with self._write("applying schema migrations"):
            MIGRATIONS.apply(database)

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch the file to WAL (a property of the file, kept once set).

        While another connection converts a new file, SQLite answers "locked"
        at once, without calling the busy handler, so that case is retried here
        within the same busy timeout.
        """
        deadline = time.monotonic() + self.busy_timeout
        while True:
            try:
                conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.01)

    # ------------------------------------------------------------------ plumbing

    def _connection(self) -> sqlite3.Connection:
        if self._closed:
            raise StorageError(f"the store for {self.path} is closed")
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                check_same_thread=False,
                isolation_level=None,  # we issue BEGIN IMMEDIATE / COMMIT ourselves
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as error:
            raise StorageError(
                f"{action} failed in {self.path}: {_explain(error, self.busy_timeout)}"
            ) from error

    @contextmanager
    def _write(self, action: str) -> Iterator[sqlite3.Connection]:
        """One write transaction that takes the write lock up front."""
        with self._errors(action):
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    self._rollback(conn)
                raise

    def _rollback(self, conn: sqlite3.Connection) -> None:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error:
            # The original error is the one worth reporting; SQLite rolls back on next open anyway.
            log.exception("rolling back a failed transaction in %s also failed", self.path)

    def _read(self, action: str, sql: str, parameters: Sequence[Any] = ()) -> list[sqlite3.Row]:
        with self._errors(action):
            return self._connection().execute(sql, parameters).fetchall()

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        self._closed = True
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ feeds

    def feed_state(self, url: str) -> FeedState:
        """The stored state of a feed, creating its row the first time the URL is seen."""
        action = f"reading the state of feed {url}"
        rows = self._read(action, f"SELECT {_FEED_COLUMNS} FROM feeds WHERE url = ?", [url])
        if not rows:
            with self._write(f"registering feed {url}") as conn:
                conn.execute("INSERT OR IGNORE INTO feeds (url) VALUES (?)", [url])
            rows = self._read(action, f"SELECT {_FEED_COLUMNS} FROM feeds WHERE url = ?", [url])
        return _feed_state(rows[0])

    def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database and truncate it; True when complete.

        SQLite checkpoints on its own after commits, but never past a reader that
        holds an old snapshot (a user's open `sqlite3` shell, a long `monitor hits`),
        so the -wal file can grow without bound (RELIABILITY D6). False means a
        reader is still in the way; the next call tries again.
        """
        with self._errors("checkpointing the write-ahead log"):
            conn = self._connection()
            # Waiting for a reader would only block the caller: try, and report.
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return bool(busy == 0)

    def integrity_problems(self) -> list[str]:
        """What SQLite's quick_check finds wrong with the file; empty when it is sound."""
        rows = self._read("checking the database's integrity", "PRAGMA quick_check")
        problems = [str(row[0]) for row in rows]
        return [] if problems == ["ok"] else problems

    def feed_states(self) -> list[FeedState]:
        rows = self._read("listing feeds", f"SELECT {_FEED_COLUMNS} FROM feeds ORDER BY url")
        return [_feed_state(row) for row in rows]

    def unseen_entries(self, feed_id: int, entries: Sequence[Entry]) -> list[Entry]:
        """The entries whose key this feed never stored, in their original order."""
        keys = [entry.key for entry in entries]
        seen: set[str] = set()
        # Chunked to stay under SQLite's bound-parameter limit on feeds with thousands of items.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            placeholders = ", ".join("?" * len(chunk))
            rows = self._read(
                f"looking up known entries of feed #{feed_id}",
                f"SELECT entry_key FROM entries WHERE feed_id = ? AND entry_key IN ({placeholders})",
                [feed_id, *chunk],
            )
            seen.update(row["entry_key"] for row in rows)
        return [entry for entry in entries if entry.key not in seen]

    def known_article(self, url: str) -> ArticleText | None:
        """The article already stored under this URL (seen via another feed), if any."""
        rows = self._read(
            f"looking up article {url}",
            "SELECT * FROM articles WHERE url_key = ?",
            [normalise_url(url)],
        )
        return _article_text(rows[0]) if rows else None

    def save_poll(
        self,
        feed_id: int,
        *,
        now: datetime,
        status: int,
        validators: Validators,
        body_hash: str | None,
        feed_title: str | None,
        new: Sequence[NewArticle],
        next_poll: datetime | None,
    ) -> PollOutcome:
        """Store one successful poll in one transaction.

        The validators advance together with the entries, so a crash can never
        leave a feed whose ETag says "seen" while its entries are missing.
        """
        new_entries = new_articles = new_hits = 0
        found_at = _to_db(now)
        with self._write(f"saving the poll of feed #{feed_id}") as conn:
            for item in new:
                entry, article = item.entry, item.article
                url_key = _article_key(feed_id, entry, article)
                row = conn.execute(
                    "SELECT id FROM articles WHERE url_key = ?", [url_key]
                ).fetchone()
                if row is None:
                    cursor = conn.execute(
                        """
                        INSERT INTO articles (url, url_key, title, text, text_source, note,
                                              language, published, first_seen, first_feed_id)
                        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                        """,
                        [
                            article.url or entry.link,
                            url_key,
                            article.title,
                            article.text,
                            article.source.value,
                            article.note,
                            article.language,
                            _to_db(article.published or entry.published),
                            found_at,
                            feed_id,
                        ],
                    )
                    article_id = _lastrowid(cursor)
                    new_articles += 1
                else:
                    article_id = row["id"]
                cursor = conn.execute(
                    """
                    INSERT OR IGNORE INTO entries (feed_id, entry_key, article_id, link, title,
                                                   published, first_seen)
                    VALUES (?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        feed_id,
                        entry.key,
                        article_id,
                        entry.link,
                        entry.title,
                        _to_db(entry.published),
                        found_at,
                    ],
                )
                new_entries += cursor.rowcount
                for hit in item.hits:
                    new_hits += _insert_hit(
                        conn, article_id, hit, found_at, backfilled=False, quiet=False
                    )
            conn.execute(
                """
                UPDATE feeds SET title = COALESCE(?, title), etag = ?, last_modified = ?,
                    body_hash = ?, last_poll = ?, last_success = ?, http_status = ?,
                    last_error = NULL, error_count = 0, next_poll = ?, last_full_fetch = ?
                WHERE id = ?
                """,
                [
                    feed_title,
                    validators.etag,
                    validators.last_modified,
                    body_hash,
                    found_at,
                    found_at,
                    status,
                    _to_db(next_poll),
                    found_at,
                    feed_id,
                ],
            )
        return PollOutcome(new_entries=new_entries, new_articles=new_articles, new_hits=new_hits)

    def save_not_modified(
        self,
        feed_id: int,
        *,
        now: datetime,
        status: int,
        validators: Validators,
        next_poll: datetime | None,
    ) -> None:
        """A 304, or a 200 whose body is the one already stored: healthy and unchanged.

        A validator the server did not repeat keeps its stored value, so a 304
        without an ETag does not turn the next poll into an unconditional GET.
        """
        moment = _to_db(now)
        with self._write(f"saving the not-modified poll of feed #{feed_id}") as conn:
            conn.execute(
                """
                UPDATE feeds SET etag = COALESCE(?, etag),
                    last_modified = COALESCE(?, last_modified), last_poll = ?,
                    last_success = ?, http_status = ?, last_error = NULL, error_count = 0,
                    next_poll = ?,
                    last_full_fetch = CASE WHEN ? = 304 THEN last_full_fetch ELSE ? END
                WHERE id = ?
                """,
                [
                    validators.etag,
                    validators.last_modified,
                    moment,
                    moment,
                    status,
                    _to_db(next_poll),
                    status,
                    moment,
                    feed_id,
                ],
            )

    def save_failure(
        self,
        feed_id: int,
        *,
        now: datetime,
        message: str,
        status: int | None,
        next_poll: datetime | None,
    ) -> None:
        """A failed poll: counted and explained; validators and entries stay as they were."""
        with self._write(f"saving the failed poll of feed #{feed_id}") as conn:
            conn.execute(
                """
                UPDATE feeds SET last_poll = ?, http_status = ?, last_error = ?,
                    error_count = error_count + 1, next_poll = ?
                WHERE id = ?
                """,
                [_to_db(now), status, message, _to_db(next_poll), feed_id],
            )

    # ------------------------------------------------------------------ hits and backfill

    def hits(
        self, *, since: datetime | None = None, watchlist: str | None = None
    ) -> list[StoredHit]:
        """Stored hits, newest first."""
        conditions: list[str] = []
        parameters: list[Any] = []
        if since is not None:
            conditions.append("hits.found_at >= ?")
            parameters.append(_to_db(since))
        if watchlist is not None:
            conditions.append("hits.watchlist = ?")
            parameters.append(watchlist)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._read(
            "listing hits",
            f"SELECT {_HIT_COLUMNS} {_HIT_JOINS} {where} ORDER BY hits.found_at DESC, hits.id DESC",
            parameters,
        )
        return [_stored_hit(row) for row in rows]

    def articles_since(self, since: datetime | None) -> Iterator[tuple[int, ArticleText, str]]:
        """(article id, text, feed name) of articles first seen at or after `since`, oldest first.

        Read in pages, so no statement stays open while the caller writes.
        """
        since_text = _to_db(since) if since is not None else ""
        last_id = 0
        while True:
            rows = self._read(
                "reading stored articles",
                """
                SELECT articles.*, COALESCE(feeds.title, feeds.url) AS feed
                FROM articles JOIN feeds ON feeds.id = articles.first_feed_id
                WHERE articles.id > ? AND articles.first_seen >= ?
                ORDER BY articles.id LIMIT ?
                """,
                [last_id, since_text, _ARTICLE_PAGE],
            )
            if not rows:
                return
            for row in rows:
                yield row["id"], _article_text(row), row["feed"]
            last_id = rows[-1]["id"]

    def add_backfill_hits(
        self,
        watchlist: str,
        found: Sequence[tuple[int, HitResult]],
        *,
        now: datetime,
        quiet: bool,
    ) -> int:
        """Record hits found by running `watchlist` over stored articles; returns how many are new.

        Quiet hits are stored but never mailed. A hit that already exists,
        backfilled or not, is left as it was.
        """
        found_at = _to_db(now)
        added = 0
        with self._write(f"saving backfilled hits of watchlist {watchlist!r}") as conn:
            for article_id, hit in found:
                if hit.watchlist != watchlist:
                    raise ValueError(
                        f"hit for watchlist {hit.watchlist!r} passed to a backfill of {watchlist!r}"
                    )
                added += _insert_hit(conn, article_id, hit, found_at, backfilled=True, quiet=quiet)
        return added

    # ------------------------------------------------------------------ digests

    def claim_digest(self, key: str, *, now: datetime) -> ClaimedDigest | None:
        """Reserve the hits of the digest `key` for sending.

        Returns, in order of precedence:

        1. a digest left in state ``sending`` by a crash or an uncertain send,
           *whatever its key*, with its own hits and Message-ID: send it again,
           then finish or release it using ``claimed.key`` and claim again;
        2. None if `key` was already sent or ran empty;
        3. a new digest holding every hit not yet claimed (quiet backfills
           excepted), or None after recording `key` as empty when there is none.
        """
        message_id = _message_id(self.path, key)
        with self._write(f"claiming digest {key}") as conn:
            stuck = conn.execute(
                "SELECT * FROM digests WHERE state = 'sending' ORDER BY created_at, key LIMIT 1"
            ).fetchone()
            if stuck is not None:
                conn.execute(
                    "UPDATE digests SET attempts = attempts + 1 WHERE key = ?", [stuck["key"]]
                )
                return self._claimed(conn, stuck["key"])
            row = conn.execute("SELECT state FROM digests WHERE key = ?", [key]).fetchone()
            if row is not None and row["state"] in ("sent", "empty"):
                return None
            pending = conn.execute(
                "SELECT COUNT(*) FROM hits WHERE digest_key IS NULL AND quiet = 0"
            ).fetchone()[0]
            state = "sending" if pending else "empty"
            # A failed earlier attempt keeps its row (and Message-ID): it was never delivered.
            conn.execute(
                """
                INSERT INTO digests (key, message_id, state, created_at, attempts)
                VALUES (?, ?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET state = excluded.state,
                    attempts = attempts + excluded.attempts
                """,
                [key, message_id, state, _to_db(now), 1 if pending else 0],
            )
            if not pending:
                return None
            conn.execute(
                "UPDATE hits SET digest_key = ? WHERE digest_key IS NULL AND quiet = 0", [key]
            )
            return self._claimed(conn, key)

    def preview_digest(self, *, now: datetime) -> ClaimedDigest | None:
        """What a new digest would hold now (for ``--dry-run``); claims and records nothing.

        A digest left ``sending`` by a crash is not included: it is re-sent as it was.
        """
        rows = self._read(
            "previewing the next digest",
            f"""
            SELECT {_HIT_COLUMNS} {_HIT_JOINS}
            WHERE hits.digest_key IS NULL AND hits.quiet = 0 ORDER BY hits.id
            """,
        )
        if not rows:
            return None
        return ClaimedDigest(
            key="preview",
            message_id=_message_id(self.path, "preview"),
            hits=tuple(_stored_hit(row) for row in rows),
            created_at=now,
            attempts=0,
        )

    def pending_digest(self) -> ClaimedDigest | None:
        """The digest left in state ``sending`` (killed or uncertain mid-send), if any."""
        rows = self._read(
            "looking for an unfinished digest",
            "SELECT key FROM digests WHERE state = 'sending' ORDER BY created_at, key LIMIT 1",
        )
        if not rows:
            return None
        with self._errors(f"reading digest {rows[0]['key']}"):
            return self._claimed(self._connection(), rows[0]["key"])

    def finish_digest(self, key: str, *, now: datetime) -> None:
        """The message was accepted (or written): its hits are sent for good."""
        with self._write(f"marking digest {key} as sent") as conn:
            state = self._digest_state(conn, key)
            if state == "sent":
                return
            if state != "sending":
                raise StorageError(
                    f"digest {key} in {self.path} is {state}, not being sent: "
                    "only a claimed digest can be finished"
                )
            conn.execute(
                "UPDATE digests SET state = 'sent', sent_at = ?, error = NULL WHERE key = ?",
                [_to_db(now), key],
            )

    def release_digest(self, key: str, *, now: datetime, error: str) -> None:
        """Sending definitely failed: detach the hits so the next digest carries them."""
        with self._write(f"releasing digest {key}") as conn:
            state = self._digest_state(conn, key)
            if state != "sending":
                raise StorageError(
                    f"digest {key} in {self.path} is {state}, not being sent: "
                    "only a claimed digest can be released"
                )
            conn.execute("UPDATE hits SET digest_key = NULL WHERE digest_key = ?", [key])
            conn.execute(
                "UPDATE digests SET state = 'failed', error = ? WHERE key = ?",
                [f"{_to_db(now)}: {error}", key],
            )

    def digest_done_for(self, key: str) -> bool:
        """True when a digest with this key was sent, or ran with nothing to send."""
        rows = self._read(f"reading digest {key}", "SELECT state FROM digests WHERE key = ?", [key])
        return bool(rows) and rows[0]["state"] in ("sent", "empty")

    def record_empty_digest(self, key: str, *, now: datetime) -> None:
        """Remember that `key` had nothing to send. A claimed or sent digest is left alone."""
        with self._write(f"recording empty digest {key}") as conn:
            conn.execute(
                """
                INSERT INTO digests (key, message_id, state, created_at) VALUES (?, ?, 'empty', ?)
                ON CONFLICT (key) DO UPDATE SET state = 'empty' WHERE state = 'failed'
                """,
                [key, _message_id(self.path, key), _to_db(now)],
            )

    def _digest_state(self, conn: sqlite3.Connection, key: str) -> str:
        row = conn.execute("SELECT state FROM digests WHERE key = ?", [key]).fetchone()
        if row is None:
            raise StorageError(f"no digest with key {key} in {self.path}: claim it first")
        state: str = row["state"]
        return state

    def _claimed(self, conn: sqlite3.Connection, key: str) -> ClaimedDigest:
        digest = conn.execute("SELECT * FROM digests WHERE key = ?", [key]).fetchone()
        rows = conn.execute(
            f"SELECT {_HIT_COLUMNS} {_HIT_JOINS} WHERE hits.digest_key = ? ORDER BY hits.id",
            [key],
        ).fetchall()
        return ClaimedDigest(
            key=key,
            message_id=digest["message_id"],
            hits=tuple(_stored_hit(row) for row in rows),
            created_at=_required_time(digest["created_at"]),
            attempts=digest["attempts"],
        )


# --------------------------------------------------------------------------- row mapping


def _article_key(feed_id: int, entry: Entry, article: ArticleText) -> str:
    link = entry.link or article.url
    return normalise_url(link) if link else f"entry:{feed_id}:{entry.key}"


def _lastrowid(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:  # pragma: no cover - INSERT always sets it
        raise StorageError("SQLite did not report the id of an inserted row")
    return cursor.lastrowid


def _insert_hit(
    conn: sqlite3.Connection,
    article_id: int,
    hit: HitResult,
    found_at: str | None,
    *,
    backfilled: bool,
    quiet: bool,
) -> int:
    clauses = [
        {"clause": clause.clause, "words": list(clause.words), "field": clause.field}
        for clause in hit.clauses
    ]
    cursor = conn.execute(
        """
        INSERT OR IGNORE INTO hits (watchlist, article_id, matched, clauses, snippets, found_at,
                                    backfilled, quiet)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)
        """,
        [
            hit.watchlist,
            article_id,
            json.dumps(list(hit.matched), ensure_ascii=False),
            json.dumps(clauses, ensure_ascii=False),
            json.dumps(list(hit.snippets), ensure_ascii=False),
            found_at,
            int(backfilled),
            int(quiet),
        ],
    )
    return cursor.rowcount


def _feed_state(row: sqlite3.Row) -> FeedState:
    return FeedState(
        feed_id=row["id"],
        url=row["url"],
        title=row["title"],
        validators=Validators(etag=row["etag"], last_modified=row["last_modified"]),
        body_hash=row["body_hash"],
        last_poll=_from_db(row["last_poll"]),
        last_success=_from_db(row["last_success"]),
        http_status=row["http_status"],
        entries=row["entry_count"],
        last_error=row["last_error"],
        error_count=row["error_count"],
        next_poll=_from_db(row["next_poll"]),
        last_full_fetch=_from_db(row["last_full_fetch"]),
    )


def _article_text(row: sqlite3.Row) -> ArticleText:
    return ArticleText(
        url=row["url"],
        title=row["title"],
        text=row["text"],
        source=TextSource(row["text_source"]),
        note=row["note"],
        language=row["language"],
        published=_from_db(row["published"]),
    )


def _stored_hit(row: sqlite3.Row) -> StoredHit:
    return StoredHit(
        hit_id=row["hit_id"],
        watchlist=row["watchlist"],
        article_id=row["article_id"],
        title=row["title"],
        url=row["url"],
        feed=row["feed"],
        published=_from_db(row["published"]),
        found_at=_required_time(row["found_at"]),
        matched=tuple(json.loads(row["matched"])),
        snippets=tuple(json.loads(row["snippets"])),
        backfilled=bool(row["backfilled"]),
    )
