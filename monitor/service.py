"""Operations shared by the daemon and the CLI: build the runtime, send a digest, backfill.

These functions wire the stages together and hold no policy of their own:
timing comes from `schedule`, content from `digest`, delivery from `notify`,
and every state change from `store`.
"""

from __future__ import annotations

import fcntl
import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from pathlib import Path

from monitor.config import Config
from monitor.digest import build_digest, render_message
from monitor.errors import DeliveryError
from monitor.fetch import Fetcher
from monitor.matching import Matcher, snowball_language
from monitor.models import (
    ClaimedDigest,
    Clock,
    DigestContent,
    HitResult,
    SearchResult,
    StoredArticle,
    Watchlist,
)
from monitor.notify import deliver
from monitor.pipeline import Pipeline
from monitor.query import Node
from monitor.search import STEMMING_CHECKED, candidates_for, search_articles
from monitor.store import Store
from monitor.workers import ExtractionPool

log = logging.getLogger(__name__)


@contextmanager
def open_pipeline(
    config: Config,
    store: Store,
    *,
    clock: Clock,
    extract_workers: int | None = None,
) -> Iterator[Pipeline]:
    """The fetcher and the extraction workers (which hold the watchlists) for `config`,
    closed on exit."""
    fetcher = Fetcher(config.poll, wall_clock=clock)
    extractor = ExtractionPool(extract_workers, watchlists=config.watchlists)
    pipeline = Pipeline(
        store=store,
        fetcher=fetcher,
        articles=extractor,
        clock=clock,
        # A page thread spends most of its time waiting: for its host's slot (pages of
        # one feed usually share a host, and the first queued pages would otherwise hold
        # every thread while other hosts sit idle), then for a worker to extract it.
        page_threads=4 * config.poll.concurrency,
    )
    try:
        extractor.start()
        yield pipeline
    finally:
        pipeline.close()
        fetcher.close()
        extractor.close()


@dataclass(frozen=True)
class DigestRun:
    key: str
    hits: int
    delivered: bool
    description: str  # what happened, for logs and the CLI
    busy: bool = False  # another process was delivering: nothing was tried


DELIVERY_POLL_SECONDS = 0.2


