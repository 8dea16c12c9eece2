"""The store against real SQLite files: dedup, transactions, locking, exactly-once digests."""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlite_utils

from monitor.errors import StorageError
from monitor.models import (
    ArticleText,
    ClaimedDigest,
    Entry,
    FeedSpec,
    Fetched,
    FetchErrorKind,
    FetchFailed,
    HitResult,
    MatchedClause,
    NewArticle,
    NewBody,
    NotModified,
    PollCounts,
    PollResult,
    TextSource,
    Validators,
)
from monitor.schedule import decide_update
from monitor.store import MIGRATIONS, Store, normalise_url

NOW = datetime(2026, 11, 28, 6, 0, tzinfo=UTC)
FEED_A = "https://a.example/feed.xml"
FEED_B = "https://b.example/rss"
NO_VALIDATORS = Validators()


def entry(key: str, link: str | None = None, title: str = "Titre") -> Entry:
    return Entry(
        key=key,
        link=link,
        title=title,
        summary="",
        content="",
        published=datetime(2026, 11, 27, 12, 0, tzinfo=UTC),
    )


def article(url: str | None, title: str = "Titre", text: str = "Le texte.") -> ArticleText:
    return ArticleText(
        url=url, title=title, text=text, source=TextSource.PAGE, language="fr", published=None
    )


def hit(watchlist: str, *terms: str) -> HitResult:
    return HitResult(
        watchlist=watchlist,
        matched=terms,
        clauses=tuple(MatchedClause(clause=term, words=(term,), field="text") for term in terms),
        snippets=(f"… l’[[{terms[0]}]] signé …",),
    )


def new(key: str, link: str | None, *hits: HitResult, title: str = "Titre") -> NewArticle:
    return NewArticle(entry=entry(key, link, title), article=article(link, title), hits=hits)


def record(store: Store, feed_url: str, result: PollResult, now: datetime = NOW) -> PollCounts:
    """One poll the way the pipeline writes it: the decider's update, then `Store.record`."""
    update = decide_update(store.feed_state(feed_url), FeedSpec(url=feed_url), result, now)
    return store.record(update)


def new_body(
    feed_url: str,
    items: list[NewArticle],
    *,
    validators: Validators = NO_VALIDATORS,
    body_hash: str = "hash",
    feed_title: str | None = None,
) -> NewBody:
    fetched = Fetched(url=feed_url, status=200, headers={}, content=b"", validators=validators)
    return NewBody(
        fetched=fetched,
        body_hash=body_hash,
        feed_title=feed_title,
        entries=len(items),
        new=tuple(items),
    )


def failed(feed_url: str, message: str = "x", status: int | None = None) -> FetchFailed:
    kind = FetchErrorKind.HTTP_STATUS if status is not None else FetchErrorKind.CONNECTION
    return FetchFailed(url=feed_url, kind=kind, message=message, status=status)


def poll(store: Store, feed_url: str, items: list[NewArticle], now: datetime = NOW) -> int:
    """Save one successful poll with new validators; returns the number of new hits."""
    counts = record(
        store,
        feed_url,
        new_body(
            feed_url,
            items,
            validators=Validators(etag='"v2"', last_modified="Sat, 28 Nov 2026 05:00:00 GMT"),
            body_hash="hash-2",
            feed_title="Feed title",
        ),
        now,
    )
    return counts.new_hits


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "monitor.db")


# --------------------------------------------------------------------------- schema


def test_migrations_create_the_schema_and_reopening_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "monitor.db"
    with Store(path) as first:
        poll(first, FEED_A, [new("e1", "https://x.example/1", hit("accord", "accord"))])
    with Store(path) as second:
        assert len(second.hits()) == 1
    conn = sqlite3.connect(path)
    assert MIGRATIONS.pending(sqlite_utils.Database(conn)) == []
    applied = conn.execute("SELECT name FROM _sqlite_migrations").fetchall()
    # Each once, although the file was opened twice.
    assert applied == [
        ("0001_initial_schema",),
        ("0002_feed_last_full_fetch",),
        ("0003_hit_relevance",),
        ("0004_named_digests",),
        ("0005_stories",),
        ("0006_feed_health",),
        ("0007_search_and_retention",),
        ("0008_alert_deliveries",),
        ("0009_hit_relevance_model",),
    ]
    assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"feeds", "articles", "entries", "hits", "digests"} <= tables
    assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    conn.close()


