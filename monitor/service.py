"""Operations shared by the daemon and the CLI: build the runtime, send a digest, send
instant alerts, backfill.

These functions wire the stages together and hold no policy of their own:
timing comes from `schedule`, content from `digest`, delivery from `notify`,
and every state change from `store`.
"""

from __future__ import annotations

import fcntl
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING

from monitor.alerts import AlertMessage, compose_alert, next_attempt
from monitor.config import Config, DigestSettings
from monitor.digest import build_digest, render_message
from monitor.errors import DeliveryError
from monitor.fetch import Fetcher
from monitor.health import HealthState, needs_attention
from monitor.matching import Matcher, snowball_language
from monitor.models import (
    AlertTarget,
    ClaimedDigest,
    Clock,
    DigestContent,
    FeedSpec,
    HealthNotice,
    HitResult,
    NoticeKind,
    SearchResult,
    StoredArticle,
    Watchlist,
)
from monitor.notify import deliver
from monitor.pipeline import Pipeline
from monitor.query import Node
from monitor.schedule import Deferral, deferral, due_digest
from monitor.search import STEMMING_CHECKED, candidates_for, search_articles
from monitor.store import Store
from monitor.workers import ExtractionPool, limit_malloc_arenas

if TYPE_CHECKING:
    from monitor.destinations import SendOutcome

log = logging.getLogger(__name__)


@contextmanager
def open_pipeline(
    config: Config,
    store: Store,
    *,
    clock: Clock,
    extract_workers: int | None = None,
    start_workers: bool = False,
) -> Iterator[Pipeline]:
    """The fetcher and the extraction workers (which hold the watchlists) for `config`,
    closed on exit; `extract_workers`, else `poll.workers`, else one per core but one. The workers start when a page first needs extracting, so a poll
    where nothing is new never starts them; with `start_workers` (the daemon, which
    will need them) they start at once in the background, and polls begin meanwhile."""
    limit_malloc_arenas()  # before the poll and page threads exist
    fetcher = Fetcher(config.poll, wall_clock=clock)
    extractor = ExtractionPool(extract_workers or config.poll.workers, watchlists=config.watchlists)
    # A feed's pages usually share a host: `per_host` of them fetching while as many
    # wait for a worker to extract them. As many feeds poll at once as `concurrency`, so
    # with this many threads each has its own share and none waits for another's.
    pages_per_feed = 2 * config.poll.per_host
    pipeline = Pipeline(
        store=store,
        fetcher=fetcher,
        articles=extractor,
        clock=clock,
        page_threads=pages_per_feed * config.poll.concurrency,
        pages_per_feed=pages_per_feed,
        max_sitemap_urls=config.poll.max_sitemap_urls,
        feed_deadline=config.poll.feed_deadline.total_seconds(),
    )
    closed = threading.Event()
    if start_workers:
        threading.Thread(
            target=_start_in_background,
            args=(extractor, closed),
            name="start-workers",
            daemon=True,
        ).start()
    try:
        yield pipeline
    finally:
        pipeline.close()
        fetcher.close()
        extractor.close()
        closed.set()


def _start_in_background(extractor: ExtractionPool, closed: threading.Event) -> None:
    """Start the workers without holding up the first polls: otherwise the first feed with
    a new entry waits for the fork server (1 to 3 s, more on a busy machine) and every
    feed after it with a page queues behind, holding its poll thread.

    The thread then waits for the pipeline to close: the fork server asks to die with its
    parent (`PR_SET_PDEATHSIG`), and Linux means the parent *thread*, the one that
    started it. Had this thread ended, the kernel would have killed the fork server and
    every worker (the soak test lost half its hits so)."""
    started = time.monotonic()
    try:
        extractor.start()
    except BrokenProcessPool as error:  # the first page tries again and says why
        log.warning("%s; trying again with the first page", error)
    else:
        log.info(
            "extraction workers ready: %d, watchlists compiled, in %.1f s",
            extractor.workers,
            time.monotonic() - started,
        )
    closed.wait()


@dataclass(frozen=True)
class Skipped:
    """A feed `monitor poll` left for later."""

    spec: FeedSpec
    name: str  # configured name, else the feed's title, else its URL
    deferral: Deferral
    moved_to: str | None = None  # where its permanent redirects lead, if it has some