@contextmanager
def delivery_lock(database: Path, *, wait: float) -> Iterator[bool]:
    """Hold the lock that one process at a time delivers digests from `database` under;
    yields False when another process still holds it after `wait` seconds.

    Without it, `monitor digest` run while the daemon is inside SMTP DATA takes the
    digest the daemon is sending for one a crash left behind, and delivers it again.
    `flock` on a file beside the database: the kernel releases it when its holder dies,
    so a digest left "sending" by a crash is still re-sent by the next process.
    """
    database = database.resolve()
    path = database.with_name(database.name + ".delivery.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    yield False
                    return
                time.sleep(DELIVERY_POLL_SECONDS)
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def digest_content(config: Config, claimed: ClaimedDigest, *, now: datetime) -> DigestContent:
    """What a claimed (or previewed) digest says, as `config` orders and filters it."""
    return build_digest(
        claimed,
        watchlist_order=[watchlist.name for watchlist in config.watchlists],
        tz=config.timezone,
        now=now,
        topics={w.name: w.topic for w in config.watchlists if w.topic},
        hide_passing=[w.name for w in config.watchlists if w.hide_passing],
    )


def compose_digest(
    config: Config, claimed: ClaimedDigest, *, now: datetime, content: DigestContent | None = None
) -> EmailMessage:
    """The email for a claimed (or previewed) digest, as `config` says to write it."""
    if content is None:
        content = digest_content(config, claimed, now=now)
    return render_message(
        content,
        sender=config.digest.sender,
        recipients=config.digest.recipients,
        subject=config.digest.subject,
        message_id=claimed.message_id,
        tz=config.timezone,
    )


def _deliver_claimed(
    store: Store, config: Config, claimed: ClaimedDigest, *, now: datetime
) -> DigestRun:
    content = digest_content(config, claimed, now=now)
    if not content.groups and not content.backfilled:
        # Only passing mentions of watchlists that hide them: they are done, nothing to mail.
        store.finish_digest(claimed.key, now=now)
        description = "only hidden passing mentions: nothing sent"
        log.info("digest %s: %d hits, %s", claimed.key, len(claimed.hits), description)
        return DigestRun(claimed.key, len(claimed.hits), True, description)
    message = compose_digest(config, claimed, now=now, content=content)
    try:
        description = deliver(message, config.digest)
    except DeliveryError as error:
        if error.maybe_delivered:
            # The server may have accepted it (the link broke after the data was sent):
            # keep the claim so the retry re-sends this same message, same Message-ID.
            kind = "unconfirmed; the same message will be sent again"
        else:
            store.release_digest(claimed.key, now=now, error=str(error))
            kind = "permanently refused" if error.permanent else "failed; will retry"
        log.error(
            "digest %s: delivery %s: %s",
            claimed.key,
            kind,
            error,
            extra={"event": "digest", "digest": claimed.key, "error": str(error)},
        )
        return DigestRun(claimed.key, len(claimed.hits), False, f"delivery {kind}: {error}")
    store.finish_digest(claimed.key, now=now)
    log.info(
        "digest %s: %d hits %s",
        claimed.key,
        len(claimed.hits),
        description,
        extra={"event": "digest", "digest": claimed.key, "hits": len(claimed.hits)},
    )
    return DigestRun(claimed.key, len(claimed.hits), True, description)


def run_digest(
    store: Store, config: Config, *, key: str, now: datetime, wait: float = 0.0
) -> list[DigestRun]:
    """Deliver any digest left half-sent by a crash, then the digest `key` if not done.

    One process delivers at a time (`delivery_lock`); when another still is after
    `wait` seconds, nothing is tried and the one run returned says so (`busy`).

    Hits are claimed by the digest before sending and only marked sent once
    the SMTP server accepted the message (or the .eml was written); a crash
    in between re-sends the same message with the same Message-ID.

    Which digest goes first is `Store.claim_digest`'s rule alone (a stuck one,
    whatever its key). Here: each run makes at most one delivery attempt per
    digest, so a server that drops the link after the data never gets the same
    message twice in one run; and new hits go out in their own digest even
    when a stuck one could not be confirmed, instead of waiting behind it.
    """
    with delivery_lock(store.path, wait=wait) as held:
        if not held:
            busy = "another monitor process is delivering a digest from this database"
            return [DigestRun(key, 0, False, f"{busy}; nothing sent, try again", busy=True)]
        return _run_digest(store, config, key=key, now=now)


def _run_digest(store: Store, config: Config, *, key: str, now: datetime) -> list[DigestRun]:
    runs: list[DigestRun] = []
    done_before = store.digest_done_for(key)
    tried: list[str] = []
    while True:
        claimed = store.claim_digest(key, now=now, passed_over=tried)
        if claimed is None:
            if not runs and not done_before:
                runs.append(DigestRun(key, 0, False, "no new hits: nothing sent"))
            return runs
        tried.append(claimed.key)
        if claimed.key != key:
            log.warning(
                "digest %s was interrupted before it was confirmed; sending it again",
                claimed.key,
            )
        runs.append(_deliver_claimed(store, config, claimed, now=now))
        if claimed.key == key:
            return runs
        # A stuck digest, delivered or not: the new hits go out next, never wait behind it.


def rescore_hits(store: Store, watchlists: Sequence[Watchlist]) -> int:
    """Give a relevance to hits stored before relevance existed, by matching their stored
    text again with their watchlist; returns how many were scored.

    A hit whose watchlist is gone, or no longer matches its article as configured now,
    keeps no score: it is listed with the main hits, never hidden.
    """
    by_name = {watchlist.name: watchlist for watchlist in watchlists}
    matchers: dict[str, Matcher] = {}
    scored: list[tuple[int, HitResult]] = []
    for hit_id, name, article_id in store.unscored_hits():
        watchlist = by_name.get(name)
        stored = store.article(article_id) if watchlist is not None else None
        if watchlist is None or stored is None:
            continue
        matcher = matchers.setdefault(name, Matcher([watchlist]))
        article, feed = stored
        found = matcher.match(article, feed_name=feed)
        if found:
            scored.append((hit_id, found[0]))
    if scored:
        store.set_relevance(scored)
        log.info("relevance computed for %d hits stored before it existed", len(scored))
    return len(scored)


def backfill(
    store: Store,
    watchlist: Watchlist,
    *,
    since: datetime | None,
    now: datetime,
    quiet: bool,
) -> tuple[int, int]:
    """Run one watchlist over stored articles; returns (articles scanned, new hits)."""
    matcher = Matcher([watchlist])
    scanned = 0
    found = []
    for article_id, article, feed_name in store.articles_since(since):
        scanned += 1
        for hit in matcher.match(article, feed_name=feed_name):
            found.append((article_id, hit))
    added = store.add_backfill_hits(watchlist.name, found, now=now, quiet=quiet)
    return scanned, added


def apply_retention(store: Store, config: Config, *, now: datetime) -> int:
    """Drop the text of articles older than `retention.article_text` that no unsent hit
    needs; returns how many (0 when the text is kept forever, the default)."""
    keep = config.retention.article_text
    if keep is None:
        return 0
    dropped = store.drop_old_text(seen_before=now - keep, now=now)
    if dropped:
        log.info(
            "retention: dropped the text of %d articles first seen over %d days ago "
            "(titles, links and hits kept)",
            dropped,
            keep.days,
            extra={"event": "retention", "dropped": dropped},
        )
    return dropped


@dataclass(frozen=True)
class SearchRun:
    """What `monitor search` found, and how much it had to read to find it."""

    results: list[SearchResult]  # most relevant first, then newest
    read: int  # articles read and matched
    used_index: bool  # False: the query gave no safe index expression; every article was read


def search_store(store: Store, query: Node, *, since: datetime | None) -> SearchRun:
    """Run `query` over the articles first seen since `since`: the full-text index picks the
    candidates (`monitor.search`), the matcher confirms and explains; nothing is recorded."""
    candidates = candidates_for(query)
    ids: set[int] | None = None
    if candidates.expression is not None:
        ids = set(store.search_index_ids(candidates.expression))
        if candidates.other_languages:
            ids.update(
                article_id
                for article_id, language in store.article_languages(since=since)
                if snowball_language(language) not in STEMMING_CHECKED
            )
    read = 0

    def counted(articles: Iterator[StoredArticle]) -> Iterator[StoredArticle]:
        nonlocal read
        for stored in articles:
            read += 1
            yield stored

    results = search_articles(query, counted(store.stored_articles(ids, since=since)))
    return SearchRun(results, read, ids is not None)
