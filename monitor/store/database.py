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

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import sqlite_utils

from monitor.errors import StorageError
from monitor.health import FeedHealth, FeedHistory, assess, not_polled
from monitor.matching.relevance import MODEL_VERSION
from monitor.models import (
    AlertRoutes,
    ArticleText,
    Entry,
    FeedSpec,
    FeedState,
    FeedUpdate,
    HitResult,
    PollCounts,
    StoredArticle,
    StoredHit,
    WatchlistFailures,
)
from monitor.store.alerts import AlertRecords
from monitor.store.commits import GroupCommit
from monitor.store.connections import DEFAULT_BUSY_TIMEOUT, Connections
from monitor.store.digests import DigestRecords
from monitor.store.rows import (
    HIT_COLUMNS,
    HIT_JOINS,
    article_keys,
    article_text,
    feed_state,
    insert_failure,
    insert_hit,
    lastrowid,
    normalise_url,
    required_time,
    stored_article,
    stored_hit,
    to_db,
    with_copies,
)
from monitor.store.schema import MIGRATIONS
from monitor.store.story_index import StoryTracker

_ARTICLE_PAGE = 200  # rows per query when streaming articles for a backfill
HISTORY_ARRIVALS = 30  # arrivals of new entries per feed from which its usual gap is judged
_RETENTION_BATCH = 500  # articles emptied per write transaction
RESCORE_DAYS = 7  # unsent hits scored by an earlier relevance model this recent are rescored
_ARTICLE_COLUMNS = "articles.*, COALESCE(feeds.title, feeds.url) AS feed"
_ARTICLE_JOINS = "FROM articles JOIN feeds ON feeds.id = articles.first_feed_id"


_FEED_COLUMNS = """
    feeds.*, (SELECT COUNT(*) FROM entries WHERE entries.feed_id = feeds.id) AS entry_count
"""


class Store(AlertRecords, DigestRecords):
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
            f"SELECT {HIT_COLUMNS} {HIT_JOINS} {where} ORDER BY hits.found_at DESC, hits.id DESC",
            parameters,
        )
        with self._db.errors("reading the other copies of the hits' stories"):
            return with_copies(self._db.connection(), [stored_hit(row) for row in rows])

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