def test_processes_opening_a_new_file_at_once_migrate_it_once(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            Store(path).close()
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT COUNT(*) FROM _sqlite_migrations").fetchone() == (
        len(MIGRATIONS.pending(sqlite_utils.Database(memory=True))),
    )
    conn.close()


def test_connections_enforce_foreign_keys(store: Store) -> None:
    with pytest.raises(StorageError, match="FOREIGN KEY"):
        store.add_backfill_hits("accord", [(999, hit("accord", "accord"))], now=NOW, quiet=False)


# --------------------------------------------------------------------------- polls


def test_feed_state_is_created_once_and_starts_empty(store: Store) -> None:
    first = store.feed_state(FEED_A)
    again = store.feed_state(FEED_A)
    assert first == again
    assert first.url == FEED_A
    assert first.validators == Validators()
    assert (first.entries, first.error_count, first.last_poll) == (0, 0, None)
    assert [state.url for state in store.feed_states()] == [FEED_A]


def test_polling_the_same_entries_twice_adds_nothing(store: Store) -> None:
    items = [
        new("e1", "https://x.example/1", hit("accord", "accord")),
        new("e2", "https://x.example/2"),
    ]
    assert poll(store, FEED_A, items) == 1
    state = store.feed_state(FEED_A)
    assert store.unseen_entries(state.feed_id, [item.entry for item in items]) == []
    again = record(
        store,
        FEED_A,
        new_body(FEED_A, items, validators=Validators(etag='"v3"'), body_hash="hash-3"),
        NOW + timedelta(minutes=15),
    )
    assert (again.new_entries, again.new_articles, again.new_hits) == (0, 0, 0)
    state = store.feed_state(FEED_A)
    assert state.entries == 2
    assert state.title == "Feed title"  # a poll without a title keeps the known one
    assert len(store.hits()) == 1


def test_unseen_entries_keeps_order_and_handles_large_feeds(store: Store) -> None:
    poll(store, FEED_A, [new("e500", "https://x.example/500")])
    feed_id = store.feed_state(FEED_A).feed_id
    entries = [entry(f"e{number}", f"https://x.example/{number}") for number in range(1200)]
    unseen = store.unseen_entries(feed_id, entries)
    assert [item.key for item in unseen] == [f"e{n}" for n in range(1200) if n != 500]


def test_two_watchlists_on_one_article_give_two_hits(store: Store) -> None:
    items = [new("e1", "https://x.example/1", hit("accord", "accord"), hit("défense", "armée"))]
    assert poll(store, FEED_A, items) == 2
    hits = store.hits()
    assert sorted(h.watchlist for h in hits) == ["accord", "défense"]
    assert len({h.article_id for h in hits}) == 1
    assert store.hits(watchlist="défense")[0].matched == ("armée",)
    assert store.hits(watchlist="défense")[0].snippets == ("… l’[[armée]] signé …",)


def test_same_url_in_two_feeds_is_one_article_with_two_entries(store: Store) -> None:
    first = poll(store, FEED_A, [new("a-1", "https://News.Example/story?id=7#top", hit("w", "x"))])
    assert first == 1
    # Feed B links the same story with tracking parameters and different casing.
    link_b = "HTTPS://news.example:443/story?utm_source=rss&id=7&utm_medium=feed"
    assert store.known_article(link_b) is not None
    outcome = record(
        store, FEED_B, new_body(FEED_B, [new("b-1", link_b, hit("w", "x"))], feed_title="B")
    )
    assert (outcome.new_entries, outcome.new_articles, outcome.new_hits) == (1, 0, 0)
    assert store.feed_state(FEED_A).entries == 1
    assert store.feed_state(FEED_B).entries == 1
    hits = store.hits()
    assert len(hits) == 1
    assert hits[0].feed == "Feed title"  # the feed that saw the article first


def test_entries_without_link_are_distinct_articles_per_feed(store: Store) -> None:
    poll(store, FEED_A, [new("same-guid", None, hit("w", "x"))])
    poll(store, FEED_B, [new("same-guid", None, hit("w", "x"))])
    assert len(store.hits()) == 2


