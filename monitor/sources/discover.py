"""From any address of a site to the feeds it offers, each checked by fetching and parsing it.

    the address ─► a feed itself? ─► done
                └► a sitemap itself? ─► done
                └► HTML: <link rel="alternate"> (RSS, Atom, JSON Feed; relative hrefs resolved)
                      (none on this page: the same on the site's home page)
                ─► nothing yet: the usual paths (/feed, /rss, /rss.xml, /atom.xml, /feed.xml, /index.xml)
                ─► nothing yet: robots.txt's Sitemap: lines (news sitemaps first; a sitemap
                   index is opened one level for its news sitemaps)

Every request goes through the project's `Fetcher`, so its size cap, deadline and
address policy apply. The address the user typed is trusted like a configured
feed; what the site links to is fetched as an untrusted link of that address (it
may not lead to a private host on another site). Candidates are parsed with
`monitor.parse`; what was tried and failed is kept as notes for the message shown
when nothing is found. The candidates of one step (the links of a page, the usual
paths) are fetched at once, at most `MAX_PARALLEL` (and the fetcher's per-host limit),
and judged in their order, so the result does not depend on which answers first.

The pure parts (`alternate_links`, `sitemaps_in_robots`, `read_sitemap`) take
bytes and return values; `discover` does the fetching.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Literal
from urllib.parse import urljoin, urlsplit, urlunsplit

from monitor.errors import SourceError
from monitor.fetch import Fetcher, site_of
from monitor.models import Fetched, FetchFailed, FetchResult, NotModified, ParsedFeed
from monitor.parse import parse_feed
from monitor.sources.safexml import local_name, parse_untrusted_xml
from monitor.sources.urls import canonical_url
from monitor.text import decode_certain

__all__ = [
    "FEED_TYPES",
    "USUAL_PATHS",
    "Candidate",
    "Discovery",
    "SitemapInfo",
    "alternate_links",
    "discover",
    "read_sitemap",
    "sitemaps_in_robots",
]

FEED_TYPES = frozenset(
    {
        "application/rss+xml",
        "application/atom+xml",
        "application/rdf+xml",
        "application/feed+json",
        "application/json",
        "application/x-rss+xml",
        "application/x-atom+xml",
        "text/xml",
        "application/xml",
    }
)
USUAL_PATHS = ("/feed", "/rss", "/rss.xml", "/atom.xml", "/feed.xml", "/index.xml")
NEWS_NAMESPACE = "http://www.google.com/schemas/sitemap-news/0.9"
MAX_LINKS = 10  # alternate links followed per page
MAX_SITEMAPS = 10  # Sitemap: lines followed, and news sitemaps opened in an index
MAX_PARALLEL = 4  # requests in flight at once (the fetcher also limits them per host)


@dataclass(frozen=True)
class Candidate:
    """A feed or sitemap found and read successfully."""

    url: str
    kind: Literal["feed", "sitemap"]
    title: str | None
    entries: int
    latest: datetime | None
    found_by: str  # how it was found, for the table: "link rel=alternate", "/feed", ...
    news: bool = False  # a sitemap in the Google News namespace


@dataclass(frozen=True)
class Discovery:
    url: str
    candidates: tuple[Candidate, ...]
    notes: tuple[str, ...] = ()  # what was tried and why it was not a feed


@dataclass(frozen=True)
class SitemapInfo:
    index: bool  # a <sitemapindex> (lists sitemaps) rather than a <urlset> (lists pages)
    news: bool
    locations: tuple[str, ...]
    latest: datetime | None


# --------------------------------------------------------------------------- pure parts


class _LinkCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.links: list[str] = []
        self.base: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name.lower(): (value or "") for name, value in attrs}
        if tag == "base" and self.base is None and values.get("href"):
            self.base = values["href"].strip()
        if tag not in ("link", "a"):
            return
        rel = values.get("rel", "").lower().split()
        kind = values.get("type", "").split(";", 1)[0].strip().lower()
        href = values.get("href", "").strip()
        if "alternate" in rel and kind in FEED_TYPES and href:
            self.links.append(href)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.handle_starttag(tag, attrs)


def alternate_links(
    html: bytes, base_url: str, headers: Mapping[str, str] | None = None
) -> list[str]:
    """Absolute URLs of the feeds a page announces with ``<link rel="alternate" type=...>``,
    in page order, without repeats. Relative hrefs are resolved against ``<base href>``
    or `base_url`; only http and https links are kept."""
    charset = None
    content_type = {k.lower(): v for k, v in (headers or {}).items()}.get("content-type", "")
    if "charset=" in content_type.lower():
        charset = content_type.lower().split("charset=", 1)[1].split(";")[0].strip(" \"'")
    text = decode_certain(html, charset) or html.decode("utf-8", errors="replace")
    collector = _LinkCollector()
    try:
        collector.feed(text)
        collector.close()
    except Exception:  # html.parser raises on a few malformed constructs; keep what was read
        pass
    base = urljoin(base_url, collector.base) if collector.base else base_url
    found: dict[str, str] = {}
    for href in collector.links:
        absolute = urljoin(base, href)
        if urlsplit(absolute).scheme in ("http", "https"):
            found.setdefault(canonical_url(absolute), absolute)
    return list(found.values())


def sitemaps_in_robots(text: str, base_url: str) -> list[str]:
    """The URLs of the ``Sitemap:`` lines of a robots.txt, in order, without repeats."""
    found: dict[str, str] = {}
    for line in text.splitlines():
        name, _, value = line.partition(":")
        if name.strip().lower() != "sitemap":
            continue
        url = urljoin(base_url, value.split("#", 1)[0].strip())
        if urlsplit(url).scheme in ("http", "https"):
            found.setdefault(canonical_url(url), url)
    return list(found.values())


def read_sitemap(content: bytes, *, url: str) -> SitemapInfo | None:
    """What a sitemap lists, or None when `content` is not a sitemap (refused XML included)."""
    try:
        root = parse_untrusted_xml(content, what=url)
    except SourceError:
        return None
    kind = local_name(root)
    if kind not in ("urlset", "sitemapindex"):
        return None
    news = NEWS_NAMESPACE in (root.nsmap or {}).values()
    locations: list[str] = []
    latest: datetime | None = None
    for child in root:
        if local_name(child) not in ("url", "sitemap"):
            continue
        for part in child.iter():
            name = local_name(part)
            text = (part.text or "").strip()
            if name == "loc" and part.getparent() is child and text:
                locations.append(text)
            elif name in ("lastmod", "publication_date") and text:
                moment = _iso_datetime(text)
                if moment is not None and (latest is None or moment > latest):
                    latest = moment
            elif part.tag is not None and str(part.tag).startswith("{" + NEWS_NAMESPACE):
                news = True
    return SitemapInfo(
        index=kind == "sitemapindex", news=news, locations=tuple(locations), latest=latest
    )


def _iso_datetime(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- fetching


class _Search:
    """One discovery: the fetcher, the trusted address, what was found and tried."""

    def __init__(self, url: str, fetcher: Fetcher) -> None:
        self.url = url
        self.fetcher = fetcher
        self.candidates: list[Candidate] = []
        self.notes: list[str] = []
        self.seen: set[str] = set()
        self.sitemaps: dict[str, SitemapInfo] = {}  # candidate URL → what it lists

    def fetch(self, url: str) -> Fetched | None:
        result = self._request(url)
        if isinstance(result, Fetched):
            return result
        self.notes.append(_failure(url, result))
        return None

    def _request(self, url: str) -> FetchResult:
        if url == self.url:
            return self.fetcher.fetch_feed(url)
        return self.fetcher.fetch_page(url, feed_url=self.url)

    def try_feeds(self, found: Sequence[tuple[str, str]]) -> None:
        """Fetch each (url, how it was found) not tried yet, at once (the fetcher's per-host
        limit applies); keep, in the given order, those that parse as feeds or sitemaps."""
        fresh: list[tuple[str, str]] = []
        for url, found_by in found:
            if canonical_url(url) not in self.seen:
                self.seen.add(canonical_url(url))
                fresh.append((url, found_by))
        if not fresh:
            return
        with ThreadPoolExecutor(max_workers=min(len(fresh), MAX_PARALLEL)) as pool:
            results = list(pool.map(self._request, [url for url, _ in fresh]))
        for (url, found_by), result in zip(fresh, results, strict=True):
            if isinstance(result, Fetched):
                self.consider(url, result, found_by)
            else:
                self.notes.append(_failure(url, result))

    def consider(self, url: str, fetched: Fetched, found_by: str) -> bool:
        final = _kept_url(url, fetched.url)
        if canonical_url(final) != canonical_url(url):
            if canonical_url(final) in self.seen:
                self.notes.append(f"{url} leads to {final}, already tried")
                return False
            self.seen.add(canonical_url(final))
        parsed = parse_feed(fetched.content, url=fetched.url, headers=fetched.headers)
        if isinstance(parsed, ParsedFeed):
            self.candidates.append(_feed_candidate(final, parsed, found_by))
            return True
        sitemap = read_sitemap(fetched.content, url=fetched.url)
        if sitemap is not None:
            self.candidates.append(_sitemap_candidate(final, sitemap, found_by))
            self.sitemaps[final] = sitemap
            return True
        self.notes.append(parsed.message)
        return False


def discover(url: str, fetcher: Fetcher) -> Discovery:
    """The feeds (or news sitemaps) found from `url`: a feed, a sitemap, or any page of a site.

    Raises `SourceError` when `url` itself cannot be fetched.
    """
    search = _Search(url.strip(), fetcher)
    search.seen.add(canonical_url(search.url))
    page = search.fetch(search.url)
    if page is None:
        raise SourceError(search.notes[-1])
    if search.consider(search.url, page, "the address itself"):
        return _result(search)
    if "html" in page.headers.get("content-type", "").lower():
        search.notes.pop()  # "is an HTML page, not a feed": expected of a page
    links = alternate_links(page.content, page.url, page.headers)[:MAX_LINKS]
    search.try_feeds([(link, 'link rel="alternate"') for link in links])
    home = _origin(page.url) + "/"
    if not search.candidates and canonical_url(home) not in search.seen:
        search.seen.add(canonical_url(home))
        home_page = search.fetch(home)
        if home_page is not None:
            links = alternate_links(home_page.content, home_page.url, home_page.headers)
            search.try_feeds(
                [(link, 'link rel="alternate" on the home page') for link in links[:MAX_LINKS]]
            )
    if not search.candidates:
        origin = _origin(search.url)
        search.try_feeds([(origin + path, "usual path " + path) for path in USUAL_PATHS])
    if not search.candidates:
        _sitemaps_from_robots(search)
    return _result(search)


def _sitemaps_from_robots(search: _Search) -> None:
    robots_url = _origin(search.url) + "/robots.txt"
    robots = search.fetch(robots_url)
    if robots is None:
        return
    text = decode_certain(robots.content, None) or robots.content.decode("utf-8", "replace")
    listed = sitemaps_in_robots(text, robots.url)
    if not listed:
        search.notes.append(f"{robots_url} names no sitemap (no Sitemap: line)")
    search.try_feeds([(sitemap, "robots.txt Sitemap:") for sitemap in listed[:MAX_SITEMAPS]])
    # A sitemap index that is not itself news: open the news sitemaps it lists.
    for candidate in list(search.candidates):
        if candidate.kind != "sitemap" or candidate.news:
            continue
        info = search.sitemaps.get(candidate.url)
        if info is None or not info.index:
            continue
        news_like = [location for location in info.locations if "news" in location.lower()]
        search.try_feeds(
            [(location, f"listed in {candidate.url}") for location in news_like[:MAX_SITEMAPS]]
        )


def _failure(url: str, result: FetchFailed | NotModified) -> str:
    # No validators are sent, so a 304 would be a server's mistake; it is still no feed.
    return (
        result.message
        if isinstance(result, FetchFailed)
        else f"{url}: 304 without a request for it"
    )


def _result(search: _Search) -> Discovery:
    # News sitemaps before other sitemaps; feeds keep the order they were found in.
    ordered = sorted(search.candidates, key=lambda found: (found.kind == "sitemap", not found.news))
    return Discovery(url=search.url, candidates=tuple(ordered), notes=tuple(search.notes))


def _feed_candidate(url: str, parsed: ParsedFeed, found_by: str) -> Candidate:
    dates = [entry.published for entry in parsed.entries if entry.published is not None]
    return Candidate(
        url=url,
        kind="feed",
        title=parsed.title,
        entries=len(parsed.entries),
        latest=max(dates) if dates else None,
        found_by=found_by,
    )


def _sitemap_candidate(url: str, info: SitemapInfo, found_by: str) -> Candidate:
    described = "news sitemap" if info.news else "sitemap index" if info.index else "sitemap"
    return Candidate(
        url=url,
        kind="sitemap",
        title=f"{described} of {site_of(url)[0]}",
        entries=len(info.locations),
        latest=info.latest,
        found_by=found_by,
        news=info.news,
    )


def _kept_url(listed: str, final: str) -> str:
    """The address to configure: where a redirect led when it stayed on the same site
    (``/feed`` → ``/feed/``, http → https), else the address as listed."""
    try:
        same_site = site_of(listed) == site_of(final)
    except Exception:  # httpx.InvalidURL: keep what was listed
        return listed
    return final if same_site else listed


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))
