"""The index of recent story signatures, kept in step with the database.

`Store.record` asks it which story a new article belongs to. It holds the
signatures of the articles first seen in the last `STORY_WINDOW` in a
`monitor.stories.StoryIndex`, loaded from the ``articles.signature`` column on the
first poll that brings new articles (signing, once, the recent articles stored
before signatures existed), then kept current inside each write transaction: what
other processes stored since is read first, what this one stores is added, and
taken out again if the transaction does not commit.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timedelta

from monitor.store.connections import Connections
from monitor.store.rows import to_db
from monitor.stories import StoryIndex, signature

STORY_WINDOW = timedelta(days=30)  # a copy older than this is a new story again
_EVICT_EVERY = timedelta(hours=1)
_SIGN_BATCH = 200
STORY_CANDIDATES = 8  # matches read at a time by `story_of`


class StoryTracker:
    """The store's story index. Every method but `prepare` runs inside a write
    transaction of the store, with `lock` held."""

    def __init__(self, window: timedelta = STORY_WINDOW) -> None:
        self.window = window
        self.lock = threading.RLock()
        self.index: StoryIndex | None = None
        self._last_id = 0  # every article up to this id has been seen
        self._first_seen: dict[int, str] = {}
        self._pending: list[int] = []  # added by the transaction in progress
        self._evicted_at: datetime | None = None

    def prepare(self, db: Connections, now: datetime) -> None:
        """Load the index, once, outside any transaction: sign the recent articles stored
        without a signature, in short batches, then read every recent signature."""
        with self.lock:
            if self.index is not None:
                return
            cutoff = to_db(now - self.window)
            while True:
                rows = db.read(
                    "reading articles to sign for story detection",
                    """
                    SELECT id, text FROM articles
                    WHERE signature IS NULL AND first_seen >= ? ORDER BY id LIMIT ?
                    """,
                    [cutoff, _SIGN_BATCH],
                )
                if not rows:
                    break
                signed = [(signature(row["text"]) or b"", row["id"]) for row in rows]
                with db.write("saving story signatures") as conn:
                    conn.executemany(
                        "UPDATE articles SET signature = ? WHERE id = ? AND signature IS NULL",
                        signed,
                    )
            index = StoryIndex()
            last = db.read("reading the last article id", "SELECT MAX(id) FROM articles")
            rows = db.read(
                "loading story signatures",
                """
                SELECT id, first_seen, signature FROM articles
                WHERE first_seen >= ? AND length(signature) > 0
                """,
                [cutoff],
            )
            index.add_all((row["id"], row["signature"]) for row in rows)
            self._first_seen.update((row["id"], row["first_seen"]) for row in rows)
            self._last_id = last[0][0] or 0
            self.index = index
            self._evicted_at = now

    def sync(self, conn: sqlite3.Connection, now: datetime) -> None:
        """Add what other processes stored since; drop what left the window."""
        index = self._index()
        rows = conn.execute(
            "SELECT id, first_seen, signature FROM articles WHERE id > ? ORDER BY id",
            [self._last_id],
        ).fetchall()
        for row in rows:
            if row["signature"]:
                index.add(row["id"], row["signature"])
                self._first_seen[row["id"]] = row["first_seen"]
            self._last_id = row["id"]
        self._pending = []
        if self._evicted_at is None or now - self._evicted_at >= _EVICT_EVERY:
            cutoff = to_db(now - self.window) or ""
            for article_id, first_seen in list(self._first_seen.items()):
                if first_seen < cutoff:
                    index.remove(article_id)
                    del self._first_seen[article_id]
            self._evicted_at = now

    def story_of(self, conn: sqlite3.Connection, stored: bytes) -> int | None:
        """The story of the most similar indexed article, if one tells the same story."""
        index = self._index()
        # A few at a time: the most similar is nearly always still stored, and a story
        # can gather thousands of articles. Those deleted meanwhile leave the index, so
        # the next few are others.
        while matches := index.same_story(stored, limit=STORY_CANDIDATES):
            for match in matches:
                row = conn.execute(
                    "SELECT COALESCE(story_id, id) FROM articles WHERE id = ?", [match.article_id]
                ).fetchone()
                if row is not None:
                    return int(row[0])
                index.remove(match.article_id)  # deleted meanwhile
                self._first_seen.pop(match.article_id, None)
        return None

    def added(self, article_id: int, stored: bytes, first_seen: str) -> None:
        self._index().add(article_id, stored)
        self._first_seen[article_id] = first_seen
        self._pending.append(article_id)

    def committed(self) -> None:
        if self._pending:
            self._last_id = max(self._last_id, *self._pending)
        self._pending = []

    def rolled_back(self) -> None:
        """The transaction failed: its articles do not exist, and their ids will be reused."""
        if self.index is not None:
            for article_id in self._pending:
                self.index.remove(article_id)
                self._first_seen.pop(article_id, None)
        self._pending = []

    def _index(self) -> StoryIndex:
        if self.index is None:  # pragma: no cover - prepare() always runs first
            raise RuntimeError("the story index is used before it was loaded")
        return self.index