def test_normalise_url() -> None:
    # The identity of an article URL (tests/test_stories.py has the full table).
    assert normalise_url("HTTP://Example.COM:80#frag") == "//example.com/"
    assert normalise_url("https://e.fr/A?b=1&utm_campaign=x&a=2") == "//e.fr/A?a=2&b=1"
    assert normalise_url("https://e.fr:8443/p") == "//e.fr:8443/p"
    assert normalise_url("https://[::1]:99999/") == "https://[::1]:99999/"  # invalid port: kept


def test_known_article_returns_the_stored_text(store: Store) -> None:
    assert store.known_article("https://x.example/1") is None
    poll(store, FEED_A, [new("e1", "https://x.example/1", title="L’accord")])
    known = store.known_article("https://x.example/1")
    assert known is not None
    assert (known.title, known.text, known.source, known.language) == (
        "L’accord",
        "Le texte.",
        TextSource.PAGE,
        "fr",
    )
    assert known.published == datetime(2026, 11, 27, 12, 0, tzinfo=UTC)  # from the entry


def test_failure_keeps_validators_and_counts_errors(store: Store) -> None:
    poll(store, FEED_A, [new("e1", "https://x.example/1")])
    for attempt in (1, 2):
        record(
            store,
            FEED_A,
            failed(FEED_A, "https://a.example/feed.xml: HTTP 503", status=503),
            NOW + timedelta(hours=attempt),
        )
    state = store.feed_state(FEED_A)
    assert state.validators == Validators(
        etag='"v2"', last_modified="Sat, 28 Nov 2026 05:00:00 GMT"
    )
    assert state.body_hash == "hash-2"
    assert (state.error_count, state.http_status, state.entries) == (2, 503, 1)
    assert state.last_error == "https://a.example/feed.xml: HTTP 503"
    assert state.last_success == NOW
    assert state.last_poll == NOW + timedelta(hours=2)
    record(
        store,
        FEED_A,
        NotModified(url=FEED_A, validators=Validators(etag='"v2"')),
        NOW + timedelta(hours=3),
    )
    state = store.feed_state(FEED_A)
    assert (state.error_count, state.last_error, state.http_status) == (0, None, 304)
    assert state.validators.last_modified == "Sat, 28 Nov 2026 05:00:00 GMT"  # kept
    assert state.last_success == NOW + timedelta(hours=3)


def test_a_failed_transaction_leaves_nothing_behind(store: Store) -> None:
    items = [new("e1", "https://x.example/1", hit("w", "x")), new("e2", "https://x.example/2")]
    naive = NewArticle(
        entry=Entry("e3", "https://x.example/3", "t", "", "", datetime(2026, 1, 1)),
        article=article("https://x.example/3"),
        hits=(),
    )
    with pytest.raises(ValueError, match="naive datetime"):
        record(
            store,
            FEED_A,
            new_body(
                FEED_A,
                [*items, naive],
                validators=Validators(etag='"new"'),
                body_hash="h",
                feed_title="T",
            ),
        )
    state = store.feed_state(FEED_A)
    assert (state.entries, state.validators, state.body_hash) == (0, Validators(), None)
    assert store.hits() == []


# --------------------------------------------------------------------------- hits and backfill


def test_hits_are_newest_first_and_filtered_by_time(store: Store) -> None:
    poll(store, FEED_A, [new("e1", "https://x.example/1", hit("w", "a"))], now=NOW)
    later = NOW + timedelta(days=1)
    poll(store, FEED_A, [new("e2", "https://x.example/2", hit("w", "b"))], now=later)
    assert [h.matched for h in store.hits()] == [("b",), ("a",)]
    assert [h.matched for h in store.hits(since=later)] == [("b",)]
    assert store.hits(watchlist="other") == []


def test_backfill_reads_articles_in_pages_and_adds_only_new_hits(store: Store) -> None:
    items = [new(f"e{n}", f"https://x.example/{n}") for n in range(450)]
    items[0] = new("e0", "https://x.example/0", hit("w", "x"))
    poll(store, FEED_A, items)
    seen = list(store.articles_since(None))
    assert len(seen) == 450
    assert len({article_id for article_id, _, _ in seen}) == 450
    assert seen[0][1].url == "https://x.example/0"
    assert seen[0][2] == "Feed title"
    assert list(store.articles_since(NOW + timedelta(seconds=1))) == []
    found = [(article_id, hit("w", "x")) for article_id, _, _ in seen[:3]]
    assert store.add_backfill_hits("w", found, now=NOW, quiet=False) == 2  # first one existed
    assert store.add_backfill_hits("w", found, now=NOW, quiet=False) == 0
    flags = sorted(h.backfilled for h in store.hits())
    assert flags == [False, True, True]
    with pytest.raises(ValueError, match="watchlist"):
        store.add_backfill_hits("other", found, now=NOW, quiet=False)