def plan_poll(
    store: Store, specs: Sequence[FeedSpec], *, now: datetime, force: bool = False
) -> tuple[list[FeedSpec], list[Skipped]]:
    """The feeds `monitor poll` polls now, and those it leaves for later with why (backing
    off, asked to wait by Retry-After, gone, or not due yet); with `force`, every feed."""
    if force:
        return list(specs), []
    states = {state.url: state for state in store.feed_states()}
    due: list[FeedSpec] = []
    skipped: list[Skipped] = []
    for spec in specs:
        state = states.get(spec.url)
        wait = deferral(state, spec, now)
        if wait is None:
            due.append(spec)
        else:
            name = spec.name or (state.title if state else None) or spec.url
            skipped.append(Skipped(spec, name, wait, state.moved_to if state else None))
    return due, skipped


@dataclass(frozen=True)
class DigestRun:
    key: str
    hits: int
    delivered: bool
    description: str  # what happened, for logs and the CLI
    busy: bool = False  # another process was delivering: nothing was tried


DELIVERY_POLL_SECONDS = 0.2
HEALTH_LOOKBACK = timedelta(days=1)  # a first digest reports the problems of the last day


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


_NOTICE_OF_STATE = {
    HealthState.FAILING: NoticeKind.FAILING,
    HealthState.SILENT: NoticeKind.SILENT,
    HealthState.MOVED: NoticeKind.MOVED,
    HealthState.GONE: NoticeKind.GONE,
}


def health_notices(
    store: Store, config: Config, digest: DigestSettings, *, now: datetime
) -> list[HealthNotice]:
    """What `digest`'s health section says now: the feeds that need attention (failing
    for more than a day, silent, moved, gone; see `health.needs_attention`), then the
    alert destinations given up on since the digest was last sent (the last day for a
    first digest)."""
    since = store.last_digest_sent(digest.name) or now - HEALTH_LOOKBACK
    feeds = [
        HealthNotice(
            _NOTICE_OF_STATE[health.state],
            health.name,
            since=health.since,
            count=health.failed_polls,
            error=health.last_error if health.state is HealthState.FAILING else None,
            url=health.moved_to if health.state is HealthState.MOVED else health.url,
        )
        for health in store.feed_health(now, config.feeds)
        if health.state in _NOTICE_OF_STATE and needs_attention(health, now=now)
    ]
    return feeds + [
        HealthNotice(
            NoticeKind.ALERT_FAILED,
            f"{failure.alert} → {failure.destination}",
            since=failure.since,
            count=failure.hits,
            error=failure.last_error or None,
        )
        for failure in store.failed_alerts(since)
    ]


def digest_content(
    config: Config,
    digest: DigestSettings,
    claimed: ClaimedDigest,
    *,
    now: datetime,
    covers_from: datetime | None = None,
    notices: Sequence[HealthNotice] = (),
) -> DigestContent:
    """What a claimed (or previewed) digest says, as `config` orders and filters it."""
    return build_digest(
        claimed,
        watchlist_order=[watchlist.name for watchlist in config.watchlists],
        tz=config.timezone,
        now=now,
        topics={w.name: w.topic for w in config.watchlists if w.topic},
        hide_passing=[w.name for w in config.watchlists if w.hide_passing],
        covers_from=covers_from,
        notices=notices,
    )


def compose_digest(
    config: Config,
    digest: DigestSettings,
    claimed: ClaimedDigest,
    *,
    now: datetime,
    content: DigestContent | None = None,
) -> EmailMessage:
    """The email for a claimed (or previewed) digest, as `digest` says to write it."""
    if content is None:
        content = digest_content(config, digest, claimed, now=now)
    return render_message(
        content,
        sender=digest.sender,
        recipients=digest.recipients,
        subject=digest.subject,
        message_id=claimed.message_id,
        tz=config.timezone,
        language=digest.language,
        max_full=digest.max_full,
    )


