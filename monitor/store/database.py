"""`Store`: typed reads and writes of feeds, articles, hits and digests.

* An *entry* is one item of one feed; `UNIQUE(feed_id, entry_key)` makes a
  re-poll add nothing twice.
* An *article* is deduplicated across feeds by its canonical URL
  (`monitor.stories.url_key`: tracking parameters, AMP variants, http/https and
  trailing slashes do not count), so the same article in two feeds is one article
  with two entry links. Every key an article was reached by is kept in
  ``article_urls``. An entry without a link is its own article, keyed by feed and
  entry key.
* A *story* is a set of articles telling the same story under other URLs, titles or
  outlets (near-duplicate texts, `monitor.stories`): a new article joins the story
  of the most similar recent article (`StoryTracker`), and a story gets at most one
  hit per watchlist (a trigger of migration 0005). A hit lists the other articles of
  its story in `StoredHit.also_in`.
* A *hit* is one watchlist matching one article; a second identical hit is
  ignored, two watchlists give two hits.
* A *digest* row makes delivery exactly-once (see `Store.claim_digest`).
* An *alert delivery* is one new hit to announce to one alert destination,
  written in the transaction that records the hit (see `set_alert_routes`)
  and marked sent, retried or given up by `service.send_alerts`.

Every poll of a feed is written by one call, `record(update)`, in one
transaction: the decision of what changes was made beforehand, with no I/O,
by `schedule.decide_update`. A poll that changes only its feed's row (a 304, an
unchanged body, a failure) may share that transaction with other feeds' polls
ending at the same time (`store.commits`); a poll with new entries has its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import sqlite3
from collections.abc import Collection, Iterator, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlite_utils

from monitor.config.settings import DEFAULT_DIGEST_NAME
from monitor.errors import StorageError
from monitor.health import FeedHealth, FeedHistory, assess, not_polled
from monitor.matching.relevance import MODEL_VERSION
from monitor.models import (
    AlertDestinationStatus,
    AlertFailure,
    AlertRoutes,
    AlertTarget,
    ArticleText,
    ClaimedDigest,
    DueAlert,
    Entry,
    FeedSpec,
    FeedState,
    FeedUpdate,
    HitResult,
    PollCounts,
    StoredArticle,
    StoredHit,
    StoryCopy,
    WatchlistFailures,
)
from monitor.store.commits import GroupCommit
from monitor.store.connections import DEFAULT_BUSY_TIMEOUT, Connections
from monitor.store.rows import (
    article_keys,
    article_text,
    feed_state,
    from_db,
    insert_failure,
    insert_hit,
    lastrowid,
    normalise_url,
    required_time,
    stored_article,
    stored_hit,
    story_copy,
    to_db,
)
from monitor.store.schema import MIGRATIONS
from monitor.store.story_index import StoryTracker

log = logging.getLogger(__name__)

_ARTICLE_PAGE = 200  # rows per query when streaming articles for a backfill
HISTORY_ARRIVALS = 30  # arrivals of new entries per feed from which its usual gap is judged
_RETENTION_BATCH = 500  # articles emptied per write transaction
RESCORE_DAYS = 7  # unsent hits scored by an earlier relevance model this recent are rescored
_ARTICLE_COLUMNS = "articles.*, COALESCE(feeds.title, feeds.url) AS feed"
_ARTICLE_JOINS = "FROM articles JOIN feeds ON feeds.id = articles.first_feed_id"


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


def _recorded_since(conn: sqlite3.Connection, name: str) -> tuple[bool, str]:
    """(recorded, since) of the digest `name`: where its hits start, or for a digest not
    yet recorded, where they would (the last time any digest was made; "" for the first)."""
    row = conn.execute("SELECT since FROM digest_names WHERE name = ?", [name]).fetchone()
    if row is not None:
        return True, str(row["since"])
    latest = conn.execute("SELECT MAX(created_at) FROM digests").fetchone()[0]
    return False, latest or ""


def _unsent(name: str, since: str, watchlists: Collection[str] | None) -> tuple[str, list[Any]]:
    """SQL condition on `hits`: the hits the digest `name` should carry and has not."""
    where = """
        hits.quiet = 0 AND hits.found_at >= ?
        AND NOT EXISTS (
            SELECT 1 FROM digest_hits WHERE digest_hits.name = ? AND digest_hits.hit_id = hits.id
        )
    """
    parameters: list[Any] = [since, name]
    if watchlists is not None:
        where += " AND hits.watchlist IN (SELECT value FROM json_each(?))"
        parameters.append(json.dumps(sorted(watchlists)))
    return where, parameters


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
        self._alert_routes: AlertRoutes = {}
        self._stories = StoryTracker()
        self._db = Connections(self.path, busy_timeout=busy_timeout, read_only=read_only)
        self._feed_polls = GroupCommit(self._db, _save_feed_states, _describe_polls)
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

    def feed_histories(self, *, arrivals: int = HISTORY_ARRIVALS) -> dict[str, FeedHistory]:
        """Per feed URL, the latest `arrivals` distinct times new entries were stored."""
        histories: dict[str, FeedHistory] = {}
        with self._db.errors("reading when new entries arrived"):
            conn = self._db.connection()
            # One indexed query per feed: a window over every entry of every feed costs
            # 20 times more on a large database (bench/bench_health.py).
            for feed in conn.execute("SELECT id, url FROM feeds").fetchall():
                rows = conn.execute(
                    """
                    SELECT DISTINCT first_seen FROM entries WHERE feed_id = ?
                    ORDER BY first_seen DESC LIMIT ?
                    """,
                    [feed["id"], arrivals],
                ).fetchall()
                times = tuple(required_time(row["first_seen"]) for row in reversed(rows))
                histories[feed["url"]] = FeedHistory(new_entry_times=times)
        return histories

    def feed_health(self, now: datetime, specs: Sequence[FeedSpec]) -> list[FeedHealth]:
        """The health of each configured feed, in the order of `specs`, its times in the
        zone of `now` (see `monitor.health`)."""
        states = {state.url: state for state in self.feed_states()}
        histories = self.feed_histories()
        return [
            assess(state, name=spec.name, now=now, history=histories.get(spec.url, FeedHistory()))
            if (state := states.get(spec.url)) is not None
            else not_polled(spec.url, spec.name)
            for spec in specs
        ]

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
        """The article already stored under this URL (seen via another feed, or under
        another spelling of the same URL), if any; None too when retention dropped its
        text, so that its page is read again to match it."""
        key = normalise_url(url)
        rows = self._db.read(
            f"looking up article {url}",
            """
            SELECT * FROM articles WHERE url_key = ? AND text_dropped_at IS NULL
            UNION ALL
            SELECT articles.* FROM article_urls JOIN articles ON articles.id = article_urls.article_id
            WHERE article_urls.url_key = ? AND articles.text_dropped_at IS NULL
            LIMIT 1
            """,
            [key, key],
        )
        return article_text(rows[0]) if rows else None

    def record(self, update: FeedUpdate) -> PollCounts:
        """Write one poll of one feed, in one transaction: its new state and, for a new
        body, its new entries, articles and hits.

        The validators advance together with the entries, so a crash can never
        leave a feed whose ETag says "seen" while its entries are missing.
        """
        if not update.new:
            # Only the feed's row changes (a 304, an unchanged body, a failure): committed
            # with the other polls that end meanwhile, and returned once committed.
            self._feed_polls.submit(update)
            return PollCounts()
        signed = any(item.signature for item in update.new)
        if not signed:
            return self._record(update, signed)
        self._stories.prepare(self._db, update.polled_at)
        with self._stories.lock:
            try:
                counts = self._record(update, signed)
            except BaseException:
                self._stories.rolled_back()
                raise
            self._stories.committed()
        return counts

    def _record(self, update: FeedUpdate, signed: bool) -> PollCounts:
        feed_id = update.feed_id
        with self._db.write(f"saving the {update.outcome.words} poll of feed #{feed_id}") as conn:
            if signed:
                self._stories.sync(conn, update.polled_at)
            counts = self._insert_new(conn, feed_id, update) if update.new else PollCounts()
            _save_feed_states(conn, [update])
        return counts

    def _insert_new(self, conn: sqlite3.Connection, feed_id: int, update: FeedUpdate) -> PollCounts:
        new_entries = new_articles = new_hits = 0
        found_at = to_db(update.polled_at)
        routes = self._alert_routes  # one reading: a reload mid-poll changes the next poll
        for item in update.new:
            entry, article = item.entry, item.article
            keys = article_keys(feed_id, entry, article)
            article_id = _article_by_keys(conn, keys)
            if article_id is None:
                story_id = None
                if item.signature:
                    story_id = self._stories.story_of(conn, item.signature)
                cursor = conn.execute(
                    """
                    INSERT INTO articles (url, url_key, title, text, text_source, note,
                                          language, published, first_seen, first_feed_id,
                                          story_id, signature)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """,
                    [
                        article.url or entry.link,
                        keys[0],
                        article.title,
                        article.text,
                        article.source.value,
                        article.note,
                        article.language,
                        to_db(article.published or entry.published),
                        found_at,
                        feed_id,
                        story_id,
                        item.signature,  # NULL: not signed yet (StoryTracker.prepare does)
                    ],
                )
                article_id = lastrowid(cursor)
                if story_id is None:
                    conn.execute("UPDATE articles SET story_id = id WHERE id = ?", [article_id])
                if item.signature:
                    self._stories.added(article_id, item.signature, found_at or "")
                new_articles += 1
            conn.executemany(
                "INSERT OR IGNORE INTO article_urls (url_key, article_id) VALUES (?, ?)",
                [(key, article_id) for key in keys],
            )
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
                inserted = insert_hit(
                    conn, article_id, hit, found_at, backfilled=False, quiet=False
                )
                new_hits += inserted
                targets = [
                    target
                    for target in routes.get(hit.watchlist, ())
                    if target.passing or not hit.in_passing
                ]
                if inserted and targets:
                    self._queue_alerts(conn, article_id, hit.watchlist, targets, found_at)
            for failure in item.failures:
                insert_failure(conn, article_id, article.url or entry.link, failure, found_at)
        return PollCounts(new_entries=new_entries, new_articles=new_articles, new_hits=new_hits)

    # ------------------------------------------------------------------ alerts

    def set_alert_routes(self, routes: AlertRoutes) -> None:
        """Announce new hits of these watchlists to these destinations from the next
        `record` on (set from the configuration at start and at each reload)."""
        self._alert_routes = dict(routes)

    def _queue_alerts(
        self,
        conn: sqlite3.Connection,
        article_id: int,
        watchlist: str,
        targets: Sequence[AlertTarget],
        found_at: str | None,
    ) -> None:
        # Same transaction as the hit: either both are stored or neither.
        hit_id = conn.execute(
            "SELECT id FROM hits WHERE article_id = ? AND watchlist = ?", [article_id, watchlist]
        ).fetchone()["id"]
        conn.executemany(
            """
            INSERT OR IGNORE INTO alert_deliveries
                (hit_id, alert, url_key, destination, next_attempt, created_at)
            VALUES (?, ?, ?, ?, ?, ?)
            """,
            [
                (hit_id, target.alert, target.url_key, target.destination, found_at, found_at)
                for target in targets
            ],
        )

    def due_alerts(self, now: datetime, *, limit: int = 1000) -> list[DueAlert]:
        """Deliveries waiting to be tried at `now`, the longest waiting first."""
        rows = self._db.read(
            "listing alerts to send",
            f"""
            SELECT {_HIT_COLUMNS}, alert_deliveries.id AS delivery_id, alert_deliveries.alert,
                alert_deliveries.url_key, alert_deliveries.destination,
                alert_deliveries.attempts, alert_deliveries.created_at AS delivery_created
            FROM alert_deliveries
            JOIN hits ON hits.id = alert_deliveries.hit_id
            JOIN articles ON articles.id = hits.article_id
            JOIN feeds ON feeds.id = articles.first_feed_id
            WHERE alert_deliveries.state = 'pending' AND alert_deliveries.next_attempt <= ?
            ORDER BY alert_deliveries.next_attempt, alert_deliveries.id
            LIMIT ?
            """,
            [to_db(now), limit],
        )
        return [
            DueAlert(
                delivery_id=row["delivery_id"],
                hit=stored_hit(row),
                alert=row["alert"],
                url_key=row["url_key"],
                destination=row["destination"],
                attempts=row["attempts"],
                created_at=required_time(row["delivery_created"]),
            )
            for row in rows
        ]

    def alert_sent(self, delivery_id: int, *, now: datetime) -> None:
        """The destination accepted the alert: it is never sent again."""
        with self._db.write(f"marking alert delivery #{delivery_id} as sent") as conn:
            conn.execute(
                """
                UPDATE alert_deliveries SET state = 'sent', sent_at = ?, finished_at = ?,
                    attempts = attempts + 1, last_error = NULL
                WHERE id = ? AND state = 'pending'
                """,
                [to_db(now), to_db(now), delivery_id],
            )

    def alert_failed(
        self, delivery_id: int, *, now: datetime, error: str, retry_at: datetime | None
    ) -> None:
        """An attempt failed: try again at `retry_at`, or give up (state failed) when None."""
        with self._db.write(f"recording a failed alert delivery #{delivery_id}") as conn:
            if retry_at is None:
                conn.execute(
                    """
                    UPDATE alert_deliveries SET state = 'failed', finished_at = ?,
                        attempts = attempts + 1, last_error = ?
                    WHERE id = ? AND state = 'pending'
                    """,
                    [to_db(now), error, delivery_id],
                )
            else:
                conn.execute(
                    """
                    UPDATE alert_deliveries SET next_attempt = ?, attempts = attempts + 1,
                        last_error = ?
                    WHERE id = ? AND state = 'pending'
                    """,
                    [to_db(retry_at), error, delivery_id],
                )

    def alert_cancelled(self, delivery_id: int, *, now: datetime, reason: str) -> None:
        """Never to be sent: its destination left the configuration (the digest still has the hit)."""
        with self._db.write(f"cancelling alert delivery #{delivery_id}") as conn:
            conn.execute(
                """
                UPDATE alert_deliveries SET state = 'cancelled', finished_at = ?, last_error = ?
                WHERE id = ? AND state = 'pending'
                """,
                [to_db(now), reason, delivery_id],
            )

    def failed_alerts(self, since: datetime) -> list[AlertFailure]:
        """Destinations whose alerts were given up on at or after `since`, for the digest's
        health section: how many hits each missed, and the last error."""
        rows = self._db.read(
            "listing failed alerts",
            """
            SELECT alert, url_key, COUNT(*) AS hits, MIN(finished_at) AS since,
                (SELECT destination FROM alert_deliveries AS latest
                 WHERE latest.alert = failed.alert AND latest.url_key = failed.url_key
                   AND latest.state = 'failed' ORDER BY latest.finished_at DESC, latest.id DESC
                 LIMIT 1) AS destination,
                (SELECT last_error FROM alert_deliveries AS latest
                 WHERE latest.alert = failed.alert AND latest.url_key = failed.url_key
                   AND latest.state = 'failed' ORDER BY latest.finished_at DESC, latest.id DESC
                 LIMIT 1) AS last_error
            FROM alert_deliveries AS failed
            WHERE state = 'failed' AND finished_at >= ?
            GROUP BY alert, url_key
            ORDER BY alert, destination
            """,
            [to_db(since)],
        )
        return [
            AlertFailure(
                alert=row["alert"],
                destination=row["destination"],
                hits=row["hits"],
                last_error=row["last_error"] or "",
                since=required_time(row["since"]),
            )
            for row in rows
        ]

    def alert_statuses(self) -> list[AlertDestinationStatus]:
        """Every destination that ever had a delivery: counts by state, last success,
        the latest error and the next try."""
        rows = self._db.read(
            "summarising alert deliveries",
            """
            SELECT alert, url_key,
                (SELECT destination FROM alert_deliveries AS latest
                 WHERE latest.alert = d.alert AND latest.url_key = d.url_key
                 ORDER BY latest.id DESC LIMIT 1) AS destination,
                SUM(state = 'pending') AS pending, SUM(state = 'sent') AS sent,
                SUM(state = 'failed') AS failed, MAX(sent_at) AS last_sent,
                MIN(CASE WHEN state = 'pending' THEN next_attempt END) AS next_attempt,
                (SELECT last_error FROM alert_deliveries AS latest
                 WHERE latest.alert = d.alert AND latest.url_key = d.url_key
                   AND latest.last_error IS NOT NULL AND latest.state IN ('pending', 'failed')
                 ORDER BY COALESCE(latest.finished_at, latest.next_attempt) DESC, latest.id DESC
                 LIMIT 1) AS last_error
            FROM alert_deliveries AS d
            GROUP BY alert, url_key
            ORDER BY alert, destination
            """,
        )
        return [
            AlertDestinationStatus(
                alert=row["alert"],
                url_key=row["url_key"],
                destination=row["destination"],
                pending=row["pending"],
                sent=row["sent"],
                failed=row["failed"],
                last_sent=from_db(row["last_sent"]),
                last_error=row["last_error"],
                next_attempt=from_db(row["next_attempt"]),
            )
            for row in rows
        ]

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
        with self._db.errors("reading the other copies of the hits' stories"):
            return _with_copies(self._db.connection(), [stored_hit(row) for row in rows])

    def articles_since(self, since: datetime | None) -> Iterator[tuple[int, ArticleText, str]]:
        """(article id, text, feed name) of articles first seen at or after `since`, oldest first,
        except those whose text retention dropped (`dropped_text_count` says how many).

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
                if row["text_dropped_at"] is None:  # retention emptied it: nothing to match
                    yield row["id"], article_text(row), row["feed"]
            last_id = rows[-1]["id"]

    def hits_to_rescore(self, *, now: datetime) -> list[tuple[int, str, int]]:
        """(hit id, watchlist, article id) of the hits to score again: every hit stored
        before relevance existed, and the hits a digest may still show (not quiet, in no
        digest yet, found in the last `RESCORE_DAYS` days) that an earlier version of the
        relevance model scored. Hits already sent keep the score they were sent with."""
        rows = self._db.read(
            "listing hits to score again",
            """
            SELECT id, watchlist, article_id FROM hits
            WHERE relevance IS NULL
               OR (relevance_model IS NOT ? AND quiet = 0 AND found_at >= ?
                   AND digest_key IS NULL
                   AND NOT EXISTS (SELECT 1 FROM digest_hits WHERE hit_id = hits.id))
            ORDER BY id
            """,
            [MODEL_VERSION, to_db(now - timedelta(days=RESCORE_DAYS))],
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
                "UPDATE hits SET relevance = ?, in_passing = ?, evidence = ?, relevance_model = ? "
                "WHERE id = ?",
                [
                    (hit.relevance, int(hit.in_passing), hit.evidence, MODEL_VERSION, hit_id)
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

    def dropped_text_count(self, since: datetime | None) -> int:
        """How many articles first seen at or after `since` had their text dropped by retention."""
        rows = self._db.read(
            "counting articles whose text was dropped",
            "SELECT COUNT(*) FROM articles WHERE text_dropped_at IS NOT NULL AND first_seen >= ?",
            [to_db(since) if since is not None else ""],
        )
        return int(rows[0][0])

    # ------------------------------------------------------------------ watchlist failures

    def watchlist_failures(self, *, since: datetime | None = None) -> list[WatchlistFailures]:
        """Per watchlist, the articles its matching raised on (last failure since `since`),
        the latest error and when; most recent first."""
        rows = self._db.read(
            "listing watchlist failures",
            """
            SELECT watchlist, COUNT(*) AS articles, MAX(last_at) AS last_at,
                (SELECT error FROM watchlist_failures AS latest
                 WHERE latest.watchlist = failures.watchlist
                 ORDER BY latest.last_at DESC, latest.id DESC LIMIT 1) AS last_error,
                (SELECT url FROM watchlist_failures AS latest
                 WHERE latest.watchlist = failures.watchlist
                 ORDER BY latest.last_at DESC, latest.id DESC LIMIT 1) AS last_url
            FROM watchlist_failures AS failures
            WHERE last_at >= ?
            GROUP BY watchlist
            ORDER BY MAX(last_at) DESC, watchlist
            """,
            [to_db(since) if since is not None else ""],
        )
        return [
            WatchlistFailures(
                watchlist=row["watchlist"],
                articles=row["articles"],
                last_error=row["last_error"],
                last_url=row["last_url"],
                last_at=required_time(row["last_at"]),
            )
            for row in rows
        ]

    # ------------------------------------------------------------------ retention

    def drop_old_text(self, *, seen_before: datetime, now: datetime) -> int:
        """Empty the text of articles first seen before `seen_before` that no unsent hit
        needs (a hit not yet in a delivered digest, quiet backfills aside); returns how many.

        Titles, URLs, dates and hits (with their snippets) are kept, and `text_dropped_at`
        says when the text went. Done in batches so the write lock is never held long.
        """
        dropped = 0
        while True:
            with self._db.write("dropping the text of old articles") as conn:
                cursor = conn.execute(
                    """
                    UPDATE articles SET text = '', text_dropped_at = ?
                    WHERE id IN (
                        SELECT articles.id FROM articles
                        WHERE articles.first_seen < ? AND articles.text_dropped_at IS NULL
                        AND NOT EXISTS (
                            SELECT 1 FROM hits LEFT JOIN digests ON digests.key = hits.digest_key
                            WHERE hits.article_id = articles.id AND hits.quiet = 0
                            AND (hits.digest_key IS NULL OR digests.state NOT IN ('sent', 'empty'))
                        )
                        LIMIT ?
                    )
                    """,
                    [to_db(now), to_db(seen_before), _RETENTION_BATCH],
                )
                dropped += cursor.rowcount
            if cursor.rowcount < _RETENTION_BATCH:
                return dropped

    def optimize_search_index(self) -> None:
        """Merge the full-text index's segments (after many changes, before a VACUUM)."""
        with self._db.write("optimising the search index") as conn:
            conn.execute("INSERT INTO articles_fts (articles_fts) VALUES ('optimize')")

    # ------------------------------------------------------------------ search

    def search_index_ids(self, match: str) -> list[int]:
        """Ids of the articles whose title or text the FTS5 expression `match` finds."""
        rows = self._db.read(
            "searching the full-text index",
            "SELECT rowid FROM articles_fts WHERE articles_fts MATCH ? ORDER BY rowid",
            [match],
        )
        return [row[0] for row in rows]

    def article_languages(self, *, since: datetime | None) -> list[tuple[int, str | None]]:
        """(id, declared language) of the articles first seen at or after `since`."""
        rows = self._db.read(
            "reading the languages of stored articles",
            "SELECT id, language FROM articles WHERE first_seen >= ? ORDER BY id",
            [to_db(since) if since is not None else ""],
        )
        return [(row["id"], row["language"]) for row in rows]

    def stored_articles(
        self, ids: Collection[int] | None, *, since: datetime | None
    ) -> Iterator[StoredArticle]:
        """The articles with these ids (all of them when None) first seen at or after
        `since`, oldest first, read in pages."""
        since_text = to_db(since) if since is not None else ""
        if ids is None:
            last_id = 0
            while True:
                rows = self._db.read(
                    "reading stored articles",
                    f"""
                    SELECT {_ARTICLE_COLUMNS} {_ARTICLE_JOINS}
                    WHERE articles.id > ? AND articles.first_seen >= ?
                    ORDER BY articles.id LIMIT ?
                    """,
                    [last_id, since_text, _ARTICLE_PAGE],
                )
                if not rows:
                    return
                yield from map(stored_article, rows)
                last_id = rows[-1]["id"]
        wanted = sorted(set(ids))
        for start in range(0, len(wanted), _ARTICLE_PAGE):
            chunk = wanted[start : start + _ARTICLE_PAGE]
            rows = self._db.read(
                "reading stored articles",
                f"""
                SELECT {_ARTICLE_COLUMNS} {_ARTICLE_JOINS}
                WHERE articles.id IN ({", ".join("?" * len(chunk))}) AND articles.first_seen >= ?
                ORDER BY articles.id
                """,
                [*chunk, since_text],
            )
            yield from map(stored_article, rows)

    # ------------------------------------------------------------------ digests

    def claim_digest(
        self,
        key: str,
        *,
        now: datetime,
        name: str = DEFAULT_DIGEST_NAME,
        watchlists: Collection[str] | None = None,
        passed_over: Collection[str] = (),
        allow_empty: bool = False,
    ) -> ClaimedDigest | None:
        """Reserve for the digest `name` the hits of its period `key`.

        Each digest has its own exactly-once record: a hit goes out once in every
        digest whose `watchlists` (None: all) include its watchlist, and only in digests
        that existed when it was found (see `_digest_since`). Returns, in order of
        precedence:

        1. a digest of `name` left in state ``sending`` by a crash or an uncertain send,
           *whatever its key*, unless its key is in `passed_over` (already tried by the
           caller), with its own hits and Message-ID: send it again, then finish or
           release it using ``claimed.key`` and claim again;
        2. None if `key` was already sent or ran empty, or is itself left sending;
        3. a new digest holding every hit of its watchlists it has not carried yet
           (quiet backfills excepted), or None after recording `key` as empty; with
           `allow_empty` (something else to report), a digest without hits instead.
        """
        message_id = _message_id(self.path, key)
        skipped = list(passed_over)
        with self._db.write(f"claiming digest {key}") as conn:
            stuck = conn.execute(
                f"""
                SELECT * FROM digests
                WHERE name = ? AND state = 'sending'
                    AND key NOT IN ({", ".join("?" * len(skipped))})
                ORDER BY created_at, key LIMIT 1
                """,
                [name, *skipped],
            ).fetchone()
            if stuck is not None:
                conn.execute(
                    "UPDATE digests SET attempts = attempts + 1 WHERE key = ?", [stuck["key"]]
                )
                return self._claimed(conn, stuck["key"])
            row = conn.execute("SELECT state FROM digests WHERE key = ?", [key]).fetchone()
            if row is not None and row["state"] in ("sent", "empty", "sending"):
                return None
            since = self._digest_since(conn, name, now)
            where, parameters = _unsent(name, since, watchlists)
            pending = conn.execute(f"SELECT COUNT(*) FROM hits WHERE {where}", parameters)
            count = pending.fetchone()[0]
            state = "sending" if count or allow_empty else "empty"
            # A failed earlier attempt keeps its row (and Message-ID): it was never delivered.
            conn.execute(
                """
                INSERT INTO digests (key, name, message_id, state, created_at, attempts)
                VALUES (?, ?, ?, ?, ?, ?)
                ON CONFLICT (key) DO UPDATE SET state = excluded.state,
                    attempts = attempts + excluded.attempts
                """,
                [key, name, message_id, state, to_db(now), 1 if state == "sending" else 0],
            )
            if state == "empty":
                return None
            conn.execute(
                f"""
                INSERT INTO digest_hits (name, hit_id, digest_key)
                SELECT ?, id, ? FROM hits WHERE {where}
                """,
                [name, key, *parameters],
            )
            # The first digest to carry a hit is also noted on the hit (`monitor hits`).
            conn.execute(
                """
                UPDATE hits SET digest_key = ? WHERE digest_key IS NULL
                    AND id IN (SELECT hit_id FROM digest_hits WHERE digest_key = ?)
                """,
                [key, key],
            )
            return self._claimed(conn, key)

    def _digest_since(self, conn: sqlite3.Connection, name: str, now: datetime) -> str:
        """Where the hits of the digest `name` start, recorded when it is first seen: the
        last time any digest was made. A digest added to the configuration carries the
        hits no digest has looked at yet, not a backlog that others already sent; the
        first digest of a database carries every hit."""
        known, since = _recorded_since(conn, name)
        if known:
            return since
        conn.execute(
            "INSERT INTO digest_names (name, since, registered_at) VALUES (?, ?, ?)",
            [name, since, to_db(now)],
        )
        return since

    def register_digest(self, name: str, *, now: datetime) -> datetime | None:
        """Note that the digest `name` exists from `now`, if it was not known; returns when
        it was first seen (None for the digest that predates this record). The daemon
        calls it before asking whether the digest is due: a new digest's first issue is
        at its first scheduled time after that, not at once."""
        with self._db.write(f"registering digest {name}") as conn:
            self._digest_since(conn, name, now)
            row = conn.execute(
                "SELECT registered_at FROM digest_names WHERE name = ?", [name]
            ).fetchone()
        return from_db(row["registered_at"] or None)

    def digest_registered(self, name: str) -> tuple[bool, datetime | None]:
        """(known, first seen) of the digest `name`, without recording anything."""
        rows = self._db.read(
            f"reading digest {name}",
            "SELECT registered_at FROM digest_names WHERE name = ?",
            [name],
        )
        if not rows:
            return False, None
        return True, from_db(rows[0]["registered_at"] or None)

    def preview_digest(
        self,
        *,
        now: datetime,
        name: str = DEFAULT_DIGEST_NAME,
        watchlists: Collection[str] | None = None,
    ) -> ClaimedDigest | None:
        """What a new digest `name` would hold now (for ``--dry-run``); claims and records
        nothing. A digest left ``sending`` by a crash is not included: it is re-sent as it was.
        """
        with self._db.errors(f"previewing digest {name}"):
            conn = self._db.connection()
            _, since = _recorded_since(conn, name)
            where, parameters = _unsent(name, since, watchlists)
            rows = conn.execute(
                f"SELECT {_HIT_COLUMNS} {_HIT_JOINS} WHERE {where} ORDER BY hits.id", parameters
            ).fetchall()
        if not rows:
            return None
        with self._db.errors("reading the other copies of the hits' stories"):
            hits = _with_copies(self._db.connection(), [stored_hit(row) for row in rows])
        return ClaimedDigest(
            key="preview",
            message_id=_message_id(self.path, "preview"),
            hits=tuple(hits),
            created_at=now,
            attempts=0,
        )

    def pending_digest(self, name: str | None = None) -> ClaimedDigest | None:
        """A digest (of `name`, or any) left in state ``sending`` (killed or uncertain
        mid-send), if any."""
        rows = self._db.read(
            "looking for an unfinished digest",
            """
            SELECT key FROM digests WHERE state = 'sending' AND (? IS NULL OR name = ?)
            ORDER BY created_at, key LIMIT 1
            """,
            [name, name],
        )
        if not rows:
            return None
        with self._db.errors(f"reading digest {rows[0]['key']}"):
            return self._claimed(self._db.connection(), rows[0]["key"])

    def last_digest_done(self, name: str) -> datetime | None:
        """When the digest `name` last ran to the end: sent, or found nothing to send.
        A scheduled period that starts before this is not due any more."""
        rows = self._db.read(
            f"reading the history of digest {name}",
            """
            SELECT MAX(COALESCE(sent_at, created_at)) AS done FROM digests
            WHERE name = ? AND state IN ('sent', 'empty')
            """,
            [name],
        )
        return from_db(rows[0]["done"]) if rows else None

    def last_digest_sent(self, name: str) -> datetime | None:
        """When the digest `name` was last delivered: where its next issue's period starts."""
        rows = self._db.read(
            f"reading the history of digest {name}",
            "SELECT MAX(sent_at) AS sent FROM digests WHERE name = ? AND state = 'sent'",
            [name],
        )
        return from_db(rows[0]["sent"]) if rows else None

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
            conn.execute("DELETE FROM digest_hits WHERE digest_key = ?", [key])
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
            f"""
            SELECT {_HIT_COLUMNS} {_HIT_JOINS}
            JOIN digest_hits ON digest_hits.hit_id = hits.id
            WHERE digest_hits.digest_key = ? ORDER BY hits.id
            """,
            [key],
        ).fetchall()
        return ClaimedDigest(
            key=key,
            message_id=digest["message_id"],
            hits=tuple(_with_copies(conn, [stored_hit(row) for row in rows])),
            created_at=required_time(digest["created_at"]),
            attempts=digest["attempts"],
        )


def _save_feed_states(conn: sqlite3.Connection, updates: Sequence[FeedUpdate]) -> None:
    """The feed rows of polls, inside the caller's transaction."""
    conn.executemany(
        """
        UPDATE feeds SET title = ?, etag = ?, last_modified = ?, body_hash = ?,
            last_poll = ?, last_success = ?, http_status = ?, last_error = ?,
            error_count = ?, next_poll = ?, last_full_fetch = ?
        WHERE id = ?
        """,
        [
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
                update.feed_id,
            ]
            for update in updates
        ],
    )
    conn.executemany(
        """
        UPDATE feeds SET failing_since = ?, gone_since = ?, moved_to = ?, moved_since = ?
        WHERE id = ?
        """,
        [
            [
                to_db(update.failing_since),
                to_db(update.gone_since),
                update.moved_to,
                to_db(update.moved_since),
                update.feed_id,
            ]
            for update in updates
        ],
    )