# --------------------------------------------------------------------------- locking


def _hold_write_lock(path: Path, locked: threading.Event, release: threading.Event) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE feeds SET title = title")
    locked.set()
    release.wait(10)
    conn.execute("COMMIT")
    conn.close()


def test_concurrent_writers_wait_for_the_lock_instead_of_failing(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    store = Store(path, busy_timeout=20)
    feeds = [store.feed_state(f"https://f{n}.example/feed").url for n in range(2)]
    # Each writer reads before it writes, the pattern that fails at once under plain BEGIN.
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, locked, release))
    holder.start()
    assert locked.wait(10)
    errors: list[BaseException] = []
    started = threading.Barrier(3)

    def writer(number: int) -> None:
        started.wait()
        try:
            for round_ in range(5):
                item = new(f"{number}-{round_}", f"https://x.example/{number}/{round_}")
                record(store, feeds[number], new_body(feeds[number], [item]))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    started.wait()
    release.set()  # the writers are queued on the lock (or about to be): let them in
    for thread in [*threads, holder]:
        thread.join(30)
    assert errors == []
    assert [state.entries for state in store.feed_states()] == [5, 5]
    store.close()


# Each write, given the URL of a feed that already has its row.
WRITES: dict[str, Callable[[Store, str], object]] = {
    "feed_state": lambda store, _: store.feed_state("https://new.example/feed"),
    "record_new_body": lambda store, url: record(
        store, url, new_body(url, [new("e1", "https://x.example/1", hit("w", "x"))])
    ),
    "record_not_modified": lambda store, url: record(store, url, NotModified(url=url)),
    "record_failure": lambda store, url: record(store, url, failed(url)),
    "add_backfill_hits": lambda store, _: store.add_backfill_hits(
        "w", [(1, hit("w", "x"))], now=NOW, quiet=False
    ),
    "claim_digest": lambda store, _: store.claim_digest("2026-11-28", now=NOW),
    "finish_digest": lambda store, _: store.finish_digest("2026-11-28", now=NOW),
    "release_digest": lambda store, _: store.release_digest("2026-11-28", now=NOW, error="x"),
}


@pytest.mark.parametrize("operation", sorted(WRITES))
def test_lock_held_beyond_the_timeout_is_a_storage_error(tmp_path: Path, operation: str) -> None:
    path = tmp_path / "monitor.db"
    store = Store(path, busy_timeout=0.05)
    store.feed_state(FEED_A)
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, locked, release))
    holder.start()
    assert locked.wait(10)
    try:
        with pytest.raises(StorageError) as raised:
            WRITES[operation](store, FEED_A)
        message = str(raised.value)
        assert str(path) in message
        assert "another process held a write lock for more than 0.05 s" in message
        assert isinstance(raised.value.__cause__, sqlite3.OperationalError)
        # Reads go on: WAL readers never wait for the writer.
        assert [state.url for state in store.feed_states()] == [FEED_A]
    finally:
        release.set()
        holder.join(10)
    # Once the lock is gone the same store works again: nothing was left half-open.
    record(store, FEED_A, failed(FEED_A))
    assert store.feed_state(FEED_A).error_count == 1
    store.close()


def test_errors_name_the_operation(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    store = Store(path, busy_timeout=0.05)
    feed_id = store.feed_state(FEED_A).feed_id
    locked, release = threading.Event(), threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, locked, release))
    holder.start()
    assert locked.wait(10)
    try:
        with pytest.raises(StorageError, match=f"saving the failed poll of feed #{feed_id} failed"):
            WRITES["record_failure"](store, FEED_A)
    finally:
        release.set()
        holder.join(10)
    store.close()


def test_disk_full_rolls_back_and_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    with Store(path) as store:
        store.feed_state(FEED_A)
    # SQLite's page limit is the deterministic way to get SQLITE_FULL (a full disk).
    conn = sqlite3.connect(path)
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.close()
    store = Store(path)
    limited = store._db.connection()  # max_page_count is per connection: this thread's one
    limited.execute(f"PRAGMA max_page_count = {pages + 2}")
    big = [new(f"e{n}", f"https://x.example/{n}", hit("w", "x")) for n in range(200)]
    with pytest.raises(StorageError, match="free some disk space"):
        record(store, FEED_A, new_body(FEED_A, big, validators=Validators(etag='"new"')))
    state = store.feed_state(FEED_A)
    assert (state.entries, state.validators) == (0, Validators())
    assert store.hits() == []
    assert limited.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    store.close()


