"""Plain data passed between the stages of the pipeline.

Nothing here imports third-party code or does I/O. Every stage takes and
returns these frozen dataclasses, so a stage can be tested with literal values::

    FeedSpec ─► fetch ─► Fetched | NotModified | FetchFailed
    Fetched  ─► parse ─► ParsedFeed(entries=[Entry, ...]) | ParseFailed
    ArticleJob (entry + page bytes) ─► articles ─► ArticleText + [HitResult, ...]
    FeedState + PollResult + now ─► schedule.decide_update ─► FeedUpdate ─► store.record
    stored hits ─► ClaimedDigest ─► digest ─► DigestContent ─► notify

`Clock` is the one way code below the CLI and the daemon learns the time: they
pass theirs down, so tests drive every stage with literal times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Literal

from monitor import DEFAULT_USER_AGENT

if TYPE_CHECKING:
    from monitor.query import Node

Clock = Callable[[], datetime]  # returns an aware datetime


def utc_now() -> datetime:
    """The system clock: what the CLI and the daemon pass down as their `Clock`."""
    return datetime.now(UTC)


# --------------------------------------------------------------------------- feeds


@dataclass(frozen=True)
class FeedSpec:
    """A feed as configured in feeds.yaml."""

    url: str
    name: str | None = None  # None: use the feed's own title
    interval: timedelta = timedelta(minutes=15)
    language: str | None = None  # overrides the feed's declared language
    # "sitemap": the URL serves a (news) sitemap; "feed" also reads one when the URL serves it.
    kind: Literal["feed", "sitemap"] = "feed"


@dataclass(frozen=True)
class FetchLimits:
    """Bounds applied to every request: what one slow, huge or hostile server can cost.

    `PollSettings` (the `poll:` section of feeds.yaml) is this with an interval, so
    these are the one set of poll defaults.
    """

    timeout: float = 60.0  # whole request: connect + headers + body, all redirects
    connect_timeout: float = 10.0  # DNS + TCP connect + TLS handshake, per connection
    max_bytes: int = 15 * 1024 * 1024  # decoded body cap
    max_redirects: int = 5
    concurrency: int = 8  # requests in flight overall
    per_host: int = 2  # requests in flight to one host
    user_agent: str = DEFAULT_USER_AGENT

    def __post_init__(self) -> None:
        if self.timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("FetchLimits: timeout and connect_timeout must be positive")
        if self.max_bytes <= 0:
            raise ValueError("FetchLimits: max_bytes must be positive")
        if self.max_redirects < 0:
            raise ValueError("FetchLimits: max_redirects must be zero or more")
        if self.concurrency < 1 or self.per_host < 1:
            raise ValueError("FetchLimits: concurrency and per_host must be at least 1")
        if not self.user_agent.strip():
            raise ValueError("FetchLimits: user_agent must not be empty")

    @property
    def max_raw_bytes(self) -> int:
        """Cap on the bytes on the wire: deflate adds at most a few bytes per 16 KiB block."""
        return self.max_bytes + self.max_bytes // 100 + 64 * 1024


@dataclass(frozen=True)
class Validators:
    """HTTP cache validators remembered between polls of one feed."""

    etag: str | None = None
    last_modified: str | None = None


class FetchErrorKind(StrEnum):
    """Why a fetch failed, for callers to branch on; not stored (only the message is)."""

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
    moved_to: str | None = None  # where permanent redirects (301/308) from the URL asked led


@dataclass(frozen=True)
class NotModified:
    """304: the feed is unchanged since the validators we sent."""

    url: str
    validators: Validators = Validators()
    elapsed: float = 0.0
    moved_to: str | None = None  # where permanent redirects (301/308) from the URL asked led


@dataclass(frozen=True)
class FetchFailed:
    """An expected per-URL failure: a value, not an exception."""

    url: str
    kind: FetchErrorKind
    message: str  # human sentence naming the URL and what to do
    status: int | None = None
    retry_after: timedelta | None = None  # from Retry-After on 429/503
    elapsed: float = 0.0
    moved_to: str | None = None  # where permanent redirects (301/308) from the URL asked led


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


# --------------------------------------------------------------------------- feed state and updates


@dataclass(frozen=True)
class FeedState:
    """What the database remembers about one feed between polls."""

    feed_id: int
    url: str
    title: str | None
    validators: Validators
    body_hash: str | None
    last_poll: datetime | None
    last_success: datetime | None
    http_status: int | None
    entries: int  # entries stored for this feed so far
    last_error: str | None
    error_count: int
    next_poll: datetime | None
    last_full_fetch: datetime | None = None  # last 200 with a whole body
    failing_since: datetime | None = None  # first failure of the current run of failures
    gone_since: datetime | None = None  # first 404/410 of the current run of them
    moved_to: str | None = None  # where the feed's permanent redirects lead, when it has some
    moved_since: datetime | None = None  # when that redirect was first seen


class PollOutcome(StrEnum):
    """How one poll of one feed ended."""

    UPDATED = "updated"  # a new body was parsed and its new entries stored
    NOT_MODIFIED = "not_modified"  # 304
    UNCHANGED = "unchanged"  # 200 with the body already stored: not parsed again
    FAILED = "failed"  # fetch failed, or the body is not a feed
    ABANDONED = "abandoned"  # the daemon stopped mid-poll: nothing recorded

    @property
    def words(self) -> str:
        return self.value.replace("_", " ")


@dataclass(frozen=True)
class BodyUnchanged:
    """A 200 whose body is byte for byte the one stored: nothing to parse."""

    fetched: Fetched


@dataclass(frozen=True)
class NotAFeed:
    """A 200 whose body could not be read as a feed."""

    fetched: Fetched
    failure: ParseFailed


@dataclass(frozen=True)
class NewBody:
    """A 200 with a new body, parsed, and its unseen entries turned into articles."""

    fetched: Fetched
    body_hash: str
    feed_title: str | None  # the configured name, else the feed's own title
    entries: int  # entries in the body, seen or not
    new: tuple[NewArticle, ...]
    waiting: int = 0  # new sitemap entries left for the next poll (poll.max_sitemap_urls)
    # The next poll must fetch and read the body again whatever its validators and hash
    # say: entries are waiting, or it is a sitemap index whose children change without it.
    revisit: bool = False


@dataclass(frozen=True)
class PollError:
    """A poll that broke on a bug of ours; recorded as a failure of that feed alone."""

    message: str


# Everything a poll can find, as the decider sees it.
PollResult = FetchFailed | NotModified | BodyUnchanged | NotAFeed | NewBody | PollError


@dataclass(frozen=True)
class FeedUpdate:
    """Every change one poll makes to a feed, decided by `schedule.decide_update`
    with no I/O and written by `Store.record` in one transaction.

    The fields are the feed's new values, not instructions: the store writes
    them as they are, so no rule lives in SQL.
    """

    feed_id: int
    outcome: PollOutcome
    polled_at: datetime
    next_poll: datetime
    http_status: int | None
    title: str | None
    validators: Validators
    body_hash: str | None
    last_success: datetime | None
    last_full_fetch: datetime | None
    error: str | None  # the last error in words; None after a success
    error_count: int  # consecutive failed polls
    new: tuple[NewArticle, ...] = ()
    failing_since: datetime | None = None
    gone_since: datetime | None = None
    moved_to: str | None = None
    moved_since: datetime | None = None


@dataclass(frozen=True)
class PollCounts:
    """What `Store.record` added: duplicates (another feed, a re-poll) are not counted."""

    new_entries: int = 0
    new_articles: int = 0
    new_hits: int = 0


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


@dataclass(frozen=True)
class ArticleJob:
    """One new entry and what is known of its page: the input of the article step.

    Exactly one of `known`, `page` and `no_page_reason` says where the text comes
    from: the article already stored under this URL, the fetched page, or (with
    the reason) the feed's own text.
    """

    entry: Entry
    feed_name: str | None
    feed_language: str | None
    page: Fetched | None = None
    known: ArticleText | None = None
    no_page_reason: str | None = None


@dataclass(frozen=True)
class NewArticle:
    """One new entry, processed, ready to store."""

    entry: Entry
    article: ArticleText
    hits: tuple[HitResult, ...]
    failures: tuple[MatchFailure, ...] = ()  # watchlists whose matching raised on it
    # MinHash of the text (`monitor.stories.signature`); None: too short, or not computed.
    signature: bytes | None = None


# --------------------------------------------------------------------------- matching


@dataclass(frozen=True)
class Watchlist:
    """A named query. ``language`` chooses the stemmer for its terms (an article in another
    language is still matched, through that stemmer); None follows each article's language."""

    name: str
    query: Node
    language: str | None = None  # stems the terms; None = the article's language
    feeds: tuple[str, ...] = ()  # scope by feed name; () = all feeds
    # Scope by article language (primary subtags such as "fr"); () = any. An article whose
    # language is unknown (undeclared and not detected) stays in scope rather than be lost.
    languages: tuple[str, ...] = ()
    topic: str | None = None  # what the analyst wants, in a sentence: shown in the digest
    hide_passing: bool = False  # passing mentions stay out of the digest (kept in the database)


