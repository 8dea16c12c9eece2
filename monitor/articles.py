"""The article step: one new entry and its page (or none) → `(ArticleText, hits)`.

This is the only place that decides between the page's text and the feed's
own text, and the only place matching is called from during a poll. The
extraction workers run `process_article` and nothing else; the pipeline
never matches.

Where the text comes from, in order:

1. the article already stored under the entry's URL (another feed had it);
2. the fetched page, when it yields an article: not empty, not over the size
   limit, with at least `MIN_ARTICLE_CHARS` of text, and not less than half
   as long as the entry's own content (a paywall or consent page then stands
   between us and the article the feed already carries);
3. otherwise the feed entry's content or summary, with `ArticleText.note`
   saying why, so the user can see an article was matched on its summary.

The article's URL is the page's (after redirects), or its declared canonical URL when
that is on the same site, without tracking parameters (`monitor.stories.article_url`):
the address the digest shows and the store keys the article by.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

from monitor.extract import extract_page
from monitor.matching import Matcher
from monitor.models import (
    ArticleJob,
    ArticleOutcome,
    ArticleText,
    Entry,
    ParseResult,
    TextSource,
    Watchlist,
)
from monitor.parse import parse_feed
from monitor.stories import article_url, clean_url

__all__ = [
    "InlineArticles",
    "article_from_page",
    "article_text",
    "fallback_article",
    "process_article",
    "step_failed",
]


def process_article(job: ArticleJob, matcher: Matcher) -> ArticleOutcome:
    """The text of one new entry, the hits of `matcher`'s watchlists on it, and the
    watchlists whose matching raised on it (skipped for this article alone)."""
    article = article_text(job)
    hits, failures = matcher.match_reporting(
        article, feed_name=job.feed_name, feed_language=job.feed_language
    )
    return article, tuple(hits), tuple(failures)


def step_failed(job: ArticleJob, reason: str) -> ArticleOutcome:
    """What an entry keeps when the article step itself could not run on it, not even
    on the feed's text: that text, no hits, and the reason in the note."""
    article = fallback_article(
        job.entry, url=job.entry.link, reason=reason, feed_language=job.feed_language
    )
    return article, (), ()


def article_text(job: ArticleJob) -> ArticleText:
    """The text `job` stands for: stored article, page, or the feed's own text."""
    if job.known is not None:
        return job.known
    if job.page is not None:
        try:
            return article_from_page(
                job.page.content,
                url=job.page.url,
                entry=job.entry,
                feed_language=job.feed_language,
            )
        except MemoryError:
            reason = "extraction ran out of memory on this page"
            return fallback_article(
                job.entry, url=job.page.url, reason=reason, feed_language=job.feed_language
            )
    reason = job.no_page_reason or "the entry has no web link"
    return fallback_article(
        job.entry, url=job.entry.link, reason=reason, feed_language=job.feed_language
    )


def article_from_page(
    html: bytes, *, url: str | None, entry: Entry, feed_language: str | None = None
) -> ArticleText:
    """The article of a page an entry links to, or the entry's own text when the page
    cannot stand for it (see the module docstring)."""
    page = extract_page(html, url=url)
    address = url or entry.link
    url = article_url(address, page.canonical_url) if address else None
    reason = page.problem
    if reason is None and len(entry.content) > 2 * len(page.text):
        reason = (
            f"the page yielded much less text ({len(page.text)} characters) than the feed's "
            f"content ({len(entry.content)} characters), as a paywall or consent page does"
        )
    if reason is not None:
        fallback = fallback_article(entry, url=url, reason=reason, feed_language=feed_language)
        if fallback.title or not page.title:
            return fallback
        # An untitled entry borrows the page's title, and its language with it.
        return replace(fallback, title=page.title, language=fallback.language or page.language)
    return ArticleText(
        url=url,
        title=page.title or entry.title,
        text=page.text,
        source=TextSource.PAGE,
        language=page.language or entry.language or feed_language,
        published=entry.published,
    )


def fallback_article(
    entry: Entry, *, url: str | None, reason: str, feed_language: str | None = None
) -> ArticleText:
    """The feed entry's own text, for when its page could not be fetched or used.

    `reason` says what went wrong (the fetch error message, for instance); it is kept
    in `ArticleText.note` so the user can see why an article was matched on its
    summary only.
    """
    address = url or entry.link
    return ArticleText(
        url=clean_url(address) if address else None,
        title=entry.title,
        text=entry.content or entry.summary,
        source=TextSource.FEED,
        note=f"{reason}; using the feed's text",
        language=entry.language or feed_language,
        published=entry.published,
    )


class InlineArticles:
    """The article step in the calling thread, with no worker process: for tools that
    process a handful of articles, and for tests of the pipeline's own logic."""

    def __init__(self, watchlists: Sequence[Watchlist] = ()) -> None:
        self._matcher = Matcher(watchlists)

    def process(self, job: ArticleJob) -> ArticleOutcome:
        return process_article(job, self._matcher)

    def set_watchlists(self, watchlists: Sequence[Watchlist]) -> None:
        self._matcher = Matcher(watchlists, previous=self._matcher)

    def parse(
        self, content: bytes, *, url: str, headers: Mapping[str, str], timeout: float
    ) -> ParseResult:
        """`parse_feed` in the calling thread; `timeout` is not enforced here."""
        return parse_feed(content, url=url, headers=headers)
