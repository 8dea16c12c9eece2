"""Plain data passed between the stages of the pipeline.

Nothing here imports third-party code or does I/O. Every stage takes and
returns these frozen dataclasses, so a stage can be tested with literal values::

    FeedSpec ─► fetch ─► Fetched | NotModified | FetchFailed
    Fetched  ─► parse ─► ParsedFeed(entries=[Entry, ...]) | ParseFailed
    Entry + page bytes ─► extract ─► ArticleText
    ArticleText ─► match ─► [HitResult, ...]
    stored hits ─► digest ─► DigestContent ─► notify
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

# --------------------------------------------------------------------------- feeds


@dataclass(frozen=True)
class FeedSpec:
    """A feed as configured in feeds.yaml."""

    url: str
    name: str | None = None  # None: use the feed's own title
    interval: timedelta = timedelta(minutes=15)
    language: str | None = None  # overrides the feed's declared language


@dataclass(frozen=True)
class Validators:
    """HTTP cache validators remembered between polls of one feed."""

    etag: str | None = None
    last_modified: str | None = None


class FetchErrorKind(StrEnum):
    """Why a fetch failed; stored with the feed and shown by `monitor status`."""

    HTTP_STATUS = "http_status"  # 4xx/5xx
    TIMEOUT = "timeout"  # total deadline or connect timeout exceeded
    TOO_LARGE = "too_large"  # decoded body over the cap
    TOO_MANY_REDIRECTS = "too_many_redirects"
    CONNECTION = "connection"  # DNS, refused, reset, TLS
    BLOCKED = "blocked"  # address not allowed (SSRF guard) or scheme not http(s)
    DECODING = "decoding"  # corrupt gzip/deflate, truncated body
    INVALID_URL = "invalid_url"


@dataclass(frozen=True)
class Fetched:
    """A complete response body (already decoded from gzip/deflate/br)."""

    url: str  # final URL after redirects
    status: int
    headers: dict[str, str]  # lower-cased names
    content: bytes
    validators: Validators = Validators()
    elapsed: float = 0.0


@dataclass(frozen=True)
class NotModified:
    """304: the feed is unchanged since the validators we sent."""

    url: str
    validators: Validators = Validators()
    elapsed: float = 0.0


@dataclass(frozen=True)
class FetchFailed:
    """An expected per-URL failure: a value, not an exception."""

    url: str
    kind: FetchErrorKind
    message: str  # human sentence naming the URL and what to do
    status: int | None = None
    retry_after: timedelta | None = None  # from Retry-After on 429/503
    elapsed: float = 0.0


FetchResult = Fetched | NotModified | FetchFailed


# --------------------------------------------------------------------------- parsing


@dataclass(frozen=True)
class Entry:
    """One feed entry, normalised from feedparser's dict."""

    key: str  # stable identity inside its feed: guid, else link, else hash of title+content
    link: str | None  # absolute http(s) URL of the article, or None
    title: str  # plain text, may be ""
    summary: str  # plain text (HTML stripped), may be ""
    content: str  # plain text of the longest content element, may be ""
    published: datetime | None  # aware UTC, or None when absent/invalid
    language: str | None = None  # entry language, else the feed's


@dataclass(frozen=True)
class ParsedFeed:
    title: str | None
    link: str | None
    language: str | None  # "fr", "en", ... (primary subtag, lower case) or None
    entries: tuple[Entry, ...]
    warnings: tuple[str, ...] = ()  # survivable problems (bozo, skipped entries)


@dataclass(frozen=True)
class ParseFailed:
    url: str
    message: str  # "not a feed: the server returned an HTML page ..." etc.


ParseResult = ParsedFeed | ParseFailed


# --------------------------------------------------------------------------- extraction


class TextSource(StrEnum):
    PAGE = "page"  # main text extracted from the linked page
    FEED = "feed"  # fell back to the feed entry's content/summary


@dataclass(frozen=True)
class ArticleText:
    """What the matcher sees for one article."""

    url: str | None
    title: str
    text: str  # full text, paragraphs separated by "\n"
    source: TextSource
    note: str | None = None  # why we fell back to the feed text, if we did
    language: str | None = None  # declared by page or feed; None = detect
    published: datetime | None = None


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class MatchedClause:
    """One clause of a watchlist and what satisfied it."""

    clause: str  # the clause as written, e.g. '"coopération militaire"' or 'NEAR/10(...)'
    words: tuple[str, ...]  # the matched words as they appear in the article
    field: str  # "title" or "text"


@dataclass(frozen=True)
class HitResult:
    """A watchlist matched an article: what matched and where."""

    watchlist: str
    matched: tuple[str, ...]  # terms of the watchlist that matched, deduplicated, in query order
    clauses: tuple[MatchedClause, ...]
    snippets: tuple[str, ...]  # up to 3 sentences, matched words marked with [[...]]


# --------------------------------------------------------------------------- store / digest


@dataclass(frozen=True)
class StoredHit:
    """A hit as read back from the database, ready for the digest or `monitor hits`."""

    hit_id: int
    watchlist: str
    article_id: int
    title: str
    url: str | None
    feed: str
    published: datetime | None
    found_at: datetime
    matched: tuple[str, ...]
    snippets: tuple[str, ...]
    backfilled: bool = False


@dataclass(frozen=True)
class DigestContent:
    """Everything one digest email says, grouped by watchlist."""

    digest_key: str  # deterministic: used for Message-ID and to never send twice
    generated_at: datetime
    groups: tuple[tuple[str, tuple[StoredHit, ...]], ...]  # (watchlist, hits) in config order
    backfilled: tuple[tuple[str, tuple[StoredHit, ...]], ...] = ()
    hit_ids: tuple[int, ...] = field(default=())

    @property
    def total(self) -> int:
        return len(self.hit_ids)