@dataclass(frozen=True)
class MatchedClause:
    """One clause of a watchlist and what satisfied it."""

    clause: str  # the clause as written, e.g. '"coopération militaire"' or 'NEAR/10(...)'
    words: tuple[str, ...]  # the matched words as they appear in the article
    field: str  # "title" or "text"


@dataclass(frozen=True)
class RelevanceFeatures:
    """What a hit's relevance is computed from (see `monitor.matching.relevance`)."""

    strength: float  # 0-1: the query's clauses from title, lead, spread and share, combined
    together: bool  # every positive clause in one sentence, or all in the title
    in_title: bool  # some positive clause in the title
    sentences: int  # sentences of the text outside related-link lines and captions, >= 1
    topic_density: float | None  # the topic's words per 100 words; None: no `topic:`


@dataclass(frozen=True)
class HitResult:
    """A watchlist matched an article: what matched and where."""

    watchlist: str
    matched: tuple[str, ...]  # terms of the watchlist that matched, deduplicated, in query order
    clauses: tuple[MatchedClause, ...]
    snippets: tuple[str, ...]  # up to 3 sentences, matched words marked with [[...]]
    relevance: float = 1.0  # 0-1: how much the article is about the watchlist's topic
    in_passing: bool = False  # a passing mention: listed compactly after the main hits
    evidence: str = ""  # the relevance in words: "in the title and in 6 of 30 sentences"
    features: RelevanceFeatures | None = None  # the relevance's inputs (not stored)


