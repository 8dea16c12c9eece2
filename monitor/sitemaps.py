"""News sitemaps as a source: sitemap bytes → `ParsedSitemap` | `ParseFailed`, and
which of its URLs one poll reads. Pure: no I/O, no clock (the pipeline fetches).

Sites without a feed often publish a Google News sitemap (`<urlset>` with the
`news:` extension: title, publication date, language) or at least a plain one
(`<url><loc><lastmod>`), and large sites split it behind a `<sitemapindex>`::

    bytes ─► lxml iterparse (no entities, no DTD, no network, no huge trees)
       ├─ <urlset>        one Entry per <url>: key and link = loc, title = news:title
       │                  (else "", the page's title is used), published = news:
       │                  publication_date or lastmod, language = news:language
       └─ <sitemapindex>  one ChildSitemap per <sitemap> (loc, lastmod)

    children_to_read(children, since)       newest first (lastmod), at most MAX_CHILD_SITEMAPS
    entries_to_read(unseen, since, limit)   newest first, at most `limit`; the rest wait

`since` is `read_since(last successful poll)`: entries and child sitemaps dated
before it are not read. It reaches SITEMAP_LOOKBACK before that poll because news
sitemaps list an article with its publication time, which is often earlier than the
moment it appears in the sitemap; entries already stored are skipped by the store
anyway, so the margin costs nothing but a lookup.
"""

from __future__ import annotations

import email.utils
import html.entities
import io
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from urllib.parse import urljoin, urlsplit

from lxml import etree

from monitor.models import Entry, ParseFailed
from monitor.text import CP1252_FALLBACK, decode_certain, one_line, primary_language

__all__ = [
    "MAX_CHILD_SITEMAPS",
    "MAX_URLS_PER_SITEMAP",
    "SITEMAP_LOOKBACK",
    "ChildSitemap",
    "ParsedSitemap",
    "children_to_read",
    "entries_to_read",
    "is_fresh",
    "looks_like_sitemap",
    "parse_sitemap",
    "read_since",
]

# sitemaps.org caps one sitemap at 50,000 URLs and an index at 50,000 sitemaps.
MAX_URLS_PER_SITEMAP = 50_000
# Child sitemaps fetched in one poll of an index; each is a request to the site.
MAX_CHILD_SITEMAPS = 10
SITEMAP_LOOKBACK = timedelta(days=2)
_MIN_YEAR, _MAX_YEAR = 1970, 2100

_T = TypeVar("_T")

_SITEMAP_HINT = (
    "check the URL (a sitemap has <urlset> or <sitemapindex> at its root), "
    "or drop `type: sitemap` if the URL serves RSS, Atom or JSON Feed"
)


@dataclass(frozen=True)
class ChildSitemap:
    """One `<sitemap>` of a sitemap index."""

    url: str
    lastmod: datetime | None


@dataclass(frozen=True)
class ParsedSitemap:
    """A `<urlset>` (entries) or a `<sitemapindex>` (children)."""

    entries: tuple[Entry, ...] = ()
    children: tuple[ChildSitemap, ...] = ()
    title: str | None = None  # news:publication/news:name, when the sitemap gives one
    warnings: tuple[str, ...] = ()

    @property
    def is_index(self) -> bool:
        return bool(self.children)


# --------------------------------------------------------------------------- sniffing

_FIRST_TAG = re.compile(rb"<([A-Za-z_][\w.-]*:)?([A-Za-z_][\w.-]*)")
_COMMENT = re.compile(rb"<!--.*?(?:-->|\Z)", re.DOTALL)


def looks_like_sitemap(content: bytes) -> bool:
    """True when the document's first element is `<urlset>` or `<sitemapindex>`."""
    head = _COMMENT.sub(b"", content[:65536])
    first = _FIRST_TAG.search(head)
    return first is not None and first.group(2) in (b"urlset", b"sitemapindex")


