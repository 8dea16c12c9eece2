"""The database schema, as the ordered list of migrations that builds it.

    feeds ──< entries >── articles ──< hits >── digests
              (feed_id, entry_key) unique    (article_id, watchlist) unique
                                               hits ──< alert_deliveries
                                               (hit_id, alert, url_key) unique

sqlite-utils' `Migrations` records each applied step in ``_sqlite_migrations``;
`Store` applies the pending ones inside its own write transaction, so two
processes opening a new file at once migrate it once.
"""

from __future__ import annotations

import sqlite_utils
from sqlite_utils.migrations import Migrations

from monitor.stories import clean_url, url_key

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


@MIGRATIONS(name="0003_hit_relevance")
def _hit_relevance(db: sqlite_utils.Database) -> None:
    # How much the article is about the watchlist's topic (0-1), whether it is a passing
    # mention, and why in words. NULL for hits found before relevance existed, until
    # `Store.unscored_hits` / `set_relevance` rescore them from the stored text.
    db.execute("ALTER TABLE hits ADD COLUMN relevance REAL")
    db.execute("ALTER TABLE hits ADD COLUMN in_passing INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE hits ADD COLUMN evidence TEXT")


@MIGRATIONS(name="0004_named_digests")
def _named_digests(db: sqlite_utils.Database) -> None:
    # Several digests (`digests:`), each with its own exactly-once record: a hit goes out
    # once in every digest that includes its watchlist. `digest_hits` says which digest
    # carried which hit; `digest_names.since` is when a digest started: hits found before
    # it (and already handled by the digests that existed then) are not sent again.
    # The digest of a `digest:` block is named "digest"; every existing row is its.
    db.execute("ALTER TABLE digests ADD COLUMN name TEXT NOT NULL DEFAULT 'digest'")
    db.execute("CREATE INDEX digests_name_state ON digests (name, state)")
    db.execute(
        """
        CREATE TABLE digest_hits (
            name TEXT NOT NULL,
            hit_id INTEGER NOT NULL REFERENCES hits (id),
            digest_key TEXT NOT NULL REFERENCES digests (key),
            PRIMARY KEY (name, hit_id)
        )
        """
    )
    db.execute("CREATE INDEX digest_hits_key ON digest_hits (digest_key)")
    db.execute(
        "INSERT INTO digest_hits (name, hit_id, digest_key) "
        "SELECT 'digest', id, digest_key FROM hits WHERE digest_key IS NOT NULL"
    )
    # `registered_at`: when the digest was first seen; its first issue is due at its first
    # scheduled time after that, not at once.
    db.execute(
        """
        CREATE TABLE digest_names (
            name TEXT PRIMARY KEY,
            since TEXT NOT NULL,
            registered_at TEXT NOT NULL
        )
        """
    )
    # The existing digest started before every stored hit: the ones it has not sent are its.
    db.execute("INSERT INTO digest_names (name, since, registered_at) VALUES ('digest', '', '')")


@MIGRATIONS(name="0005_stories")
def _stories(db: sqlite_utils.Database) -> None:
    # One story, once (see monitor.stories). Articles get the story they belong to (the id
    # of its first article: their own id when they are the first) and the MinHash of their
    # text (NULL: not computed yet; empty: too short to compare). A hit is kept once per
    # story and watchlist: the trigger drops, as UNIQUE does, a second hit of a story for
    # a watchlist, whichever copy of the story it names, and from whatever code path.
    # `article_urls` holds every key an article was reached by (its links, its canonical
    # URL, its key before this migration), so any of them finds it without a fetch.
    statements = [
        "ALTER TABLE articles ADD COLUMN story_id INTEGER REFERENCES articles (id)",
        "ALTER TABLE articles ADD COLUMN signature BLOB",
        "UPDATE articles SET story_id = id",
        "CREATE INDEX articles_story ON articles (story_id)",
        """
        CREATE TABLE article_urls (
            url_key TEXT PRIMARY KEY,
            article_id INTEGER NOT NULL REFERENCES articles (id)
        )
        """,
        "CREATE INDEX article_urls_article ON article_urls (article_id)",
        """
        CREATE TRIGGER hits_one_per_story BEFORE INSERT ON hits
        WHEN EXISTS (
            SELECT 1 FROM hits
            JOIN articles ON articles.id = hits.article_id
            WHERE hits.watchlist = NEW.watchlist
              AND articles.story_id = (SELECT story_id FROM articles WHERE id = NEW.article_id)
        )
        BEGIN
            SELECT RAISE(IGNORE);
        END
        """,
    ]
    for statement in statements:
        db.execute(statement)
    _rekey_articles(db)