def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    store = Store(tmp_path / "monitor.db")
    store.close()
    with pytest.raises(StorageError, match="closed"):
        store.feed_states()


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageError, match="is not a database"):
        Store(path)


# --------------------------------------------------------------------------- digests


def _two_hits(store: Store) -> None:
    poll(store, FEED_A, [new("e1", "https://x.example/1", hit("a", "x"), hit("b", "y"))])


def test_claim_then_finish_sends_each_hit_once(store: Store) -> None:
    _two_hits(store)
    claimed = store.claim_digest("2026-11-28", now=NOW)
    assert isinstance(claimed, ClaimedDigest)
    assert len(claimed.hits) == 2
    assert claimed.message_id.startswith("<digest-2026-11-28-")
    assert claimed.message_id.endswith("@monitor.local>")
    assert claimed.attempts == 1
    assert store.digest_done_for("2026-11-28") is False
    store.finish_digest("2026-11-28", now=NOW)
    store.finish_digest("2026-11-28", now=NOW)  # idempotent
    assert store.digest_done_for("2026-11-28") is True
    assert store.claim_digest("2026-11-28", now=NOW) is None
    # New hits after the digest go in the next one, the sent ones never again.
    poll(store, FEED_A, [new("e2", "https://x.example/2", hit("a", "z"))])
    following = store.claim_digest("2026-11-29", now=NOW)
    assert following is not None
    assert [h.matched for h in following.hits] == [("z",)]


def test_a_run_without_hits_records_an_empty_digest(store: Store) -> None:
    assert store.claim_digest("2026-11-28", now=NOW) is None
    assert store.digest_done_for("2026-11-28") is True
    # Hits arriving later that day wait for the next day's digest.
    _two_hits(store)
    assert store.claim_digest("2026-11-28", now=NOW) is None
    assert store.digest_done_for("2026-11-29") is False
    nxt = store.claim_digest("2026-11-29", now=NOW)
    assert nxt is not None and len(nxt.hits) == 2


def test_release_returns_the_hits_for_the_next_attempt(store: Store) -> None:
    _two_hits(store)
    first = store.claim_digest("2026-11-28", now=NOW)
    assert first is not None
    store.release_digest("2026-11-28", now=NOW, error="550 mailbox unavailable")
    assert store.pending_digest() is None
    assert store.digest_done_for("2026-11-28") is False
    retry = store.claim_digest("2026-11-28", now=NOW + timedelta(minutes=5))
    assert retry is not None
    assert retry.message_id == first.message_id  # never delivered: same identity
    assert retry.attempts == 2
    assert {h.hit_id for h in retry.hits} == {h.hit_id for h in first.hits}
    store.finish_digest("2026-11-28", now=NOW)
    with pytest.raises(StorageError, match="is sent"):
        store.release_digest("2026-11-28", now=NOW, error="late")
    with pytest.raises(StorageError, match="claim it first"):
        store.finish_digest("1999-01-01", now=NOW)