# --------------------------------------------------------------------------- values


def _local(element: Any) -> str:
    tag = element.tag
    if not isinstance(tag, str):  # comments, processing instructions, entity references
        return ""
    return tag.rsplit("}", 1)[-1]


def _namespace(element: Any) -> str:
    tag = element.tag
    return tag[1:].split("}", 1)[0] if isinstance(tag, str) and tag.startswith("{") else ""


def _text(element: Any | None) -> str:
    if element is None:
        return ""
    if len(element):  # CDATA is plain text; only an unexpanded entity makes a child
        return one_line("".join(element.itertext()))
    return one_line(element.text or "")


def _http_url(value: str, base: str) -> str | None:
    if not value:
        return None
    absolute = value if value.startswith(("https://", "http://")) else urljoin(base, value)
    parts = urlsplit(absolute)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return absolute


def w3c_datetime(value: str) -> datetime | None:
    """A sitemap date (W3C Datetime: 2026-11-28, 2026-11-28T08:15:00+01:00, ...) as aware UTC;
    an RFC 822 date (a common slip) too; None when unreadable or implausible."""
    text = value.strip()
    if not text:
        return None
    moment: datetime | None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        moment = moment.astimezone(UTC)
    except (ValueError, OverflowError):
        return None
    return moment if _MIN_YEAR <= moment.year <= _MAX_YEAR else None


# --------------------------------------------------------------------------- parsing

_XML_DECLARED_ENCODING = re.compile(
    rb"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z][\w.:-]*)["']"""
)
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)


def _as_utf8(content: bytes, headers: Mapping[str, str]) -> tuple[bytes, str | None]:
    """The document re-encoded as UTF-8, by the rule feeds are read with (`monitor.parse`):
    a byte order mark, then valid UTF-8, then the declared charset (HTTP, then XML), and
    last UTF-8 with each invalid byte read as windows-1252 (with a warning)."""
    header = _HTTP_CHARSET.search(headers.get("content-type", ""))
    declaration = _XML_DECLARED_ENCODING.match(content[:256])
    declared = (
        header.group(1) if header else declaration.group(1).decode("ascii") if declaration else None
    )
    text = decode_certain(content, declared)
    warning = None
    if text is None:
        text = content.decode("utf-8", errors=CP1252_FALLBACK)
        label = f"declared {declared}" if declared else "no charset declared"
        warning = f"some bytes are not valid UTF-8 ({label}); read them as windows-1252"
    return _mend_ampersands(text.lstrip()).encode("utf-8"), warning


# The two commonest slips in sitemaps, mended before parsing: a bare "&" (`?id=1&lang=fr`
# written as is) and an HTML entity that XML does not define (`&nbsp;`, `&eacute;` in a
# title). libxml2's recovery drops the "&lang" part of the URL, and after an undefined
# entity it drops every later "&amp;" of the same text.
_AMPERSAND = re.compile(r"&(?:([A-Za-z_][\w.-]*);|(#[0-9]+;|#x[0-9A-Fa-f]+;))?")
_CDATA = re.compile(r"(<!\[CDATA\[.*?\]\]>)", re.DOTALL)
_XML_ENTITIES = frozenset({"amp", "lt", "gt", "quot", "apos"})


def _mended(found: re.Match[str]) -> str:
    name, numeric = found.group(1), found.group(2)
    if name is None and numeric is None:
        return "&amp;"
    if numeric is not None or name in _XML_ENTITIES:
        return found.group(0)
    codepoint = html.entities.name2codepoint.get(name)
    # Any other name stays: declared in the DTD, it is left unexpanded, never resolved.
    return f"&#{codepoint};" if codepoint is not None else found.group(0)


def _mend_ampersands(text: str) -> str:
    if "&" not in text:
        return text
    parts = _CDATA.split(text)  # odd indexes are CDATA sections, where "&" is plain text
    return "".join(
        part if index % 2 else _AMPERSAND.sub(_mended, part) for index, part in enumerate(parts)
    )


