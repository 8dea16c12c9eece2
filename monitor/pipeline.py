"""One poll of one feed, start to finish, and a poll of many feeds at once.

This module only moves data between the stages; each decision lives in the
stage that owns it::

    store.feed_state ─► schedule.validators_to_send ─► fetcher.fetch_feed
      ├─ FetchFailed, NotModified, a known body (schedule.is_known_body) ──────────┐
      └─ parse.parse_feed ─► store.unseen_entries ─► fetcher.fetch_page (threads)   │
           ─► articles.process (extraction and matching, in the workers) ─► NewBody │
    schedule.decide_update(state, spec, result, now) ─► FeedUpdate ◄───────────────┘
    ─► store.record(update)       (one transaction per feed: entries, articles, hits, state)

A failure at any step is recorded for that feed alone; the other feeds carry on.
The report of each poll carries the feed's next poll time, which the daemon
schedules without reading it back from the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from monitor.errors import DatabaseFull
from monitor.models import (
    ArticleJob,
    ArticleText,
    BodyUnchanged,
    Clock,
    FeedSpec,
    FeedState,
    FeedUpdate,
    Fetched,
    FetchFailed,
    FetchResult,
    HitResult,
    NewArticle,
    NewBody,
    NotAFeed,
    ParseFailed,
    PollCounts,
    PollError,
    PollOutcome,
    PollResult,
    Validators,
    Watchlist,
)
from monitor.parse import parse_feed
from monitor.schedule import body_hash, decide_update, is_known_body, validators_to_send
from monitor.store import Store

log = logging.getLogger(__name__)


class FeedFetcher(Protocol):
    """What a poll needs of HTTP; `monitor.fetch.Fetcher` is the real one."""

    def fetch_feed(self, url: str, validators: Validators = ...) -> FetchResult: ...

    def fetch_page(self, url: str, *, feed_url: str) -> FetchResult: ...

    def close(self) -> None: ...


class ArticleProcessor(Protocol):
    """Runs the article step; `monitor.workers.ExtractionPool` runs it in worker processes,
    `monitor.articles.InlineArticles` in the calling thread."""

    def process(self, job: ArticleJob) -> tuple[ArticleText, tuple[HitResult, ...]]: ...

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None: ...


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
    outcome: PollOutcome
    status: int | None = None
    entries: int = 0
    new_entries: int = 0
    new_articles: int = 0
    new_hits: int = 0
    fallbacks: int = 0
    error: str | None = None
    next_poll: datetime | None = None  # None: nothing was recorded
    times: StageTimes = field(default_factory=StageTimes)

    def log_fields(self) -> dict[str, object]:
        """The report as fields, for JSON logs (`monitor --log-format json`)."""
        return {
            "event": "poll",
            "feed": self.name,
            "url": self.url,
            "outcome": self.outcome.value,
            "status": self.status,
            "new_entries": self.new_entries,
            "new_hits": self.new_hits,
            "error": self.error,
        }

    def log_line(self) -> str:
        if self.outcome is PollOutcome.FAILED:
            return f"{self.name}: FAILED {self.error}"
        if self.outcome is PollOutcome.ABANDONED:
            return f"{self.name}: abandoned, the daemon is stopping (nothing recorded)"
        if self.outcome in (PollOutcome.NOT_MODIFIED, PollOutcome.UNCHANGED):
            return f"{self.name}: {self.outcome.words} (HTTP {self.status})"
        return (
            f"{self.name}: {self.entries} entries, {self.new_entries} new, "
            f"{self.new_hits} hits, {self.fallbacks} from feed text (HTTP {self.status})"
        )


@dataclass
class Pipeline:
    """The long-lived parts a poll needs.

    `articles` holds the watchlists (swapped on a configuration reload through
    `set_watchlists`); the pipeline itself never matches. `clock` is the
    caller's: the daemon's or the CLI's.
    """

    store: Store
    fetcher: FeedFetcher
    articles: ArticleProcessor
    clock: Clock
    page_threads: int = 8
    # Set by the daemon when it stops: a poll in flight then records nothing, because
    # its fetches fail only because the client is being closed.
    stopping: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._page_pool = ThreadPoolExecutor(
            max_workers=self.page_threads, thread_name_prefix="page"
        )

    def close(self) -> None:
        self._page_pool.shutdown(wait=False, cancel_futures=True)

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None:
        """Match new articles with `watchlists` from now on (after a configuration reload)."""
        self.articles.set_watchlists(watchlists)

    # ------------------------------------------------------------------ one feed

    def poll_feed(self, spec: FeedSpec) -> FeedReport:
        name = spec.name or spec.url
        try:
            return self._poll_feed(spec)
        except DatabaseFull as error:
            # No traceback and no attempt to record the failure (it would not fit either):
            # nothing of this poll was written, so the feed is polled again as it was.
            log.error("database full: %s: %s", name, error)
            return FeedReport(url=spec.url, name=name, outcome=PollOutcome.FAILED, error=str(error))
        except Exception as error:  # one feed's bug must never stop the others
            if self.stopping.is_set():
                return FeedReport(url=spec.url, name=name, outcome=PollOutcome.ABANDONED)
            log.exception("%s: unexpected error while polling", name)
            message = f"{spec.url}: unexpected error ({type(error).__name__}: {error})"
            failure = PollError(message)
            try:
                state = self.store.feed_state(spec.url)
                return self._record(spec, name, state, failure, self.clock(), StageTimes())
            except Exception:
                log.exception("%s: could not record the failure either", name)
            return FeedReport(url=spec.url, name=name, outcome=PollOutcome.FAILED, error=message)

    def _poll_feed(self, spec: FeedSpec) -> FeedReport:
        times = StageTimes()
        state = self.store.feed_state(spec.url)
        name = spec.name or state.title or spec.url
        with times.timing("fetch"):
            fetched = self.fetcher.fetch_feed(spec.url, validators_to_send(state, self.clock()))
        now = self.clock()
        if self.stopping.is_set():
            return FeedReport(url=spec.url, name=name, outcome=PollOutcome.ABANDONED, times=times)
        if not isinstance(fetched, Fetched):
            return self._record(spec, name, state, fetched, now, times)
        digest = body_hash(fetched.content)  # once: a body can be 15 MiB
        if is_known_body(state, digest):
            return self._record(spec, name, state, BodyUnchanged(fetched), now, times)

        with times.timing("parse"):
            parsed = parse_feed(fetched.content, url=fetched.url, headers=fetched.headers)
        if isinstance(parsed, ParseFailed):
            return self._record(spec, name, state, NotAFeed(fetched, parsed), now, times)
        for warning in parsed.warnings:
            log.info("%s: %s", name, warning)
        name = spec.name or parsed.title or spec.url
        feed_language = spec.language or parsed.language

        fresh = self.store.unseen_entries(state.feed_id, parsed.entries)
        # Looked up here so that page threads never open a database connection.
        known = {
            entry.key: article
            for entry in fresh
            if entry.link is not None
            and (article := self.store.known_article(entry.link)) is not None
        }
        processed = list(
            self._page_pool.map(
                lambda entry: self._process(
                    ArticleJob(
                        entry=entry,
                        feed_name=name,
                        feed_language=feed_language,
                        known=known.get(entry.key),
                    ),
                    spec.url,
                    times,
                ),
                fresh,
            )
        )
        if self.stopping.is_set():
            # Pages fetched while stopping fell back to feed text; storing them would mark
            # the entries seen and never extract them. The next start redoes this feed.
            return FeedReport(url=spec.url, name=name, outcome=PollOutcome.ABANDONED, times=times)
        new = tuple(
            NewArticle(entry=entry, article=article, hits=hits)
            for entry, (article, hits) in zip(fresh, processed, strict=True)
        )
        result = NewBody(
            fetched=fetched,
            body_hash=digest,
            feed_title=spec.name or parsed.title,
            entries=len(parsed.entries),
            new=new,
        )
        return self._record(spec, name, state, result, now, times)

    def _process(
        self, job: ArticleJob, feed_url: str, times: StageTimes
    ) -> tuple[ArticleText, tuple[HitResult, ...]]:
        """Fetch the entry's page when it is needed, then run the article step."""
        job = self._with_page(job, feed_url, times)
        with times.timing("extract"):
            return self.articles.process(job)

    def _with_page(self, job: ArticleJob, feed_url: str, times: StageTimes) -> ArticleJob:
        link = job.entry.link
        if job.known is not None or link is None:
            return job
        with times.timing("page_fetch"):
            page = self.fetcher.fetch_page(link, feed_url=feed_url)
        if isinstance(page, Fetched):
            return replace(job, page=page)
        reason = page.message if isinstance(page, FetchFailed) else "the page was not modified"
        return replace(job, no_page_reason=reason)

    def _record(
        self,
        spec: FeedSpec,
        name: str,
        state: FeedState,
        result: PollResult,
        now: datetime,
        times: StageTimes,
    ) -> FeedReport:
        update = decide_update(state, spec, result, now)
        with times.timing("store"):
            counts = self.store.record(update)
        return _report(spec, name, update, result, counts, times)

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
                log.info(report.log_line(), extra=report.log_fields())
                reports.append(report)
                if on_done is not None:
                    on_done(report)
        order = {spec.url: index for index, spec in enumerate(specs)}
        return sorted(reports, key=lambda report: order[report.url])


def _report(
    spec: FeedSpec,
    name: str,
    update: FeedUpdate,
    result: PollResult,
    counts: PollCounts,
    times: StageTimes,
) -> FeedReport:
    return FeedReport(
        url=spec.url,
        name=name,
        outcome=update.outcome,
        status=update.http_status,
        entries=result.entries if isinstance(result, NewBody) else 0,
        new_entries=counts.new_entries,
        new_articles=counts.new_articles,
        new_hits=counts.new_hits,
        fallbacks=sum(1 for item in update.new if item.article.note),
        error=update.error,
        next_poll=update.next_poll,
        times=times,
    )
