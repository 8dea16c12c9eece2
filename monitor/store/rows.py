"""Between Python values and SQLite rows: times, URLs as article identities, and
the mapping of rows to the types in `monitor.models`.

Times are stored as UTC ISO 8601 text with microseconds, so text order is
time order; a naive datetime is refused rather than guessed.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

from monitor.errors import StorageError
from monitor.matching.relevance import MODEL_VERSION
from monitor.models import (
    ArticleText,
    Entry,
    FeedState,
    HitResult,
    MatchFailure,
    StoredArticle,
    StoredHit,
    StoryCopy,
    TextSource,
    Validators,
)
from monitor.stories import url_key


def normalise_url(url: str) -> str:
    """The identity of an article URL across feeds: `monitor.stories.url_key`."""
    return url_key(url)


def to_db(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: the store only accepts aware datetimes")
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def from_db(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text)


def required_time(text: str) -> datetime:
    return datetime.fromisoformat(text)


def article_keys(feed_id: int, entry: Entry, article: ArticleText) -> list[str]:
    """Every key the article is known by, its own first: its URL (canonical) and the
    entry's link; an entry without a link is its own article, keyed by feed and entry."""
    addresses = [address for address in (article.url, entry.link) if address]
    if not addresses:
        return [f"entry:{feed_id}:{entry.key}"]
    return list(dict.fromkeys(url_key(address) for address in addresses))


def lastrowid(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:  # pragma: no cover - INSERT always sets it
        raise StorageError("SQLite did not report the id of an inserted row")
    return cursor.lastrowid


def insert_hit(
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
                                    backfilled, quiet, relevance, in_passing, evidence,
                                    relevance_model)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
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
            hit.relevance,
            int(hit.in_passing),
            hit.evidence,
            MODEL_VERSION,
        ],
    )
    return cursor.rowcount


def insert_failure(
    conn: sqlite3.Connection,
    article_id: int,
    url: str | None,
    failure: MatchFailure,
    at: str | None,
) -> None:
    """Record that a watchlist's matching raised on an article (counted when it happens again)."""
    conn.execute(
        """
        INSERT INTO watchlist_failures (watchlist, article_id, url, error, first_at, last_at)
        VALUES (?, ?, ?, ?, ?, ?)
        ON CONFLICT (watchlist, article_id) DO UPDATE SET error = excluded.error,
            last_at = excluded.last_at, count = count + 1
        """,
        [failure.watchlist, article_id, url, failure.error, at, at],
    )


def feed_state(row: sqlite3.Row) -> FeedState:
    return FeedState(
        feed_id=row["id"],
        url=row["url"],
        title=row["title"],
        validators=Validators(etag=row["etag"], last_modified=row["last_modified"]),
        body_hash=row["body_hash"],
        last_poll=from_db(row["last_poll"]),
        last_success=from_db(row["last_success"]),
        http_status=row["http_status"],
        entries=row["entry_count"],
        last_error=row["last_error"],
        error_count=row["error_count"],
        next_poll=from_db(row["next_poll"]),
        last_full_fetch=from_db(row["last_full_fetch"]),
        failing_since=from_db(row["failing_since"]),
        gone_since=from_db(row["gone_since"]),
        moved_to=row["moved_to"],
        moved_since=from_db(row["moved_since"]),
    )


def article_text(row: sqlite3.Row) -> ArticleText:
    return ArticleText(
        url=row["url"],
        title=row["title"],
        text=row["text"],
        source=TextSource(row["text_source"]),
        note=row["note"],
        language=row["language"],
        published=from_db(row["published"]),
    )


def stored_article(row: sqlite3.Row) -> StoredArticle:
    """An article row joined with its first feed's name as ``feed``."""
    return StoredArticle(
        article_id=row["id"],
        article=article_text(row),
        feed=row["feed"],
        first_seen=required_time(row["first_seen"]),
        text_dropped_at=from_db(row["text_dropped_at"]),
    )


def story_copy(row: sqlite3.Row) -> StoryCopy:
    return StoryCopy(feed=row["feed"], url=row["url"], title=row["title"])


def stored_hit(row: sqlite3.Row) -> StoredHit:
    return StoredHit(
        hit_id=row["hit_id"],
        watchlist=row["watchlist"],
        article_id=row["article_id"],
        title=row["title"],
        url=row["url"],
        feed=row["feed"],
        published=from_db(row["published"]),
        found_at=required_time(row["found_at"]),
        matched=tuple(json.loads(row["matched"])),
        snippets=tuple(json.loads(row["snippets"])),
        backfilled=bool(row["backfilled"]),
        relevance=row["relevance"],
        in_passing=bool(row["in_passing"]),
        evidence=row["evidence"],
    )


HIT_COLUMNS = """
    hits.id AS hit_id, hits.watchlist, hits.article_id, hits.matched, hits.snippets,
    hits.found_at, hits.backfilled, hits.relevance, hits.in_passing, hits.evidence,
    articles.title, articles.url, articles.published,
    COALESCE(feeds.title, feeds.url) AS feed
"""
HIT_JOINS = """
    FROM hits
    JOIN articles ON articles.id = hits.article_id
    JOIN feeds ON feeds.id = articles.first_feed_id
"""


def with_copies(conn: sqlite3.Connection, hits: Sequence[StoredHit]) -> list[StoredHit]:
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