def _children(element: Any) -> dict[str, Any]:
    """The direct children of `element` by local name (the first of each); extensions wrap
    their own elements (image:image/image:loc), so a direct `loc` is the sitemap's."""
    found: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if isinstance(tag, str):  # not a comment or an entity reference
            found.setdefault(tag[tag.rfind("}") + 1 :], child)
    return found


def _entry(element: Any, base: str) -> tuple[Entry | None, str | None]:
    """The entry of one `<url>`, and the publication's name when news: gives it."""
    fields = _children(element)
    link = _http_url(_text(fields.get("loc")), base)
    if link is None:
        return None, None
    news = fields.get("news")
    title, published, language, publication = "", None, None, None
    # http://www.google.com/schemas/sitemap-news/0.9, and the variants sites write (https,
    # another version): any namespace naming sitemap-news.
    if news is not None and "sitemap-news" in _namespace(news):
        about = _children(news)
        title = _text(about.get("title"))
        published = w3c_datetime(_text(about.get("publication_date")))
        source = about.get("publication")
        if source is not None:
            names = _children(source)
            language = primary_language(_text(names.get("language")))
            publication = _text(names.get("name")) or None
    if published is None:
        published = w3c_datetime(_text(fields.get("lastmod")))
    entry = Entry(
        key=link,
        link=link,
        title=title,
        summary="",
        content="",
        published=published,
        language=language,
    )
    return entry, publication


def _release(element: Any) -> None:
    """Free a handled element and the siblings before it: memory stays flat on 50,000 URLs."""
    element.clear()
    parent = element.getparent()
    if parent is not None:
        while element.getprevious() is not None:
            del parent[0]