@dataclass(frozen=True)
class MatchFailure:
    """A watchlist whose matching raised on one article (a bug, a query too deep for the
    stack, memory): that article is skipped for it, the other watchlists still match."""

    watchlist: str
    error: str  # "RecursionError: maximum recursion depth exceeded"


# The article step's result: the text, the hits, and the watchlists that failed on it.
ArticleOutcome = tuple[ArticleText, tuple[HitResult, ...], tuple[MatchFailure, ...]]


# --------------------------------------------------------------------------- store / digest


@dataclass(frozen=True)
class StoryCopy:
    """Another article telling the same story as a hit's: another outlet or URL."""

    feed: str  # the feed that brought it first
    url: str | None
    title: str


@dataclass(frozen=True)
class WatchlistFailures:
    """What `monitor status` says of a watchlist whose matching failed on some articles."""

    watchlist: str
    articles: int  # distinct articles it failed on
    last_error: str
    last_url: str | None
    last_at: datetime


@dataclass(frozen=True)
class StoredArticle:
    """An article as read back from the database."""

    article_id: int
    article: ArticleText
    feed: str  # the feed that brought it first
    first_seen: datetime
    text_dropped_at: datetime | None = None  # retention emptied its text (title kept)


@dataclass(frozen=True)
class SearchResult:
    """A stored article that `monitor search` found, and why (its hit is never stored)."""

    stored: StoredArticle
    hit: HitResult


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
    relevance: float | None = None  # None: found before relevance was computed, not rescored
    in_passing: bool = False
    evidence: str | None = None
    # The other copies of the hit's story (other outlets or URLs), oldest first.
    also_in: tuple[StoryCopy, ...] = ()