def test_a_crash_mid_send_resends_the_same_digest(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    before = Store(path)
    _two_hits(before)
    claimed = before.claim_digest("2026-11-28", now=NOW)
    assert claimed is not None
    # "Crash": the process dies; a new one opens the same file, with new hits meanwhile.
    after = Store(path)
    poll(after, FEED_A, [new("e9", "https://x.example/9", hit("a", "late"))])
    stuck = after.pending_digest()
    assert stuck is not None
    assert (stuck.key, stuck.message_id) == (claimed.key, claimed.message_id)
    assert stuck.hits == claimed.hits  # the late hit is not added to a message already sent
    # Claiming any key first hands back the stuck digest.
    again = after.claim_digest("2026-11-29", now=NOW + timedelta(days=1))
    assert again is not None and again.key == "2026-11-28" and again.attempts == 2
    after.finish_digest(again.key, now=NOW + timedelta(days=1))
    assert after.pending_digest() is None
    nxt = after.claim_digest("2026-11-29", now=NOW + timedelta(days=1))
    assert nxt is not None and [h.matched for h in nxt.hits] == [("late",)]
    before.close()
    after.close()


def test_message_id_is_distinct_per_database_and_key_and_header_safe(tmp_path: Path) -> None:
    ids: set[str] = set()
    for name in ("one.db", "two.db"):
        with Store(tmp_path / name) as store:
            for number, key in enumerate(("2026-11-28", "2026-11-28 <x>\r\nBcc: y")):
                poll(
                    store, FEED_A, [new(f"e{number}", f"https://x.example/{number}", hit("a", "x"))]
                )
                claimed = store.claim_digest(key, now=NOW)
                assert claimed is not None
                assert re.fullmatch(r"<[A-Za-z0-9._@-]+>", claimed.message_id)
                ids.add(claimed.message_id)
                store.finish_digest(key, now=NOW)
    assert len(ids) == 4


def test_preview_shows_the_next_digest_without_claiming(store: Store) -> None:
    assert store.preview_digest(now=NOW) is None
    _two_hits(store)
    preview = store.preview_digest(now=NOW)
    assert preview is not None
    assert sorted(h.watchlist for h in preview.hits) == ["a", "b"]
    assert store.pending_digest() is None
    assert store.digest_done_for("2026-11-28") is False
    claimed = store.claim_digest("2026-11-28", now=NOW)
    assert claimed is not None and claimed.hits == preview.hits
    assert store.preview_digest(now=NOW) is None  # all claimed now


def test_quiet_backfill_hits_are_never_mailed(store: Store) -> None:
    poll(store, FEED_A, [new("e1", "https://x.example/1"), new("e2", "https://x.example/2")])
    ids = [article_id for article_id, _, _ in store.articles_since(None)]
    assert store.add_backfill_hits("w", [(ids[0], hit("w", "q"))], now=NOW, quiet=True) == 1
    assert store.add_backfill_hits("w", [(ids[1], hit("w", "l"))], now=NOW, quiet=False) == 1
    claimed = store.claim_digest("2026-11-28", now=NOW)
    assert claimed is not None
    assert [(h.matched, h.backfilled) for h in claimed.hits] == [(("l",), True)]
    assert len(store.hits()) == 2  # the quiet one is still listed by `monitor hits`


def test_checkpoint_empties_the_wal_unless_a_reader_holds_an_old_snapshot(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    wal = tmp_path / "monitor.db-wal"
    with Store(path) as store:
        for index in range(20):
            poll(store, FEED_A, [new(f"e{index}", f"https://x.example/{index}")])
        assert wal.stat().st_size > 0
        reader = sqlite3.connect(path)
        reader.execute("BEGIN")
        reader.execute("SELECT COUNT(*) FROM articles").fetchone()  # holds a snapshot
        poll(store, FEED_A, [new("late", "https://x.example/late")])
        assert store.checkpoint() is False
        reader.rollback()
        reader.close()
        assert store.checkpoint() is True
        assert wal.stat().st_size == 0


def test_a_stuck_digest_already_tried_is_passed_over(store: Store) -> None:
    _two_hits(store)
    stuck = store.claim_digest("2026-11-28", now=NOW)
    assert stuck is not None  # left "sending": its delivery was not confirmed
    poll(store, FEED_A, [new("e9", "https://x.example/9", hit("a", "late"))])
    # Its own key, still sending, gets nothing new added to a message that may be out.
    assert store.claim_digest("2026-11-28", now=NOW, passed_over=["2026-11-28"]) is None
    following = store.claim_digest("2026-11-29", now=NOW, passed_over=["2026-11-28"])
    assert following is not None and following.key == "2026-11-29"
    assert [h.matched for h in following.hits] == [("late",)]
    still_first = store.claim_digest("2026-11-30", now=NOW)
    assert still_first is not None and still_first.key == "2026-11-28"


def test_a_write_through_a_read_only_store_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "monitor.db"
    Store(path).close()
    with Store(path, read_only=True) as reader, pytest.raises(StorageError) as raised:
        reader.feed_state(FEED_A)  # registers the feed: a write
    assert "cannot be written by this user" in str(raised.value)
    assert "hits, status" in str(raised.value)


def test_a_read_only_store_needs_an_existing_database(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match=r"no database at .* yet"):
        Store(tmp_path / "absent.db", read_only=True)
    assert not (tmp_path / "absent.db").exists()