def parse_sitemap(
    content: bytes, *, url: str, headers: Mapping[str, str] | None = None
) -> ParsedSitemap | ParseFailed:
    """Read a sitemap body (already decompressed by the fetcher). `url` is its final URL:
    the base for relative locations and the name used in messages.

    Never raises for any content, never reads a file or the network, never expands
    an entity: a hostile document gets `ParseFailed` or loses the entity text.
    """
    warnings: list[str] = []
    data, decoding_warning = _as_utf8(content, {k.lower(): v for k, v in (headers or {}).items()})
    if decoding_warning:
        warnings.append(decoding_warning)
    entries: list[Entry] = []
    children: list[ChildSitemap] = []
    keys: set[str] = set()
    title: str | None = None
    skipped = repeated = 0
    root: str | None = None
    closed = False  # the root element's end was reached
    events = etree.iterparse(
        io.BytesIO(data),
        events=("start", "end"),
        tag=("{*}urlset", "{*}sitemapindex", "{*}url", "{*}sitemap"),
        encoding="utf-8",  # decoded above: the declaration inside may say otherwise
        resolve_entities=False,
        load_dtd=False,
        no_network=True,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
        recover=True,
    )
    try:
        for event, element in events:
            if root is None:
                root = _local(element.getroottree().getroot())
                if root not in ("urlset", "sitemapindex"):
                    break
            if event != "end":
                continue
            parent = element.getparent()
            if parent is None:
                closed = True
                continue
            if parent.getparent() is not None:
                continue  # only direct children of the root are urls/sitemaps
            name = _local(element)
            if len(entries) + len(children) >= MAX_URLS_PER_SITEMAP:
                warnings.append(
                    f"more than {MAX_URLS_PER_SITEMAP:,} locations: the rest were not read"
                )
                break
            if root == "urlset" and name == "url":
                entry, publication = _entry(element, url)
                if entry is None:
                    skipped += 1
                elif entry.key in keys:
                    repeated += 1
                else:
                    keys.add(entry.key)
                    entries.append(entry)
                    title = title or publication
            elif root == "sitemapindex" and name == "sitemap":
                fields = _children(element)
                child_url = _http_url(_text(fields.get("loc")), url)
                if child_url is None:
                    skipped += 1
                else:
                    lastmod = w3c_datetime(_text(fields.get("lastmod")))
                    children.append(ChildSitemap(url=child_url, lastmod=lastmod))
            _release(element)
    except etree.LxmlError as error:
        if root is None or not (entries or children):
            return ParseFailed(
                url=url,
                message=f"{url} is not a readable sitemap ({error}); " + _SITEMAP_HINT,
            )
        warnings.append(
            f"the sitemap is not well-formed XML ({error}); read it leniently, so some URLs may be missing or damaged"
        )
    if root is None and events.root is not None:
        root = _local(events.root)  # a document with no sitemap element at all
    if root is None:
        return ParseFailed(
            url=url, message=f"{url} is not a sitemap (no XML found); {_SITEMAP_HINT}"
        )
    if root not in ("urlset", "sitemapindex"):
        return ParseFailed(
            url=url,
            message=f"{url} is not a sitemap (its root element is <{root}>); {_SITEMAP_HINT}",
        )
    # In recovery mode libxml2 goes on quietly past errors, or stops at a fatal one (an
    # entity amplification attack); its log says which.
    errors = [entry for entry in events.error_log if entry.level_name in ("ERROR", "FATAL")]
    if (errors or not closed) and not warnings:
        reason = errors[0].message if errors else "the document is cut short"
        if not (entries or children):
            return ParseFailed(
                url=url,
                message=f"{url} is not a readable sitemap ({reason}); {_SITEMAP_HINT}",
            )
        warnings.append(
            f"the sitemap is not well-formed XML ({reason}); read it leniently, so some URLs may be missing or damaged"
        )
    if skipped:
        warnings.append(f"{skipped} location(s) skipped: not an absolute http(s) URL")
    if repeated:
        warnings.append(f"{repeated} location(s) listed twice: read once")
    return ParsedSitemap(
        entries=tuple(entries),
        children=tuple(children),
        title=title,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- what a poll reads


def read_since(last_success: datetime | None) -> datetime | None:
    """The date before which sitemap entries are not read; None on a first poll (then the
    newest entries are read, up to the poll's limit, and the rest wait)."""
    return None if last_success is None else last_success - SITEMAP_LOOKBACK


def is_fresh(published: datetime | None, since: datetime | None) -> bool:
    """An entry (or child sitemap) dated at or after `since`; an undated one always is."""
    return since is None or published is None or published >= since


def _newest_first(items: Iterable[_T], date_of: Callable[[_T], datetime | None]) -> list[_T]:
    dated: list[tuple[datetime, _T]] = []
    undated: list[_T] = []
    for item in items:
        moment = date_of(item)
        if moment is None:
            undated.append(item)
        else:
            dated.append((moment, item))
    dated.sort(key=lambda pair: pair[0], reverse=True)  # stable: ties keep their order
    return [item for _, item in dated] + undated


def children_to_read(
    children: Sequence[ChildSitemap], since: datetime | None, limit: int = MAX_CHILD_SITEMAPS
) -> list[ChildSitemap]:
    """The child sitemaps one poll fetches: changed since `since`, newest lastmod first
    (undated ones after, in the index's order), at most `limit`."""
    fresh = (child for child in children if is_fresh(child.lastmod, since))
    return _newest_first(fresh, lambda child: child.lastmod)[:limit]


def entries_to_read(
    unseen: Sequence[Entry], since: datetime | None, limit: int
) -> tuple[tuple[Entry, ...], int]:
    """The unseen entries this poll reads, newest first, at most `limit`; and how many
    fresh ones wait for the next poll (they are not stored, so they stay unseen)."""
    fresh = _newest_first(
        (entry for entry in unseen if is_fresh(entry.published, since)),
        lambda entry: entry.published,
    )
    return tuple(fresh[:limit]), max(0, len(fresh) - limit)
