"""One poll of one feed, start to finish, and a poll of many feeds at once.

This module only moves data between the stages; each decision lives in the
stage that owns it::

    store.feed_state ─► fetch.fetch_feed ─► (unchanged body? stop) ─► parse.parse_feed
    ─► store.unseen_entries ─► fetch.fetch_page ─► workers.extract ─► match.Matcher
    ─► store.save_poll            (one transaction per feed: entries, articles, hits, validators)

A failure at any step is recorded for that feed alone; the other feeds carry on.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from monitor.extract import fallback_article
from monitor.fetch import Fetcher
from monitor.match import Matcher
from monitor.models import (
    ArticleText,
    Entry,
    FeedSpec,
    Fetched,
    FetchFailed,
    HitResult,
    NotModified,
    ParseFailed,
    Validators,
    Watchlist,
)
from monitor.parse import parse_feed
from monitor.schedule import next_poll_after
from monitor.store import FeedState, NewArticle, Store
from monitor.workers import ExtractionPool

log = logging.getLogger(__name__)

UNCONDITIONAL_GET_EVERY = timedelta(hours=24)


@dataclass
class StageTimes:
    """Seconds spent in each stage (summed over threads), for logs and the benchmark.

    Page threads of one feed record into the same instance, hence the lock.
    """

    fetch: float = 0.0
    parse: float = 0.0
    page_fetch: float = 0.0
    extract: float = 0.0
    store: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @contextmanager
    def timing(self, stage: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - started
            with self._lock:
                setattr(self, stage, getattr(self, stage) + elapsed)


@dataclass
class FeedReport:
    """What one poll of one feed did; one log line each."""

    url: str
    name: str
    outcome: str  # "updated" | "not_modified" | "unchanged" | "failed" | "abandoned"
    status: int | None = None
    entries: int = 0
    new_entries: int = 0
    new_articles: int = 0
    new_hits: int = 0
    fallbacks: int = 0
    error: str | None = None
    times: StageTimes = field(default_factory=StageTimes)

    def log_line(self) -> str:
        if self.outcome == "failed":
            return f"{self.name}: FAILED {self.error}"
        if self.outcome == "abandoned":
            return f"{self.name}: abandoned, the daemon is stopping (nothing recorded)"
        if self.outcome in ("not_modified", "unchanged"):
            return f"{self.name}: {self.outcome.replace('_', ' ')} (HTTP {self.status})"
        return (
            f"{self.name}: {self.entries} entries, {self.new_entries} new, "
            f"{self.new_hits} hits, {self.fallbacks} from feed text (HTTP {self.status})"
        )


@dataclass
class Pipeline:
    """The long-lived parts a poll needs. `matcher` may be swapped on config reload."""

    store: Store
    fetcher: Fetcher
    extractor: ExtractionPool
    matcher: Matcher
    page_threads: int = 8
    clock: Callable[[], datetime] = field(default=lambda: datetime.now().astimezone())
    # Set by the daemon when it stops: a poll in flight then records nothing, because
    # its fetches fail only because the client is being closed.
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        # Workers match pages themselves: they must use the same watchlists as `matcher`.
        self.extractor.set_watchlists(self.matcher.watchlists)
        self._page_pool = ThreadPoolExecutor(
            max_workers=self.page_threads, thread_name_prefix="page"
        )

    def close(self) -> None:
        self._page_pool.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ one feed

    def poll_feed(self, spec: FeedSpec) -> FeedReport:
        name = spec.name or spec.url
        try:
            return self._poll_feed(spec)
        except Exception as error:  # one feed's bug must never stop the others
            if self.stopping.is_set():
                return FeedReport(url=spec.url, name=name, outcome="abandoned")
            log.exception("%s: unexpected error while polling", name)
            message = f"{spec.url}: unexpected error ({type(error).__name__}: {error})"
            try:
                state = self.store.feed_state(spec.url)
                return self._record_failure(spec, name, state, self.clock(), message)
            except Exception:
                log.exception("%s: could not record the failure either", name)
            return FeedReport(url=spec.url, name=name, outcome="failed", error=message)

    def _poll_feed(self, spec: FeedSpec) -> FeedReport:
        times = StageTimes()
        state = self.store.feed_state(spec.url)
        name = spec.name or state.title or spec.url

        with times.timing("fetch"):
            result = self.fetcher.fetch_feed(spec.url, self._validators_for(state))
        now = self.clock()
        if self.stopping.is_set():
            return FeedReport(url=spec.url, name=name, outcome="abandoned", times=times)

        if isinstance(result, FetchFailed):
            return self._record_failure(
                spec, name, state, now, result.message, result.status, result.retry_after, times
            )
        if isinstance(result, NotModified):
            return self._record_unchanged(
                spec, name, state, now, "not_modified", 304, result.validators, times
            )

        assert isinstance(result, Fetched)
        body_hash = hashlib.sha256(result.content).hexdigest()
        if body_hash == state.body_hash:
            # Many servers ignore conditional requests; an identical body is not parsed again.
            return self._record_unchanged(
                spec, name, state, now, "unchanged", result.status, result.validators, times
            )

        with times.timing("parse"):
            parsed = parse_feed(result.content, url=result.url, headers=result.headers)
        if isinstance(parsed, ParseFailed):
            return self._record_failure(
                spec, name, state, now, parsed.message, result.status, None, times
            )
        for warning in parsed.warnings:
            log.info("%s: %s", name, warning)
        name = spec.name or parsed.title or spec.url
        feed_language = spec.language or parsed.language

        fresh = self.store.unseen_entries(state.feed_id, parsed.entries)
        # Looked up here so that page threads never open a database connection.
        stored = {
            entry.key: known
            for entry in fresh
            if entry.link is not None
            and (known := self.store.known_article(entry.link)) is not None
        }
        processed = list(
            self._page_pool.map(
                lambda entry: self._article_for(
                    entry, stored.get(entry.key), spec.url, name, feed_language, times
                ),
                fresh,
            )
        )

        new = [
            NewArticle(entry=entry, article=article, hits=hits)
            for entry, (article, hits) in zip(fresh, processed, strict=True)
        ]

        if self.stopping.is_set():
            # Pages fetched while stopping fell back to feed text; storing them would mark
            # the entries seen and never extract them. The next start redoes this feed.
            return FeedReport(url=spec.url, name=name, outcome="abandoned", times=times)
        with times.timing("store"):
            outcome = self.store.save_poll(
                state.feed_id,
                now=now,
                status=result.status,
                validators=result.validators,
                body_hash=body_hash,
                feed_title=spec.name or parsed.title,
                new=new,
                next_poll=next_poll_after(now, spec.interval),
            )
        return FeedReport(
            url=spec.url,
            name=name,
            outcome="updated",
            status=result.status,
            entries=len(parsed.entries),
            new_entries=outcome.new_entries,
            new_articles=outcome.new_articles,
            new_hits=outcome.new_hits,
            fallbacks=sum(1 for item in new if item.article.note),
            times=times,
        )

    def _validators_for(self, state: FeedState) -> Validators:
        """The stored validators, unless no whole body came back for a day: some servers
        answer 304 forever to a bogus future Last-Modified (RELIABILITY A10), so at least
        one request a day is unconditional."""
        last_full = state.last_full_fetch
        if last_full is None or self.clock() - last_full > UNCONDITIONAL_GET_EVERY:
            return Validators()
        return state.validators

    def _record_failure(
        self,
        spec: FeedSpec,
        name: str,
        state: FeedState,
        now: datetime,
        message: str,
        status: int | None = None,
        retry_after: timedelta | None = None,
        times: StageTimes | None = None,
    ) -> FeedReport:
        self.store.save_failure(
            state.feed_id,
            now=now,
            message=message,
            status=status,
            next_poll=next_poll_after(
                now, spec.interval, consecutive_errors=state.error_count + 1,
                retry_after=retry_after,
            ),
        )
        return FeedReport(
            url=spec.url, name=name, outcome="failed", status=status, error=message,
            times=times or StageTimes(),
        )

    def _record_unchanged(
        self,
        spec: FeedSpec,
        name: str,
        state: FeedState,
        now: datetime,
        outcome: str,
        status: int,
        validators: Validators,
        times: StageTimes,
    ) -> FeedReport:
        self.store.save_not_modified(
            state.feed_id, now=now, status=status, validators=validators,
            next_poll=next_poll_after(now, spec.interval),
        )
        return FeedReport(url=spec.url, name=name, outcome=outcome, status=status, times=times)

    def _article_for(
        self,
        entry: Entry,
        stored: ArticleText | None,
        feed_url: str,
        feed_name: str,
        feed_language: str | None,
        times: StageTimes,
    ) -> tuple[ArticleText, tuple[HitResult, ...]]:
        """The full text of one new entry (the stored article, the page, or the feed's own
        text) and its hits.

        Matching happens in the extraction workers, pages right after extraction;
        the main process matches only when the workers could not."""
        article, hits = self._text_for(entry, stored, feed_url, feed_name, feed_language, times)
        if hits is None:
            hits = self.extractor.match(article, feed_name=feed_name, feed_language=feed_language)
        if hits is None:
            hits = tuple(self.matcher.match(article, feed_name=feed_name,
                                            feed_language=feed_language))
        return article, hits

    def _text_for(
        self,
        entry: Entry,
        stored: ArticleText | None,
        feed_url: str,
        feed_name: str,
        feed_language: str | None,
        times: StageTimes,
    ) -> tuple[ArticleText, tuple[HitResult, ...] | None]:
        if entry.link is None:
            reason = "the entry has no web link"
            return fallback_article(entry, url=None, reason=reason,
                                    feed_language=feed_language), None
        if stored is not None:
            return stored, None
        with times.timing("page_fetch"):
            page = self.fetcher.fetch_page(entry.link, feed_url=feed_url)
        if not isinstance(page, Fetched):
            reason = page.message if isinstance(page, FetchFailed) else "the page was not modified"
            return fallback_article(entry, url=entry.link, reason=reason,
                                    feed_language=feed_language), None
        with times.timing("extract"):
            return self.extractor.process(
                page.content, url=page.url, entry=entry, feed_name=feed_name,
                feed_language=feed_language,
            )

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None:
        """Match new articles with `watchlists` from now on (after a configuration reload)."""
        self.matcher = Matcher(watchlists)
        self.extractor.set_watchlists(watchlists)

    # ------------------------------------------------------------------ many feeds

    def poll_all(
        self,
        specs: Sequence[FeedSpec],
        *,
        threads: int = 8,
        on_done: Callable[[FeedReport], None] | None = None,
    ) -> list[FeedReport]:
        """Poll every feed once, `threads` at a time (the fetcher also limits per host)."""
        reports: list[FeedReport] = []
        with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="feed") as pool:
            for future in as_completed([pool.submit(self.poll_feed, spec) for spec in specs]):
                report = future.result()
                log.info(report.log_line())
                reports.append(report)
                if on_done is not None:
                    on_done(report)
        order = {spec.url: index for index, spec in enumerate(specs)}
        return sorted(reports, key=lambda report: order[report.url])