def _rekey_articles(db: sqlite_utils.Database) -> None:
    """Key existing articles by `monitor.stories.url_key` and show them under a clean URL.

    Articles are taken oldest first; when two existing articles now have the same key,
    both are kept (merging their entries and hits is not safe) and the second keeps its
    old key: a new arrival then matches the first.
    """
    links: dict[int, list[str]] = {}
    for article_id, link in db.execute(
        "SELECT article_id, link FROM entries WHERE link IS NOT NULL ORDER BY id"
    ).fetchall():
        links.setdefault(article_id, []).append(link)
    rows = db.execute("SELECT id, url, url_key FROM articles ORDER BY id").fetchall()
    for article_id, url, old_key in rows:
        keys = [old_key]
        if not old_key.startswith("entry:"):
            addresses = [*links.get(article_id, []), *([url] if url else [])]
            keys = list(dict.fromkeys([*(url_key(address) for address in addresses), old_key]))
        taken = db.execute(
            "SELECT 1 FROM articles WHERE url_key = ? AND id != ?", [keys[0], article_id]
        ).fetchone()
        db.execute(
            "UPDATE articles SET url_key = ?, url = ? WHERE id = ?",
            [old_key if taken else keys[0], clean_url(url) if url else url, article_id],
        )
        for key in keys:
            db.execute(
                "INSERT OR IGNORE INTO article_urls (url_key, article_id) VALUES (?, ?)",
                [key, article_id],
            )


@MIGRATIONS(name="0006_feed_health")
def _feed_health(db: sqlite_utils.Database) -> None:
    # What `health.assess` needs beyond the poll counters: when the current run of
    # failures began, when the current run of 404/410 answers began (a day of them and
    # the feed is gone, polled once a day), and where permanent redirects lead.
    for column in ("failing_since", "gone_since", "moved_to", "moved_since"):
        db.execute(f"ALTER TABLE feeds ADD COLUMN {column} TEXT")
    # A feed failing before this migration: its failures began at the latest at its last poll.
    db.execute("UPDATE feeds SET failing_since = last_poll WHERE error_count > 0")
    # The times new entries arrived, per feed, read by `Store.feed_histories`.
    db.execute("CREATE INDEX entries_feed_first_seen ON entries (feed_id, first_seen)")


@MIGRATIONS(name="0007_search_and_retention")
def _search_and_retention(db: sqlite_utils.Database) -> None:
    statements = [
        # A watchlist whose matching raised on an article: that article is skipped for it,
        # the other watchlists still match, and `monitor status` lists the failures.
        """
        CREATE TABLE watchlist_failures (
            id INTEGER PRIMARY KEY,
            watchlist TEXT NOT NULL,
            article_id INTEGER NOT NULL REFERENCES articles (id),
            url TEXT,
            error TEXT NOT NULL,
            first_at TEXT NOT NULL,
            last_at TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 1,
            UNIQUE (watchlist, article_id)
        )
        """,
        "CREATE INDEX watchlist_failures_last_at ON watchlist_failures (last_at)",
        # Retention (`retention.article_text`) empties the text of old articles and says when.
        "ALTER TABLE articles ADD COLUMN text_dropped_at TEXT",
        # `monitor search`: a full-text index over the stored titles and texts, its content
        # read from `articles` (external content), kept in step by the triggers below.
        # remove_diacritics 2 folds accents the way the matcher does (é, è, ê -> e).
        """
        CREATE VIRTUAL TABLE articles_fts USING fts5(
            title, text, content='articles', content_rowid='id',
            tokenize='unicode61 remove_diacritics 2'
        )
        """,
        """
        CREATE TRIGGER articles_fts_insert AFTER INSERT ON articles BEGIN
            INSERT INTO articles_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
        END
        """,
        """
        CREATE TRIGGER articles_fts_delete AFTER DELETE ON articles BEGIN
            INSERT INTO articles_fts (articles_fts, rowid, title, text)
            VALUES ('delete', old.id, old.title, old.text);
        END
        """,
        """
        CREATE TRIGGER articles_fts_update AFTER UPDATE OF title, text ON articles BEGIN
            INSERT INTO articles_fts (articles_fts, rowid, title, text)
            VALUES ('delete', old.id, old.title, old.text);
            INSERT INTO articles_fts (rowid, title, text) VALUES (new.id, new.title, new.text);
        END
        """,
        "INSERT INTO articles_fts (articles_fts) VALUES ('rebuild')",
    ]
    for statement in statements:
        db.execute(statement)


@MIGRATIONS(name="0008_alert_deliveries")
def _alert_deliveries(db: sqlite_utils.Database) -> None:
    # One row per hit per alert destination, written in the transaction that records the
    # hit, so a crash can never lose an alert. `url_key` and `destination` come from the
    # URL as Apprise masks it: no token or password is stored. `created_at` is when the
    # hit was recorded: retries stop GIVE_UP_AFTER later.
    db.execute(
        """
        CREATE TABLE alert_deliveries (
            id INTEGER PRIMARY KEY,
            hit_id INTEGER NOT NULL REFERENCES hits (id),
            alert TEXT NOT NULL,
            url_key TEXT NOT NULL,
            destination TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'pending'
                CHECK (state IN ('pending', 'sent', 'failed', 'cancelled')),
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt TEXT NOT NULL,
            last_error TEXT,
            created_at TEXT NOT NULL,
            sent_at TEXT,
            finished_at TEXT,
            UNIQUE (hit_id, alert, url_key)
        )
        """
    )
    db.execute("CREATE INDEX alert_deliveries_due ON alert_deliveries (state, next_attempt)")


@MIGRATIONS(name="0009_hit_relevance_model")
def _hit_relevance_model(db: sqlite_utils.Database) -> None:
    # Which version of the relevance model scored the hit (`relevance.MODEL_VERSION`). NULL
    # for hits scored before versions were recorded: like any other version but the current
    # one, the unsent among them are scored again at start (`Store.hits_to_rescore`).
    db.execute("ALTER TABLE hits ADD COLUMN relevance_model TEXT")
