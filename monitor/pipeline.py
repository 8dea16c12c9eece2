"""One poll of one feed, start to finish, and a poll of many feeds at once.

This module only moves data between the stages; each decision lives in the
stage that owns it::

    store.feed_state ─► schedule.validators_to_send ─► fetcher.fetch_feed
      ├─ FetchFailed, NotModified, a known body (schedule.is_known_body) ──────────┐
      ├─ parse.parse_feed ─► store.unseen_entries ─► fetcher.fetch_page (threads)   │
      │    (a large body parsed in a worker; pages: a share of threads, a deadline) │
      │    ─► articles.process (extraction and matching, in the workers) ─► NewBody │
      └─ a sitemap (type: sitemap, or a <urlset>/<sitemapindex> body):              │
           sitemaps.parse_sitemap [─► child sitemaps, newest first, fetch_page]     │
           ─► store.unseen_entries ─► sitemaps.entries_to_read (newest, capped)     │
           ─► the same page fetches and article step ─► NewBody (waiting, revisit)  │
    schedule.decide_update(state, spec, result, now) ─► FeedUpdate ◄───────────────┘
    ─► store.record(update)       (one transaction per feed: entries, articles, hits, state)

A failure at any step is recorded for that feed alone; the other feeds carry on.

A slow site delays only its own feed. The page threads are shared, but a feed has
at most `pages_per_feed` jobs among them at once, submitted as its earlier ones end,
so its 200 pages on a stalled host never queue ahead of other feeds' pages. A whole
poll ends by `feed_deadline` (poll.feed_deadline): every request it makes ends by
then (`fetch_cutoff`), and an entry whose page was not read by then is not stored.
It stays unseen, counted as waiting, and the body is marked to be read again
(`NewBody.revisit`), so the next poll reads it: nothing is matched on feed text for
want of time, and nothing is stored twice. A feed body over PARSE_IN_WORKER_BYTES
is parsed in a process of its own (`ExtractionPool.parse`) within half of the time left.

The report of each poll carries the feed's next poll time, which the daemon
schedules without reading it back from the database.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed, wait
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Protocol

from monitor.errors import DatabaseFull
from monitor.fetch import fetch_cutoff
from monitor.models import (
    ArticleJob,
    ArticleOutcome,
    BodyUnchanged,
    Clock,
    Entry,
    FeedSpec,
    FeedState,
    FeedUpdate,
    Fetched,
    FetchFailed,
    FetchResult,
    NewArticle,
    NewBody,
    NotAFeed,
    ParseFailed,
    ParseResult,
    PollCounts,
    PollError,
    PollOutcome,
    PollResult,
    Validators,
    Watchlist,
)
from monitor.parse import parse_feed
from monitor.schedule import body_hash, decide_update, is_known_body, validators_to_send
from monitor.sitemaps import (
    ParsedSitemap,
    children_to_read,
    entries_to_read,
    is_fresh,
    looks_like_sitemap,
    parse_sitemap,
    read_since,
)
from monitor.store import Store
from monitor.stories import signature

log = logging.getLogger(__name__)

# A feed body larger than this is parsed in a process of its own, under a time limit,
# rather than in the polling thread (where feedparser would hold the GIL for as long as
# it takes: about 1 s per 1,000 entries on a loaded machine). Typical feeds are far smaller.
PARSE_IN_WORKER_BYTES = 256 * 1024


class FeedFetcher(Protocol):
    """What a poll needs of HTTP; `monitor.fetch.Fetcher` is the real one."""

    def fetch_feed(self, url: str, validators: Validators = ...) -> FetchResult: ...

    def fetch_page(self, url: str, *, feed_url: str) -> FetchResult: ...

    def close(self) -> None: ...


class ArticleProcessor(Protocol):
    """Runs the article step; `monitor.workers.ExtractionPool` runs it in worker processes,
    `monitor.articles.InlineArticles` in the calling thread."""

    def process(self, job: ArticleJob) -> ArticleOutcome: ...

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None: ...

    def parse(
        self, content: bytes, *, url: str, headers: Mapping[str, str], timeout: float
    ) -> ParseResult: ...


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
    waiting: int = 0  # entries left for the next poll (sitemap cap, feed deadline)
    error: str | None = None
    next_poll: datetime | None = None  # None: nothing was recorded
    times: StageTimes = field(default_factory=StageTimes)
    moved_to: str | None = None  # where the feed's permanent redirects lead, if it has some

    @property
    def quiet(self) -> bool:
        """Nothing new and nothing wrong: the daemon logs it only with ``--verbose``."""
        quiet_outcomes = (PollOutcome.NOT_MODIFIED, PollOutcome.UNCHANGED)
        return self.outcome in quiet_outcomes and self.moved_to is None

    def log_fields(self) -> dict[str, object]:
        """The report as fields, for JSON logs (`monitor --log-format json`)."""
        return {
            "event": "poll",
            "feed": self.name,
            "url": self.url,
            "outcome": self.outcome.value,
            "status": self.status,
            "new_entries": self.new_entries,
            "waiting": self.waiting,
            "new_hits": self.new_hits,
            "error": self.error,
            "moved_to": self.moved_to,
        }

    def log_line(self) -> str:
        if self.outcome is PollOutcome.ABANDONED:
            return f"{self.name}: abandoned, the daemon is stopping (nothing recorded)"
        moved = (
            f"; it moved permanently to {self.moved_to}: put the new URL in feeds.yaml"
            if self.moved_to
            else ""
        )
        if self.outcome is PollOutcome.FAILED:
            return f"{self.name}: FAILED {self.error}{moved}"
        if self.outcome in (PollOutcome.NOT_MODIFIED, PollOutcome.UNCHANGED):
            return f"{self.name}: {self.outcome.words} (HTTP {self.status}){moved}"
        waiting = f", {self.waiting} waiting for the next poll" if self.waiting else ""
        return (
            f"{self.name}: {self.entries} entries, {self.new_entries} new{waiting}, "
            f"{self.new_hits} hits, {self.fallbacks} from feed text (HTTP {self.status}){moved}"
        )


@dataclass
class PollSummary:
    """Polls counted since `since`, for the daemon's periodic summary line: at 10,000 feeds
    a line per poll that brought nothing new would be 10,000 lines a round, more than
    journald's default rate limit lets through (the failures among them would be lost)."""

    since: datetime
    outcomes: Counter[PollOutcome] = field(default_factory=Counter)
    new_articles: int = 0
    new_hits: int = 0

    def count(self, report: FeedReport) -> None:
        self.outcomes[report.outcome] += 1
        self.new_articles += report.new_articles
        self.new_hits += report.new_hits

    def log_line(self, now: datetime) -> str:
        minutes = max(1, round((now - self.since).total_seconds() / 60))
        counts = self.outcomes
        parts = [
            f"{counts[outcome]:,} {words}"
            for outcome, words in (
                (PollOutcome.NOT_MODIFIED, "not modified"),
                (PollOutcome.UNCHANGED, "unchanged"),
                (PollOutcome.UPDATED, "with new entries"),
                (PollOutcome.FAILED, "failed"),
                (PollOutcome.ABANDONED, "abandoned"),
            )
            if counts[outcome]
        ]
        return (
            f"polls in the last {minutes} min: {sum(counts.values()):,}"
            f"{': ' if parts else ''}{', '.join(parts)}; "
            f"{self.new_articles:,} new articles, {self.new_hits:,} new hits"
        )

    def log_fields(self, now: datetime) -> dict[str, object]:
        return {
            "event": "poll_summary",
            "since": self.since.isoformat(),
            "until": now.isoformat(),
            "polls": sum(self.outcomes.values()),
            **{outcome.value: self.outcomes[outcome] for outcome in PollOutcome},
            "new_articles": self.new_articles,
            "new_hits": self.new_hits,
        }


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
    max_sitemap_urls: int = 200  # poll.max_sitemap_urls: pages read from a sitemap per poll
    # Page threads one feed may hold at once: a feed of 200 pages on a slow host then
    # waits for its own share instead of holding every thread while other feeds' pages queue.
    pages_per_feed: int = 4
    feed_deadline: float = 300.0  # poll.feed_deadline, seconds: a whole poll of one feed
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
        deadline = time.monotonic() + self.feed_deadline
        token = fetch_cutoff.set(deadline)  # the feed's requests end by its deadline too
        try:
            return self._poll_feed(spec, deadline)
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
        finally:
            fetch_cutoff.reset(token)

    def _poll_feed(self, spec: FeedSpec, deadline: float) -> FeedReport:
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

        if spec.kind == "sitemap" or looks_like_sitemap(fetched.content):
            return self._poll_sitemap(spec, name, state, fetched, digest, now, times, deadline)
        with times.timing("parse"):
            parsed = self._parse(fetched, deadline)
        if isinstance(parsed, ParseFailed):
            return self._record(spec, name, state, NotAFeed(fetched, parsed), now, times)
        for warning in parsed.warnings:
            log.info("%s: %s", name, warning)
        name = spec.name or parsed.title or spec.url
        feed_language = spec.language or parsed.language

        fresh = self.store.unseen_entries(state.feed_id, parsed.entries)
        read = self._new_articles(spec, name, feed_language, fresh, times, deadline)
        if read is None:
            return FeedReport(url=spec.url, name=name, outcome=PollOutcome.ABANDONED, times=times)
        new, cut = read
        result = NewBody(
            fetched=fetched,
            body_hash=digest,
            feed_title=spec.name or parsed.title,
            entries=len(parsed.entries),
            new=new,
            waiting=cut,
            revisit=cut > 0,
        )
        return self._record(spec, name, state, result, now, times)

    def _parse(self, fetched: Fetched, deadline: float) -> ParseResult:
        """The feed read from `fetched`; a large body in a worker, given at most half of
        what is left of the feed's deadline so that its pages keep the other half."""
        if len(fetched.content) <= PARSE_IN_WORKER_BYTES:
            return parse_feed(fetched.content, url=fetched.url, headers=fetched.headers)
        limit = max(1.0, (deadline - time.monotonic()) / 2)
        return self.articles.parse(
            fetched.content, url=fetched.url, headers=fetched.headers, timeout=limit
        )

    def _new_articles(
        self,
        spec: FeedSpec,
        name: str,
        feed_language: str | None,
        fresh: Sequence[Entry],
        times: StageTimes,
        deadline: float,
    ) -> tuple[tuple[NewArticle, ...], int] | None:
        """The unseen entries turned into articles with their hits, and how many entries
        the feed's deadline cut off (left unstored, so unseen: the next poll reads them);
        None when the daemon began stopping meanwhile."""
        # Looked up here so that page threads never open a database connection.
        known = {
            entry.key: article
            for entry in fresh
            if entry.link is not None
            and (article := self.store.known_article(entry.link)) is not None
        }
        jobs = [
            ArticleJob(
                entry=entry,
                feed_name=name,
                feed_language=feed_language,
                known=known.get(entry.key),
            )
            for entry in fresh
        ]
        processed = self._run_pages(jobs, spec.url, times, deadline)
        if self.stopping.is_set():
            # Pages fetched while stopping fell back to feed text; storing them would mark
            # the entries seen and never extract them. The next start redoes this feed.
            return None
        # Signed here, in the feed's thread, for the store to find the article's story;
        # an article already stored under its URL needs none.
        new = tuple(
            NewArticle(
                entry=entry,
                article=outcome[0],
                hits=outcome[1],
                failures=outcome[2],
                signature=None if entry.key in known else signature(outcome[0].text),
            )
            for entry, outcome in zip(fresh, processed, strict=True)
            if outcome is not None
        )
        cut = len(fresh) - len(new)
        if cut:
            log.warning(
                "%s: poll.feed_deadline (%s s) reached with %d of %d new entries not read; "
                "they are read at the next poll",
                name,
                f"{self.feed_deadline:g}",
                cut,
                len(fresh),
                extra={"event": "feed_deadline", "feed": name, "waiting": cut},
            )
        return new, cut

    def _run_pages(
        self, jobs: Sequence[ArticleJob], feed_url: str, times: StageTimes, deadline: float
    ) -> list[ArticleOutcome | None]:
        """Each job's outcome, in order; None for a job the deadline cut off.

        At most `pages_per_feed` of this feed's jobs are in the shared page pool at once,
        so a feed of many pages on a slow host waits for its own threads and never
        queues ahead of every other feed's pages. At the deadline the feed stops waiting:
        jobs not submitted and jobs still running are cut (a running one stops before its
        page fetch or its extraction, and its result is dropped).
        """
        share = threading.Semaphore(self.pages_per_feed)
        cut = threading.Event()
        futures: list[Future[ArticleOutcome | None]] = []
        for job in jobs:
            if not share.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            if self.stopping.is_set():
                break
            future = self._page_pool.submit(self._process, job, feed_url, times, cut, deadline)
            future.add_done_callback(lambda _: share.release())
            futures.append(future)
        wait(futures, timeout=max(0.0, deadline - time.monotonic()))
        cut.set()  # from here on, a job still running ends with None
        outcomes = [future.result() if future.done() else None for future in futures]
        return outcomes + [None] * (len(jobs) - len(futures))

    # ------------------------------------------------------------------ sitemaps

    def _poll_sitemap(
        self,
        spec: FeedSpec,
        name: str,
        state: FeedState,
        fetched: Fetched,
        digest: str,
        now: datetime,
        times: StageTimes,
        deadline: float,
    ) -> FeedReport:
        """A sitemap (or sitemap index): its newest unseen URLs, at most
        `max_sitemap_urls`, read as entries; the rest wait for the next poll."""
        with times.timing("parse"):
            parsed = parse_sitemap(fetched.content, url=fetched.url, headers=fetched.headers)
        if isinstance(parsed, ParseFailed):
            return self._record(spec, name, state, NotAFeed(fetched, parsed), now, times)
        name = spec.name or parsed.title or name
        for warning in parsed.warnings:
            log.info("%s: %s", name, warning)
        since = read_since(state.last_success)
        entries = list(parsed.entries)
        if parsed.is_index:
            read = self._read_children(spec, name, state, parsed, since, times, deadline)
            if self.stopping.is_set():  # the children failed because the client is closing
                return FeedReport(
                    url=spec.url, name=name, outcome=PollOutcome.ABANDONED, times=times
                )
            if not isinstance(read, ParsedSitemap):
                return self._record(spec, name, state, read, now, times)
            entries = list(read.entries)
        # Dated before `since`: never read, so not looked up (an archive sitemap has 50,000).
        fresh = [entry for entry in entries if is_fresh(entry.published, since)]
        unseen = self.store.unseen_entries(state.feed_id, fresh)
        chosen, waiting = entries_to_read(unseen, since, self.max_sitemap_urls)
        articles = self._new_articles(spec, name, spec.language, chosen, times, deadline)
        if articles is None:
            return FeedReport(url=spec.url, name=name, outcome=PollOutcome.ABANDONED, times=times)
        new, cut = articles
        waiting += cut
        result = NewBody(
            fetched=fetched,
            body_hash=digest,
            feed_title=spec.name or parsed.title,
            entries=len(entries),
            new=new,
            waiting=waiting,
            revisit=parsed.is_index or waiting > 0,
        )
        return self._record(spec, name, state, result, now, times)

    def _read_children(
        self,
        spec: FeedSpec,
        name: str,
        state: FeedState,
        index: ParsedSitemap,
        since: datetime | None,
        times: StageTimes,
        deadline: float,
    ) -> ParsedSitemap | FetchFailed | NotAFeed:
        """The entries of an index's child sitemaps, newest child first, until enough
        fresh unseen entries for one poll were found; a failure when no child could be read.

        A child is fetched like an article page (same caps, and the SSRF guard: only
        the feed's own site may be private), without validators: none are stored per child.
        """
        entries: dict[str, Entry] = {}
        new_found = 0  # fresh unseen entries found so far
        failures: list[FetchFailed | NotAFeed] = []
        children = children_to_read(index.children, since)
        for child in children:
            if new_found >= self.max_sitemap_urls or time.monotonic() >= deadline:
                break
            with times.timing("fetch"):
                got = self.fetcher.fetch_page(child.url, feed_url=spec.url)
            if not isinstance(got, Fetched):
                message = got.message if isinstance(got, FetchFailed) else "not modified"
                log.warning("%s: child sitemap skipped: %s", name, message)
                if isinstance(got, FetchFailed):
                    failures.append(got)
                continue
            with times.timing("parse"):
                parsed = parse_sitemap(got.content, url=got.url, headers=got.headers)
            if isinstance(parsed, ParseFailed) or parsed.is_index:
                failure = parsed if isinstance(parsed, ParseFailed) else None
                if failure is None:
                    failure = ParseFailed(
                        url=got.url,
                        message=f"{got.url} is a sitemap index inside the index {spec.url}; "
                        "only one level is read — configure the inner index as its own feed",
                    )
                log.warning("%s: child sitemap skipped: %s", name, failure.message)
                failures.append(NotAFeed(got, failure))
                continue
            for warning in parsed.warnings:
                log.info("%s: %s: %s", name, got.url, warning)
            added = [entry for entry in parsed.entries if entry.key not in entries]
            entries.update((entry.key, entry) for entry in added)
            dated_after = [entry for entry in added if is_fresh(entry.published, since)]
            new_found += len(self.store.unseen_entries(state.feed_id, dated_after))
        if children and len(failures) == len(children):
            return failures[0]
        return ParsedSitemap(entries=tuple(entries.values()))

    def _process(
        self,
        job: ArticleJob,
        feed_url: str,
        times: StageTimes,
        cut: threading.Event,
        deadline: float,
    ) -> ArticleOutcome | None:
        """Fetch the entry's page when it is needed, then run the article step; None when
        the feed's deadline passed first."""
        if cut.is_set():
            return None
        token = fetch_cutoff.set(deadline)  # a page fetch ends by the deadline too
        try:
            page_job = self._with_page(job, feed_url, times)
        finally:
            fetch_cutoff.reset(token)
        if cut.is_set() or (page_job.no_page_reason and time.monotonic() >= deadline):
            return None  # a page that failed at the deadline is read at the next poll
        job = page_job
        with times.timing("extract"):
            outcome = self.articles.process(job)
        article, _, failures = outcome
        for failure in failures:  # logged here: worker processes have no log handlers of ours
            label = article.url or job.entry.key
            log.warning(
                "%s: watchlist %r failed on this article, skipped for it alone: %s",
                label,
                failure.watchlist,
                failure.error,
                extra={
                    "event": "watchlist_failure",
                    "watchlist": failure.watchlist,
                    "url": label,
                    "error": failure.error,
                },
            )
        return outcome

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
        waiting=result.waiting if isinstance(result, NewBody) else 0,
        error=update.error,
        next_poll=update.next_poll,
        times=times,
        moved_to=update.moved_to,
    )