def _deliver_claimed(
    store: Store,
    config: Config,
    digest: DigestSettings,
    claimed: ClaimedDigest,
    *,
    now: datetime,
    notices: Sequence[HealthNotice],
) -> DigestRun:
    covers_from = store.last_digest_sent(digest.name)
    content = digest_content(
        config, digest, claimed, now=now, covers_from=covers_from, notices=notices
    )
    if not content.groups and not content.backfilled and not content.notices:
        # Only passing mentions of watchlists that hide them: they are done, nothing to mail.
        store.finish_digest(claimed.key, now=now)
        description = "only hidden passing mentions: nothing sent"
        log.info("digest %s: %d hits, %s", claimed.key, len(claimed.hits), description)
        return DigestRun(claimed.key, len(claimed.hits), True, description)
    message = compose_digest(config, digest, claimed, now=now, content=content)
    try:
        description = deliver(message, digest)
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
    store: Store,
    config: Config,
    digest: DigestSettings,
    *,
    key: str,
    now: datetime,
    wait: float = 0.0,
) -> list[DigestRun]:
    """Deliver any issue of `digest` left half-sent by a crash, then its issue `key` if
    not done.

    One process delivers at a time (`delivery_lock`); when another still is after
    `wait` seconds, nothing is tried and the one run returned says so (`busy`).

    Hits are claimed by the digest before sending and only marked sent once
    the SMTP server accepted the message (or the .eml was written); a crash
    in between re-sends the same message with the same Message-ID.

    Which issue goes first is `Store.claim_digest`'s rule alone (a stuck one,
    whatever its key). Here: each run makes at most one delivery attempt per
    issue, so a server that drops the link after the data never gets the same
    message twice in one run; and new hits go out in their own issue even
    when a stuck one could not be confirmed, instead of waiting behind it.
    """
    with delivery_lock(store.path, wait=wait) as held:
        if not held:
            busy = "another monitor process is delivering a digest from this database"
            return [DigestRun(key, 0, False, f"{busy}; nothing sent, try again", busy=True)]
        return _run_digest(store, config, digest, key=key, now=now)


def run_due_digest(
    store: Store, config: Config, digest: DigestSettings, *, now: datetime
) -> list[DigestRun]:
    """What the daemon does for `digest` every minute: send its latest scheduled issue if it
    has not run since (`schedule.due_digest`), else re-send an issue left unconfirmed by a
    crash; [] when there is nothing to do. A digest new to the database is registered
    first, so its first issue waits for its first scheduled time."""
    registered = store.register_digest(digest.name, now=now)
    last_done = store.last_digest_done(digest.name)
    key = due_digest(now, config.timezone, digest, last_done, registered=registered)
    if key is None:
        stuck = store.pending_digest(digest.name)
        if stuck is None:
            return []
        key = stuck.key
    return run_digest(store, config, digest, key=key, now=now)


def _run_digest(
    store: Store, config: Config, digest: DigestSettings, *, key: str, now: datetime
) -> list[DigestRun]:
    runs: list[DigestRun] = []
    done_before = store.digest_done_for(key)
    tried: list[str] = []
    watchlists = digest.watchlists or None
    notices = health_notices(store, config, digest, now=now)
    while True:
        # Sources that need attention are reported even on a day without hits: a digest
        # that stayed silent because every feed broke would hide exactly that.
        claimed = store.claim_digest(
            key,
            now=now,
            name=digest.name,
            watchlists=watchlists,
            passed_over=tried,
            allow_empty=bool(notices),
        )
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
        runs.append(_deliver_claimed(store, config, digest, claimed, now=now, notices=notices))
        if claimed.key == key:
            return runs
        # A stuck issue, delivered or not: the new hits go out next, never wait behind it.


def rescore_hits(store: Store, watchlists: Sequence[Watchlist], *, now: datetime) -> int:
    """Score again, by matching their stored text with their watchlist, the hits stored
    before relevance existed and the unsent hits an earlier relevance model scored
    (`Store.hits_to_rescore`); returns how many were scored.

    A hit whose watchlist is gone, or no longer matches its article as configured now,
    keeps what it had: no score (listed with the main hits, never hidden) or its old one.
    """
    by_name = {watchlist.name: watchlist for watchlist in watchlists}
    matchers: dict[str, Matcher] = {}
    scored: list[tuple[int, HitResult]] = []
    for hit_id, name, article_id in store.hits_to_rescore(now=now):
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
        log.info(
            "relevance computed again for %d hits (stored without it, or unsent and scored "
            "by an earlier model)",
            len(scored),
        )
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


# --------------------------------------------------------------------------- instant alerts


def alert_routes(config: Config) -> dict[str, tuple[AlertTarget, ...]]:
    """Watchlist name -> the destinations its new hits are announced to (`Store.set_alert_routes`).

    A watchlist with ``passing: hide`` announces none of its passing mentions, as its
    digest shows none of them.
    """
    hide_passing = {watchlist.name for watchlist in config.watchlists if watchlist.hide_passing}
    routes: dict[str, list[AlertTarget]] = {}
    for alert in config.alerts:
        for watchlist in alert.watchlists:
            targets = routes.setdefault(watchlist, [])
            for destination in alert.destinations:
                target = AlertTarget(
                    alert.name,
                    destination.key,
                    destination.shown,
                    passing=watchlist not in hide_passing,
                )
                if target not in targets:
                    targets.append(target)
    return {watchlist: tuple(targets) for watchlist, targets in routes.items()}