def _describe_polls(updates: Sequence[FeedUpdate]) -> str:
    if len(updates) == 1:
        return f"saving the {updates[0].outcome.words} poll of feed #{updates[0].feed_id}"
    return f"saving the polls of {len(updates)} feeds"


def _article_by_keys(conn: sqlite3.Connection, keys: Sequence[str]) -> int | None:
    """The id of the article stored under any of `keys`, the first key first."""
    for key in keys:
        row = conn.execute(
            """
            SELECT id FROM articles WHERE url_key = ?
            UNION ALL
            SELECT article_id FROM article_urls WHERE url_key = ?
            LIMIT 1
            """,
            [key, key],
        ).fetchone()
        if row is not None:
            return int(row[0])
    return None


def _with_copies(conn: sqlite3.Connection, hits: Sequence[StoredHit]) -> list[StoredHit]:
    """`hits` with `also_in` filled: the other articles of each hit's story, oldest first."""
    article_ids = sorted({hit.article_id for hit in hits})
    story_of: dict[int, int] = {}
    copies: dict[int, list[tuple[int, StoryCopy]]] = {}
    for start in range(0, len(article_ids), 500):
        chunk = article_ids[start : start + 500]
        rows = conn.execute(
            f"""
            SELECT articles.id, articles.story_id, articles.url, articles.title,
                   COALESCE(feeds.title, feeds.url) AS feed
            FROM articles JOIN feeds ON feeds.id = articles.first_feed_id
            WHERE articles.story_id IN (
                SELECT story_id FROM articles WHERE id IN ({", ".join("?" * len(chunk))})
            )
            ORDER BY articles.first_seen, articles.id
            """,
            chunk,
        ).fetchall()
        for row in rows:
            story_of[row["id"]] = row["story_id"]
            members = copies.setdefault(row["story_id"], [])
            if all(member_id != row["id"] for member_id, _ in members):
                members.append((row["id"], story_copy(row)))
    return [
        replace(
            hit,
            also_in=tuple(
                copy
                for member_id, copy in copies.get(story_of.get(hit.article_id, -1), [])
                if member_id != hit.article_id
            ),
        )
        for hit in hits
    ]