@dataclass(frozen=True)
class ClaimedDigest:
    """A digest reserved for sending: its hits belong to it until finished or released."""

    key: str
    message_id: str  # deterministic: a re-send after a crash carries the same one
    hits: tuple[StoredHit, ...]  # oldest first
    created_at: datetime
    attempts: int  # 1 on the first claim; more when re-sent after a crash or failure


class NoticeKind(StrEnum):
    """What a health notice in the digest is about."""

    FAILING = "failing"  # a feed failing for more than a day
    SILENT = "silent"  # no new entry for much longer than usual
    MOVED = "moved"  # a permanent redirect: the feed has a new address
    GONE = "gone"  # 404/410 for more than a day
    ALERT_FAILED = "alert_failed"  # an instant alert that could not be delivered


@dataclass(frozen=True)
class HealthNotice:
    """Something wrong with a source or an alert destination, for the digest's health
    section. The digest words it in its own language; `error` is shown as given."""

    kind: NoticeKind
    subject: str  # the feed or destination, as the reader knows it
    since: datetime | None = None
    count: int = 0  # failed polls, or undelivered alerts
    error: str | None = None
    url: str | None = None  # the feed's address, or where it moved to


@dataclass(frozen=True)
class DigestContent:
    """Everything one digest email says, grouped by watchlist."""

    digest_key: str  # deterministic: used for Message-ID and to never send twice
    generated_at: datetime
    groups: tuple[tuple[str, tuple[StoredHit, ...]], ...]  # (watchlist, hits) in config order
    backfilled: tuple[tuple[str, tuple[StoredHit, ...]], ...] = ()
    hit_ids: tuple[int, ...] = field(default=())  # every hit the digest sends, shown or hidden
    topics: Mapping[str, str] = field(default_factory=dict)  # watchlist -> its `topic:`
    covers_from: datetime | None = None  # start of the period the digest covers
    notices: tuple[HealthNotice, ...] = ()  # what is wrong with sources and destinations

    @property
    def total(self) -> int:
        return len(self.hit_ids)


# --------------------------------------------------------------------------- instant alerts


@dataclass(frozen=True)
class AlertTarget:
    """One destination of one alert, as the store files a hit's deliveries under it.

    `url_key` identifies the destination without its secrets (a hash of the URL as
    Apprise masks it); `destination` is that masked URL, safe to store and show.
    """

    alert: str
    url_key: str
    destination: str
    passing: bool = True  # announce passing mentions too (False: the watchlist hides them)


# watchlist name -> the destinations its new hits are announced to
AlertRoutes = Mapping[str, tuple[AlertTarget, ...]]


@dataclass(frozen=True)
class DueAlert:
    """One hit to announce to one destination now, as `Store.due_alerts` reads it."""

    delivery_id: int
    hit: StoredHit
    alert: str
    url_key: str
    destination: str  # masked
    attempts: int  # failed attempts so far
    created_at: datetime  # when the hit was recorded: the give-up horizon counts from here


@dataclass(frozen=True)
class AlertFailure:
    """Alerts of one destination given up on since a time: for the digest's health section."""

    alert: str
    destination: str  # masked: no secrets
    hits: int
    last_error: str
    since: datetime  # the first give-up in the period


@dataclass(frozen=True)
class AlertDestinationStatus:
    """One destination's deliveries, for `monitor status`."""

    alert: str
    url_key: str
    destination: str  # masked
    pending: int
    sent: int
    failed: int
    last_sent: datetime | None
    last_error: str | None  # of the latest failed attempt still pending or given up
    next_attempt: datetime | None  # the earliest pending delivery
