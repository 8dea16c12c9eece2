"""`Store`: typed reads and writes of feeds, articles, hits and digests.

* An *entry* is one item of one feed; `UNIQUE(feed_id, entry_key)` makes a
  re-poll add nothing twice.
* An *article* is deduplicated across feeds by its normalised URL, so the same
  story in two feeds is one article with two entry links. An entry without a
  link is its own article, keyed by feed and entry key.
* A *hit* is one watchlist matching one article; a second identical hit is
  ignored, two watchlists give two hits.
* A *digest* row makes delivery exactly-once (see `Store.claim_digest`).

Every poll of a feed is written by one call, `record(update)`, in one
transaction: the decision of what changes was made beforehand, with no I/O,
by `schedule.decide_update`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlite_utils

from monitor.errors import StorageError
from monitor.models import (
    ArticleText,
    ClaimedDigest,
    Entry,
    FeedState,
    FeedUpdate,
    HitResult,
    PollCounts,
    StoredHit,
)
from monitor.store.connections import DEFAULT_BUSY_TIMEOUT, Connections
from monitor.store.rows import (
    article_key,
    article_text,
    feed_state,
    insert_hit,
    lastrowid,
    normalise_url,
    required_time,
    stored_hit,
    to_db,
)
from monitor.store.schema import MIGRATIONS

log = logging.getLogger(__name__)

_ARTICLE_PAGE = 200  # rows per query when streaming articles for a backfill


def _message_id(db_path: Path, key: str) -> str:
    digest = hashlib.sha256(f"{db_path}{key}".encode()).hexdigest()[:12]
    safe_key = re.sub(r"[^A-Za-z0-9._-]", "_", key)
    return f"<digest-{safe_key}-{digest}@monitor.local>"


_HIT_COLUMNS = """
    hits.id AS hit_id, hits.watchlist, hits.article_id, hits.matched, hits.snippets,
    hits.found_at, hits.backfilled, hits.relevance, hits.in_passing, hits.evidence,
    articles.title, articles.url, articles.published,
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

    def __init__(
        self, path: Path, *, busy_timeout: float = DEFAULT_BUSY_TIMEOUT, read_only: bool = False
    ) -> None:
        """Open the database at `path`, creating and upgrading it as needed; with
        `read_only`, open an existing one for reading only (`hits`, `status`, a dry run):
        nothing is created, migrated or written, and a missing file is an error."""
        self.path = Path(path).resolve()
        self.busy_timeout = busy_timeout
        self._db = Connections(self.path, busy_timeout=busy_timeout, read_only=read_only)
        if read_only:
            self._check_readable()
            return
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

    def _check_readable(self) -> None:
        if not self.path.is_file():
            raise StorageError(
                f"no database at {self.path} yet: `monitor poll` or `monitor run` creates it"
            )
        with self._db.errors("opening the database for reading"):
            database = sqlite_utils.Database(self._db.connection(), execute_plugins=False)
            if MIGRATIONS.pending(database):
                raise StorageError(
                    f"{self.path} was written by an older monitor: run `monitor poll` (or the "
                    "daemon) once to upgrade it"
                )

    def backup(self, target: Path) -> None:
        """Copy the database to `target` consistently, while other processes write to it
        (SQLite's online backup: one read transaction over every page)."""
        target = Path(target)
        if target.resolve() == self.path:
            raise StorageError(f"{target} is the database itself: give another file")
        with self._db.errors(f"backing up to {target}"):
            destination = sqlite3.connect(target)
            try:
                self._db.connection().backup(destination)
            finally:
                destination.close()

    def vacuum(self) -> None:
        """Rebuild the file compactly, returning the space of deleted rows to the disk. It
        needs the write lock for as long as it runs: other writers wait up to the busy
        timeout, then fail and retry on their next turn."""
        with self._db.errors("vacuuming the database"):
            self._db.connection().execute("VACUUM")

    def check_writable(self) -> None:
        """Raise `StorageError` now when the database cannot be written (a read-only file,
        folder or mount), rather than at the first poll. SQLite opens such a file for
        reading without a word, and even ``BEGIN IMMEDIATE`` succeeds on it: only a real
        write, rolled back at once, tells."""
        with self._db.write("checking that the database can be written") as conn:
            conn.execute("SAVEPOINT write_check")
            conn.execute("INSERT INTO feeds (url) VALUES ('monitor:write-check')")
            conn.execute("ROLLBACK TO write_check")
            conn.execute("RELEASE write_check")

    def _migrate(self) -> None:
        with self._db.errors("opening the database"):
            self._db.enable_wal()
            # No plugins: whatever sqlite-utils plugins are installed must not touch our connection.
            database = sqlite_utils.Database(self._db.connection(), execute_plugins=False)
            if not MIGRATIONS.pending(database):
                return
        # Re-checked under the write lock: another process may have migrated meanwhile.
        with self._db.write("applying schema migrations"):
            MIGRATIONS.apply(database)

    def close(self) -> None:
        """Close every thread's connection; the store cannot be used afterwards."""
        self._db.close()

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
        rows = self._db.read(action, f"SELECT {_FEED_COLUMNS} FROM feeds WHERE url = ?", [url])
        if not rows:
            with self._db.write(f"registering feed {url}") as conn:
                conn.execute("INSERT OR IGNORE INTO feeds (url) VALUES (?)", [url])
            rows = self._db.read(action, f"SELECT {_FEED_COLUMNS} FROM feeds WHERE url = ?", [url])
        return feed_state(rows[0])

    def checkpoint(self) -> bool:
        """Copy the write-ahead log into the database and truncate it; True when complete.

        SQLite checkpoints on its own after commits, but never past a reader that
        holds an old snapshot (a user's open `sqlite3` shell, a long `monitor hits`),
        so the -wal file can grow without bound. False means a
        reader is still in the way; the next call tries again.
        """
        with self._db.errors("checkpointing the write-ahead log"):
            conn = self._db.connection()
            # Waiting for a reader would only block the caller: try, and report.
            conn.execute("PRAGMA busy_timeout = 0")
            try:
                busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
            finally:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
        return bool(busy == 0)

    def integrity_problems(self) -> list[str]:
        """What SQLite's quick_check finds wrong with the file; empty when it is sound."""
        rows = self._db.read("checking the database's integrity", "PRAGMA quick_check")
        problems = [str(row[0]) for row in rows]
        return [] if problems == ["ok"] else problems

    def feed_states(self) -> list[FeedState]:
        rows = self._db.read("listing feeds", f"SELECT {_FEED_COLUMNS} FROM feeds ORDER BY url")
        return [feed_state(row) for row in rows]

    def unseen_entries(self, feed_id: int, entries: Sequence[Entry]) -> list[Entry]:
        """The entries whose key this feed never stored, in their original order."""
        keys = [entry.key for entry in entries]
        seen: set[str] = set()
        # Chunked to stay under SQLite's bound-parameter limit on feeds with thousands of items.
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            placeholders = ", ".join("?" * len(chunk))
            rows = self._db.read(
                f"looking up known entries of feed #{feed_id}",
                f"SELECT entry_key FROM entries WHERE feed_id = ? AND entry_key IN ({placeholders})",
                [feed_id, *chunk],
            )
            seen.update(row["entry_key"] for row in rows)
        return [entry for entry in entries if entry.key not in seen]

    def known_article(self, url: str) -> ArticleText | None:
        """The article already stored under this URL (seen via another feed), if any."""
        rows = self._db.read(
            f"looking up article {url}",
            "SELECT * FROM articles WHERE url_key = ?",
            [normalise_url(url)],
        )
        return article_text(rows[0]) if rows else None

    def record(self, update: FeedUpdate) -> PollCounts:
        """Write one poll of one feed, in one transaction: its new state and, for a new
        body, its new entries, articles and hits.

        The validators advance together with the entries, so a crash can never
        leave a feed whose ETag says "seen" while its entries are missing.
        """
        feed_id = update.feed_id
        with self._db.write(f"saving the {update.outcome.words} poll of feed #{feed_id}") as conn:
            counts = self._insert_new(conn, feed_id, update) if update.new else PollCounts()
            conn.execute(
                """
                UPDATE feeds SET title = ?, etag = ?, last_modified = ?, body_hash = ?,
                    last_poll = ?, last_success = ?, http_status = ?, last_error = ?,
                    error_count = ?, next_poll = ?, last_full_fetch = ?
                WHERE id = ?
                """,
                [
                    update.title,
                    update.validators.etag,
                    update.validators.last_modified,
                    update.body_hash,
                    to_db(update.polled_at),
                    to_db(update.last_success),
                    update.http_status,
                    update.error,
                    update.error_count,
                    to_db(update.next_poll),
                    to_db(update.last_full_fetch),
                    feed_id,
                ],
            )
        return counts

    def _insert_new(self, conn: sqlite3.Connection, feed_id: int, update: FeedUpdate) -> PollCounts:
        new_entries = new_articles = new_hits = 0
        found_at = to_db(update.polled_at)
        for item in update.new:
            entry, article = item.entry, item.article
            url_key = article_key(feed_id, entry, article)
            row = conn.execute("SELECT id FROM articles WHERE url_key = ?", [url_key]).fetchone()
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
                        to_db(article.published or entry.published),
                        found_at,
                        feed_id,
                    ],
                )
                article_id = lastrowid(cursor)
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
                    to_db(entry.published),
                    found_at,
                ],
            )
            new_entries += cursor.rowcount
            for hit in item.hits:
                new_hits += insert_hit(
                    conn, article_id, hit, found_at, backfilled=False, quiet=False
                )
        return PollCounts(new_entries=new_entries, new_articles=new_articles, new_hits=new_hits)

    # ------------------------------------------------------------------ hits and backfill

    def hits(
        self, *, since: datetime | None = None, watchlist: str | None = None
    ) -> list[StoredHit]:
        """Stored hits, newest first."""
        conditions: list[str] = []
        parameters: list[Any] = []
        if since is not None:
            conditions.append("hits.found_at >= ?")
            parameters.append(to_db(since))
        if watchlist is not None:
            conditions.append("hits.watchlist = ?")
            parameters.append(watchlist)
        where = f"WHERE {' AND '.join(conditions)}" if conditions else ""
        rows = self._db.read(
            "listing hits",
            f"SELECT {_HIT_COLUMNS} {_HIT_JOINS} {where} ORDER BY hits.found_at DESC, hits.id DESC",
            parameters,
        )
        return [stored_hit(row) for row in rows]

    def articles_since(self, since: datetime | None) -> Iterator[tuple[int, ArticleText, str]]:
        """(article id, text, feed name) of articles first seen at or after `since`, oldest first.

        Read in pages, so no statement stays open while the caller writes.
        """
        since_text = to_db(since) if since is not None else ""
        last_id = 0
        while True:
            rows = self._db.read(
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
                yield row["id"], article_text(row), row["feed"]
            last_id = rows[-1]["id"]

    def unscored_hits(self) -> list[tuple[int, str, int]]:
        """(hit id, watchlist, article id) of the hits stored before relevance existed."""
        rows = self._db.read(
            "listing hits without relevance",
            "SELECT id, watchlist, article_id FROM hits WHERE relevance IS NULL ORDER BY id",
        )
        return [(row["id"], row["watchlist"], row["article_id"]) for row in rows]

    def article(self, article_id: int) -> tuple[ArticleText, str] | None:
        """A stored article and the name of the feed that brought it first."""
        rows = self._db.read(
            f"reading article #{article_id}",
            """
            SELECT articles.*, COALESCE(feeds.title, feeds.url) AS feed
            FROM articles JOIN feeds ON feeds.id = articles.first_feed_id
            WHERE articles.id = ?
            """,
            [article_id],
        )
        return (article_text(rows[0]), rows[0]["feed"]) if rows else None

    def set_relevance(self, scores: Sequence[tuple[int, HitResult]]) -> None:
        """Record the relevance computed again for stored hits: (hit id, the hit as matched now)."""
        with self._db.write(f"recording the relevance of {len(scores)} hits") as conn:
            conn.executemany(
                "UPDATE hits SET relevance = ?, in_passing = ?, evidence = ? WHERE id = ?",
                [
                    (hit.relevance, int(hit.in_passing), hit.evidence, hit_id)
                    for hit_id, hit in scores
                ],
            )

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
        found_at = to_db(now)
        added = 0
        with self._db.write(f"saving backfilled hits of watchlist {watchlist!r}") as conn:
            for article_id, hit in found:
                if hit.watchlist != watchlist:
                    raise ValueError(
                        f"hit for watchlist {hit.watchlist!r} passed to a backfill of {watchlist!r}"
                    )
                added += insert_hit(conn, article_id, hit, found_at, backfilled=True, quiet=quiet)
        return added

    # ------------------------------------------------------------------ digests

    def claim_digest(
        self, key: str, *, now: datetime, passed_over: Collection[str] = ()
    ) -> ClaimedDigest | None:
        """Reserve the hits of the digest `key` for sending.

        Returns, in order of precedence:

        1. a digest left in state ``sending`` by a crash or an uncertain send,
           *whatever its key*, unless its key is in `passed_over` (already tried
           by the caller), with its own hits and Message-ID: send it again, then
           finish or release it using ``claimed.key`` and claim again;
        2. None if `key` was already sent or ran empty, or is itself left sending;
        3. a new digest holding every hit not yet claimed (quiet backfills
           excepted), or None after recording `key` as empty when there is none.
        """
        message_id = _message_id(self.path, key)
        skipped = list(passed_over)
        with self._db.write(f"claiming digest {key}") as conn:
            stuck = conn.execute(
                f"""
                SELECT * FROM digests
                WHERE state = 'sending' AND key NOT IN ({", ".join("?" * len(skipped))})
                ORDER BY created_at, key LIMIT 1
                """,
                skipped,
            ).fetchone()
            if stuck is not None:
                conn.execute(
                    "UPDATE digests SET attempts = attempts + 1 WHERE key = ?", [stuck["key"]]
                )
                return self._claimed(conn, stuck["key"])
            row = conn.execute("SELECT state FROM digests WHERE key = ?", [key]).fetchone()
            if row is not None and row["state"] in ("sent", "empty", "sending"):
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
                [key, message_id, state, to_db(now), 1 if pending else 0],
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
        rows = self._db.read(
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
            hits=tuple(stored_hit(row) for row in rows),
            created_at=now,
            attempts=0,
        )

    def pending_digest(self) -> ClaimedDigest | None:
        """The digest left in state ``sending`` (killed or uncertain mid-send), if any."""
        rows = self._db.read(
            "looking for an unfinished digest",
            "SELECT key FROM digests WHERE state = 'sending' ORDER BY created_at, key LIMIT 1",
        )
        if not rows:
            return None
        with self._db.errors(f"reading digest {rows[0]['key']}"):
            return self._claimed(self._db.connection(), rows[0]["key"])

    def finish_digest(self, key: str, *, now: datetime) -> None:
        """The message was accepted (or written): its hits are sent for good."""
        with self._db.write(f"marking digest {key} as sent") as conn:
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
                [to_db(now), key],
            )

    def release_digest(self, key: str, *, now: datetime, error: str) -> None:
        """Sending definitely failed: detach the hits so the next digest carries them."""
        with self._db.write(f"releasing digest {key}") as conn:
            state = self._digest_state(conn, key)
            if state != "sending":
                raise StorageError(
                    f"digest {key} in {self.path} is {state}, not being sent: "
                    "only a claimed digest can be released"
                )
            conn.execute("UPDATE hits SET digest_key = NULL WHERE digest_key = ?", [key])
            conn.execute(
                "UPDATE digests SET state = 'failed', error = ? WHERE key = ?",
                [f"{to_db(now)}: {error}", key],
            )

    def digest_done_for(self, key: str) -> bool:
        """True when a digest with this key was sent, or ran with nothing to send."""
        rows = self._db.read(
            f"reading digest {key}", "SELECT state FROM digests WHERE key = ?", [key]
        )
        return bool(rows) and rows[0]["state"] in ("sent", "empty")

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
            hits=tuple(stored_hit(row) for row in rows),
            created_at=required_time(digest["created_at"]),
            attempts=digest["attempts"],
        )