@dataclass(frozen=True)
class AlertRun:
    """What one `send_alerts` round did."""

    sent: int = 0
    retrying: int = 0  # failed this time, tried again later
    failed: int = 0  # given up on
    cancelled: int = 0  # their destination is no longer configured
    busy: bool = False  # another thread or process was sending: nothing was tried

    def describe(self) -> str:
        if self.busy:
            return "another monitor process is sending alerts; it sends these too"
        parts = [f"{self.sent} sent"]
        if self.retrying:
            parts.append(f"{self.retrying} to retry")
        if self.failed:
            parts.append(f"{self.failed} given up")
        if self.cancelled:
            parts.append(f"{self.cancelled} cancelled")
        return ", ".join(parts)


AlertSender = Callable[[str, AlertMessage], "SendOutcome"]


def send_alerts(
    store: Store, config: Config, now: datetime, *, send: AlertSender | None = None
) -> AlertRun:
    """Send every alert due at `now`: one Apprise notification per hit per destination.

    A sent alert is marked sent and never sent again. A failed one is tried again
    after 1 min, 2, 4... at most an hour apart, and given up (state ``failed``, logged
    as an error, listed by `Store.failed_alerts`) a day after its hit was found. After
    one failure a destination is left alone for the rest of the round, so a dead
    destination costs one timeout per round and never delays the others. An alert
    whose destination left feeds.yaml is cancelled: its hit is still in the digest.

    One sender at a time per database (a lock file beside it); when another holds it,
    nothing is tried: it sends these alerts itself.
    """
    if not config.alerts and not store.due_alerts(now, limit=1):
        return AlertRun()  # no alerts configured, none left over: no lock file either
    if send is None:
        from monitor.destinations import send_alert

        send = send_alert
    with _alert_lock(store.path) as held:
        if not held:
            return AlertRun(busy=True)
        return _send_due_alerts(store, config, now, send)


def _send_due_alerts(store: Store, config: Config, now: datetime, send: AlertSender) -> AlertRun:
    urls = {
        (alert.name, destination.key): destination.url
        for alert in config.alerts
        for destination in alert.destinations
    }
    sent = retrying = failed = cancelled = 0
    failing: set[tuple[str, str]] = set()
    for due in store.due_alerts(now):
        where = (due.alert, due.url_key)
        fields = {
            "event": "alert",
            "alert": due.alert,
            "destination": due.destination,
            "hit_id": due.hit.hit_id,
        }
        url = urls.get(where)
        if url is None:
            reason = "its destination was removed from the configuration before delivery"
            store.alert_cancelled(due.delivery_id, now=now, reason=reason)
            log.warning("alert %s to %s: %s", due.alert, due.destination, reason, extra=fields)
            cancelled += 1
            continue
        if where in failing:
            continue  # tried next round: this destination just failed
        outcome = send(url, compose_alert(due.hit, alert=due.alert))
        if outcome.sent:
            store.alert_sent(due.delivery_id, now=now)
            log.info(
                "alert %s: %r sent to %s", due.alert, due.hit.title, due.destination, extra=fields
            )
            sent += 1
            continue
        failing.add(where)
        error = outcome.error or "not delivered"
        retry_at = next_attempt(due.attempts + 1, due.created_at, now)
        store.alert_failed(due.delivery_id, now=now, error=error, retry_at=retry_at)
        if retry_at is None:
            log.error(
                "alert %s: %r could not be delivered to %s after %d attempts; giving up "
                "(the hit stays in the digest): %s",
                due.alert,
                due.hit.title,
                due.destination,
                due.attempts + 1,
                error,
                extra={**fields, "error": error},
            )
            failed += 1
        else:
            log.warning(
                "alert %s to %s failed (attempt %d), retrying at %s: %s",
                due.alert,
                due.destination,
                due.attempts + 1,
                retry_at.isoformat(timespec="seconds"),
                error,
                extra={**fields, "error": error},
            )
            retrying += 1
    return AlertRun(sent=sent, retrying=retrying, failed=failed, cancelled=cancelled)


@contextmanager
def _alert_lock(database: Path) -> Iterator[bool]:
    """Hold the lock under which one sender at a time sends alerts from `database`;
    yields False at once when another thread or process holds it. `flock` on a file
    beside the database, opened anew per call, so threads of one process exclude
    each other too, and a crashed holder releases it."""
    database = database.resolve()
    path = database.with_name(database.name + ".alerts.lock")
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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
