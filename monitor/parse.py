"""Feed bytes + response headers → `ParsedFeed` | `ParseFailed`: the feedparser adapter.

This is the only module that imports feedparser, and it never does I/O: feedparser
is handed a `BytesIO` and a header dict, never a `str` (a string may make it open a
URL or a file). JSON Feed, which feedparser 6 does not read, is parsed here with
`json`. Expected failures (an HTML page, a broken document) are returned as
`ParseFailed` values that name the feed and say what to do; nothing raises.

    bytes ─► decode ─┬─ JSON Feed ──────────────────────────────┐
                     ├─ HTML page ─► ParseFailed                 │
                     └─ XML ─► defuse entities ─► feedparser ────┴─► raw entries
    raw entries ─► one Entry each (a bad one is skipped with a warning)
                ─► unique keys ─► ParsedFeed

Decoding is done here rather than by feedparser (`monitor.text.decode_certain`): a
byte order mark wins, then a body that is valid UTF-8, then the declared charset (HTTP
header, then XML declaration), and last UTF-8 with each invalid byte read as
windows-1252. feedparser's own rule decodes the whole document as windows-1252
when one byte is not UTF-8, which turns every "Café" into "CafÃ©".
"""

from __future__ import annotations

import calendar
import contextlib
import hashlib
import html
import io
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from time import struct_time
from typing import Any
from urllib.parse import urljoin, urlsplit

import feedparser

from monitor.models import Entry, ParsedFeed, ParseFailed, ParseResult
from monitor.text import CP1252_FALLBACK, decode_certain, one_line, paragraphs, primary_language

__all__ = ["parse_feed"]

# Dates outside this window are taken as garbage (0000-00-00, 9999-12-31, 1899 placeholders)
# rather than stored as real publication dates.
MIN_PLAUSIBLE_YEAR = 1970
MAX_PLAUSIBLE_YEAR = 2100

# Entity-expansion guard (a "quadratic blowup" document): feedparser keeps "safe" text-only entities
# and its lenient parser expands them without limit, so one 20 KB entity referenced 20,000
# times becomes a 400-million-character string. Declarations beyond these limits are removed
# before feedparser sees the document; their references then stay as literal text.
MAX_ENTITY_VALUE_CHARS = 1024
MAX_ENTITY_EXPANSION_CHARS = 1_000_000
MAX_ENTITY_DECLARATIONS = 100

_HTML_HINT = "check the feed URL (the site's feed may have moved)"

# feedparser asks for libxml2's SAX driver first, an import that fails at every parse
# (about half a millisecond of path lookups, at each of 10,000 feeds) before it falls back
# to expat, the parser that runs anyway.
feedparser.api.PREFERRED_XML_PARSERS = []

# --------------------------------------------------------------------------- decoding

_XML_DECLARED_ENCODING = re.compile(
    rb"""\A\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z][\w.:-]*)["']"""
)
_HTTP_CHARSET = re.compile(r"""charset\s*=\s*["']?([\w.:-]+)""", re.IGNORECASE)
# Characters XML 1.0 forbids; one of them makes expat give up on the whole document.
_INVALID_XML_CHARS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _declared_charset(content: bytes, headers: Mapping[str, str]) -> str | None:
    match = _HTTP_CHARSET.search(headers.get("content-type", ""))
    if match:
        return match.group(1)
    declaration = _XML_DECLARED_ENCODING.match(content[:256])
    return declaration.group(1).decode("ascii") if declaration else None


def _decode(content: bytes, headers: Mapping[str, str]) -> tuple[str, str | None]:
    """Return the document as text, and a warning when bytes had to be guessed."""
    declared = _declared_charset(content, headers)
    text = decode_certain(content, declared)
    if text is not None:
        return text, None
    invalid = content.decode("utf-8", errors="replace").count("\ufffd") - content.count(
        "\ufffd".encode()
    )
    label = f"declared {declared}" if declared else "no charset declared"
    warning = f"{invalid} byte(s) are not valid UTF-8 ({label}); read them as windows-1252"
    return content.decode("utf-8", errors=CP1252_FALLBACK), warning


# --------------------------------------------------------------------------- sniffing

_HTML_PAGE = re.compile(
    r"\A(?:\s|<\?xml[^>]*>|<!--.*?-->)*<(?:!doctype\s+html|html[\s>]|head[\s>]|body[\s>])",
    re.IGNORECASE | re.DOTALL,
)
_FEED_ROOT = re.compile(r"<(?:rss|feed|rdf:RDF|RDF)[\s>]")
_FIRST_ELEMENT = re.compile(r"<[A-Za-z_]")


def _looks_like_json(text: str, headers: Mapping[str, str]) -> bool:
    # The body decides: servers label XML feeds as JSON and JSON feeds as text/plain.
    if text.startswith("{"):
        return True
    return "json" in headers.get("content-type", "").lower() and not text.startswith("<")


def _looks_like_html(text: str) -> bool:
    """An HTML page (login wall, soft 404, challenge page) with no feed element inside."""
    return _HTML_PAGE.match(text[:65536]) is not None and _FEED_ROOT.search(text) is None


# --------------------------------------------------------------------------- entity guard

_ENTITY_DECLARATION = re.compile(r"""<!ENTITY(?:[^>"']|"[^"]*"|'[^']*')*>""")
_ENTITY_PARTS = re.compile(
    r"""<!ENTITY\s+(?P<parameter>%\s+)?(?P<name>[^\s"'%]+)\s+(?:"(?P<dq>[^"]*)"|'(?P<sq>[^']*)'|(?P<external>SYSTEM|PUBLIC)\b)""",
    re.DOTALL,
)


def _defuse_entities(text: str) -> tuple[str, str | None]:
    """Remove every entity declaration from the prolog when any of them is risky.

    Risky: a parameter or external entity, a value that refers to other entities
    (nesting, as in "billion laughs"), a long value, or a total expansion over
    MAX_ENTITY_EXPANSION_CHARS. Harmless declarations (`<!ENTITY nbsp "&#160;">`
    in a few old feeds) are left alone.
    """
    first_element = _FIRST_ELEMENT.search(text)
    prolog_end = first_element.start() if first_element else len(text)
    prolog = text[:prolog_end]
    if "<!ENTITY" not in prolog:
        return text, None
    declarations = _ENTITY_DECLARATION.findall(prolog)
    risky = (
        len(declarations) != prolog.count("<!ENTITY") or len(declarations) > MAX_ENTITY_DECLARATIONS
    )
    expansion = 0
    for declaration in [] if risky else declarations:
        parts = _ENTITY_PARTS.match(declaration)
        if parts is None or parts["parameter"] or parts["external"]:
            risky = True
            continue
        value = parts["dq"] if parts["dq"] is not None else parts["sq"] or ""
        if len(value) > MAX_ENTITY_VALUE_CHARS or "&" in value or "%" in value:
            risky = True
        expansion += len(value) * text.count(f"&{parts['name']};", prolog_end)
    if not risky and expansion <= MAX_ENTITY_EXPANSION_CHARS:
        return text, None
    cleaned = _ENTITY_DECLARATION.sub("", prolog) if declarations else prolog
    if "<!ENTITY" in cleaned:  # an unterminated declaration: drop the rest of the prolog
        cleaned = cleaned[: cleaned.index("<!ENTITY")]
    warning = (
        f"the feed declares {len(declarations)} XML entities that could expand to "
        f"{expansion:,}+ characters (an entity-expansion attack or a broken feed); "
        "ignored them, so their references stay as literal text"
    )
    return cleaned + text[prolog_end:], warning


# --------------------------------------------------------------------------- text helpers


class _HTMLText(HTMLParser):
    """Visible text of an HTML fragment, one line per block element."""

    _BLOCKS = frozenset(
        {
            "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
            "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6",
            "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section", "table",
            "tbody", "td", "tfoot", "th", "thead", "tr", "ul",
        }
    )  # fmt: skip
    _HIDDEN = frozenset({"script", "style", "template", "noscript", "head", "title"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._hidden_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth += 1
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._HIDDEN:
            self._hidden_depth = max(0, self._hidden_depth - 1)
        elif tag in self._BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._hidden_depth:
            self.parts.append(data)


_TAG = re.compile(r"<[^>]*>")
_URL_FORBIDDEN = re.compile("[\x00-\x1f\x7f]")


def _html_to_text(markup: str) -> str:
    parser = _HTMLText()
    try:
        parser.feed(markup)
        parser.close()
        text = "".join(parser.parts)
    except Exception:  # html.parser can still fail on some malformed markup
        text = html.unescape(_TAG.sub(" ", markup))
    return paragraphs(text)


def _single_line(text: str) -> str:
    return one_line(paragraphs(text))


def _detail_text(value: str, content_type: str | None) -> str:
    if content_type and ("html" in content_type or "xml" in content_type):
        return _html_to_text(value)
    return paragraphs(value)


def _http_url(candidate: object, base: str) -> str | None:
    """An absolute http(s) URL, resolving a relative one against `base`; else None."""
    if not isinstance(candidate, str):
        return None
    candidate = candidate.strip().replace(" ", "%20")
    if not candidate or _URL_FORBIDDEN.search(candidate):
        return None
    try:
        absolute = urljoin(base, candidate)
        parts = urlsplit(absolute)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            return None
    except ValueError:  # e.g. an unbalanced "[" in the host
        return None
    return absolute


# --------------------------------------------------------------------------- dates

_ISO_DATE = re.compile(r"\A\s*(-?\d{4})-(\d{1,2})-(\d{1,2})")


def _impossible_iso_date(raw: object) -> bool:
    """True for strings like 2024-13-45 that feedparser silently rolls over."""
    if not isinstance(raw, str):
        return False
    match = _ISO_DATE.match(raw)
    if match is None:
        return False
    year, month, day = (int(group) for group in match.groups())
    if not 1 <= year <= 9999 or not 1 <= month <= 12:
        return True
    return not 1 <= day <= calendar.monthrange(year, month)[1]


def _plausible(moment: datetime) -> datetime | None:
    return moment if MIN_PLAUSIBLE_YEAR <= moment.year <= MAX_PLAUSIBLE_YEAR else None


def _datetime_from_struct(value: object) -> datetime | None:
    if not isinstance(value, struct_time):
        return None
    try:
        moment = datetime(
            value.tm_year,
            value.tm_mon,
            value.tm_mday,
            value.tm_hour,
            value.tm_min,
            min(value.tm_sec, 59),  # leap seconds
            tzinfo=UTC,
        )
    except (ValueError, OverflowError, TypeError):
        return None
    return _plausible(moment)


def _datetime_from_iso(value: object) -> datetime | None:
    if not isinstance(value, str) or _impossible_iso_date(value):
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return _plausible(moment.astimezone(UTC))
    except (ValueError, OverflowError):
        return None


# --------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class _Candidate:
    """An entry's fields before its key is made unique within the feed."""

    identity: str | None
    link: str | None
    title: str
    summary: str
    content: str
    published: datetime | None
    language: str | None

    def base_key(self) -> str | None:
        if self.identity:
            return self.identity
        if self.link:
            return self.link
        if not (self.title or self.summary or self.content):
            return None
        return "sha1:" + self.content_hash()

    def content_hash(self) -> str:
        basis = f"{self.title}\n{self.summary or self.content}"
        return hashlib.sha1(basis.encode("utf-8"), usedforsecurity=False).hexdigest()


def _unique_entries(
    candidates: Iterable[tuple[int, _Candidate]], warnings: list[str]
) -> tuple[Entry, ...]:
    """Give every entry a key unique in the feed, keeping distinct stories that share a GUID.

    The first entry keeps its key; a later one with the same key becomes "key|link"
    (as Miniflux does), then "key|sha1:..." of its text. An entry identical in all of
    these is the same story repeated and is dropped.
    """
    entries: list[Entry] = []
    used: set[str] = set()
    stories: set[tuple[str, str | None, str]] = set()
    for position, candidate in candidates:
        base = candidate.base_key()
        if base is None:
            warnings.append(f"entry {position} skipped: it has no id, link, title or text")
            continue
        story = (base, candidate.link, candidate.content_hash())
        if story in stories:
            warnings.append(f"entry {position} skipped: it repeats an earlier entry ({base})")
            continue
        options = [base]
        if candidate.link and candidate.link != base:
            options.append(f"{base}|{candidate.link}")
        options.append(f"{base}|sha1:{candidate.content_hash()}")
        key = next((option for option in options if option not in used), None)
        if key is None:  # a contrived collision with keys made up earlier in this feed
            warnings.append(f"entry {position} skipped: no unique key could be made from {base!r}")
            continue
        if key != base:
            warnings.append(
                f"entry {position} shares the id {base!r} with an earlier entry; kept as {key!r}"
            )
        stories.add(story)
        used.add(key)
        entries.append(
            Entry(
                key=key,
                link=candidate.link,
                title=candidate.title,
                summary=candidate.summary,
                content=candidate.content,
                published=candidate.published,
                language=candidate.language,
            )
        )
    return tuple(entries)


def _clean_identity(value: object) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        return None
    return _single_line(value) or None


# --------------------------------------------------------------------------- feedparser


def _feedparser_candidate(raw: Any, feed_url: str, feed_language: str | None) -> _Candidate:
    title_detail = raw.get("title_detail") or {}
    title = _single_line(_detail_text(raw.get("title") or "", title_detail.get("type")))
    summary_detail = raw.get("summary_detail") or {}
    summary = _detail_text(raw.get("summary") or "", summary_detail.get("type"))
    contents = [
        _detail_text(item.get("value") or "", item.get("type")) for item in raw.get("content") or ()
    ]
    content = max(contents, key=len, default="")

    link = _http_url(raw.get("link"), feed_url)
    if link is None:
        alternates = (
            item.get("href")
            for item in raw.get("links") or ()
            if item.get("rel", "alternate") == "alternate"
        )
        link = next(
            (url for url in (_http_url(href, feed_url) for href in alternates) if url), None
        )

    published = None
    for field_name in ("published", "updated", "created"):
        # dict.get, not FeedParserDict.get, which answers "updated" with "published".
        raw_value = dict.get(raw, field_name)
        parsed = dict.get(raw, f"{field_name}_parsed")
        if parsed is None or _impossible_iso_date(raw_value):
            continue
        published = _datetime_from_struct(parsed)
        if published is not None:
            break

    declared_languages = [item.get("language") for item in raw.get("content") or ()]
    declared_languages += [summary_detail.get("language"), title_detail.get("language")]
    language = next(
        (code for code in map(primary_language, declared_languages) if code), feed_language
    )
    return _Candidate(
        identity=_clean_identity(raw.get("id")),
        link=link,
        title=title,
        summary=summary,
        content=content,
        published=published,
        language=language,
    )


def _describe_bozo(exception: object) -> str:
    if exception is None:
        return "unknown error"
    message = str(exception)
    line = getattr(exception, "getLineNumber", None)
    column = getattr(exception, "getColumnNumber", None)
    get_message = getattr(exception, "getMessage", None)
    if callable(line) and callable(column) and callable(get_message):
        with contextlib.suppress(Exception):  # SAX locators can be gone after parsing
            message = f"line {line()}, column {column()}: {get_message()}"
    return message


def _parse_xml(text: str, url: str, headers: Mapping[str, str], warnings: list[str]) -> ParseResult:
    problems_before_parsing = len(warnings)
    feedparser_headers = {
        "content-type": "application/xml; charset=utf-8",  # we decoded the text ourselves
        "content-location": url,  # the base for relative links
    }
    if "content-language" in headers:
        feedparser_headers["content-language"] = headers["content-language"]
    try:
        result = feedparser.parse(
            io.BytesIO(text.encode("utf-8")),
            response_headers=feedparser_headers,
            resolve_relative_uris=True,
            sanitize_html=True,
        )
    except Exception as error:  # feedparser has no exception contract of its own
        return ParseFailed(
            url=url,
            message=f"could not parse the feed {url}: {type(error).__name__}: {error}; "
            "check that the URL serves RSS, Atom or JSON Feed",
        )

    raw_entries = list(result.get("entries") or ())
    version = result.get("version") or ""
    bozo_reason = _describe_bozo(result.get("bozo_exception")) if result.get("bozo") else None
    if not raw_entries and not version:
        if "html" in headers.get("content-type", "").lower() or "<html" in text[:4096].lower():
            return ParseFailed(url=url, message=f"{url} is an HTML page, not a feed; {_HTML_HINT}")
        if bozo_reason:
            return ParseFailed(
                url=url,
                message=f"{url} is not a readable feed ({bozo_reason}); "
                "check the feed URL, or tell the site that its feed is broken",
            )
        return ParseFailed(
            url=url,
            message=f"{url} is not an RSS, Atom, RDF or JSON feed; {_HTML_HINT}",
        )
    feed = result.get("feed") or {}
    title_detail = feed.get("title_detail") or {}
    feed_language = primary_language(feed.get("language")) or primary_language(
        title_detail.get("language")
    )
    candidates: list[tuple[int, _Candidate]] = []
    for position, raw in enumerate(raw_entries, start=1):
        try:
            candidates.append((position, _feedparser_candidate(raw, url, feed_language)))
        except Exception as error:  # one bad entry must not cost the rest of the feed
            warnings.append(f"entry {position} skipped: {type(error).__name__}: {error}")
    feed_title = _single_line(_detail_text(feed.get("title") or "", title_detail.get("type")))
    entries = _unique_entries(candidates, warnings)
    if bozo_reason and not entries:
        return ParseFailed(
            url=url,
            message=f"{url} is not well-formed XML ({bozo_reason}) and no entries could be "
            "read from it; tell the site that its feed is broken",
        )
    if bozo_reason:
        warnings.insert(
            problems_before_parsing,
            f"the feed is not well-formed XML ({bozo_reason}); read it leniently, "
            "so some entries may be missing or damaged",
        )
    return ParsedFeed(
        title=feed_title or None,
        link=_http_url(feed.get("link"), url),
        language=feed_language,
        entries=entries,
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- JSON Feed


def _json_string(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


def _json_candidate(item: Mapping[str, Any], url: str, feed_language: str | None) -> _Candidate:
    html_text = _html_to_text(_json_string(item, "content_html"))
    plain_text = paragraphs(_json_string(item, "content_text"))
    published = _datetime_from_iso(item.get("date_published")) or _datetime_from_iso(
        item.get("date_modified")
    )
    return _Candidate(
        identity=_clean_identity(item.get("id")),
        link=_http_url(item.get("url"), url) or _http_url(item.get("external_url"), url),
        title=_single_line(_json_string(item, "title")),
        summary=paragraphs(_json_string(item, "summary")),
        content=max(html_text, plain_text, key=len),
        published=published,
        language=primary_language(item.get("language")) or feed_language,
    )


def _parse_json_feed(text: str, url: str, warnings: list[str]) -> ParseResult:
    try:
        document = json.loads(text, strict=False)  # tolerate raw tabs and newlines in strings
    except (ValueError, RecursionError) as error:
        return ParseFailed(
            url=url,
            message=f"{url} looks like JSON but cannot be read ({error}); "
            "check the feed URL, or tell the site that its feed is broken",
        )
    if not isinstance(document, dict) or not isinstance(document.get("items"), list):
        return ParseFailed(
            url=url,
            message=f'{url} is JSON but not a JSON Feed (it has no "items" list); {_HTML_HINT}',
        )
    version = document.get("version")
    if not (isinstance(version, str) and version.startswith("https://jsonfeed.org/version/")):
        warnings.append(f"unknown JSON Feed version {version!r}; read it as JSON Feed 1.1")
    feed_language = primary_language(document.get("language"))
    candidates: list[tuple[int, _Candidate]] = []
    for position, item in enumerate(document["items"], start=1):
        if not isinstance(item, dict):
            warnings.append(
                f"entry {position} skipped: it is a JSON {type(item).__name__}, not an object"
            )
            continue
        try:
            candidates.append((position, _json_candidate(item, url, feed_language)))
        except Exception as error:  # one bad entry must not cost the rest of the feed
            warnings.append(f"entry {position} skipped: {type(error).__name__}: {error}")
    return ParsedFeed(
        title=_single_line(_json_string(document, "title")) or None,
        link=_http_url(document.get("home_page_url"), url),
        language=feed_language,
        entries=_unique_entries(candidates, warnings),
        warnings=tuple(warnings),
    )


# --------------------------------------------------------------------------- entry point


def parse_feed(
    content: bytes, *, url: str, headers: Mapping[str, str] | None = None
) -> ParseResult:
    """Parse a fetched feed body. `url` is the feed's final URL (the base for relative
    links, and the name used in messages); `headers` are the response headers.

    Returns `ParsedFeed` (possibly with warnings: a lenient parse, skipped entries,
    guessed bytes) or `ParseFailed` with a message that names the feed and says what
    to do. Never raises for any content, and never reads a file or the network.
    """
    lowered = {name.lower(): value for name, value in (headers or {}).items()}
    warnings: list[str] = []
    if not content.strip():
        return ParseFailed(url=url, message=f"{url} returned an empty body; {_HTML_HINT}")
    text, decoding_warning = _decode(content, lowered)
    if decoding_warning:
        warnings.append(decoding_warning)
    # Leading blank lines before "<?xml" are a common publishing slip that expat rejects.
    text = _INVALID_XML_CHARS.sub("", text).lstrip()
    if _looks_like_json(text, lowered):
        return _parse_json_feed(text, url, warnings)
    if _looks_like_html(text):
        return ParseFailed(url=url, message=f"{url} is an HTML page, not a feed; {_HTML_HINT}")
    text, entity_warning = _defuse_entities(text)
    if entity_warning:
        warnings.append(entity_warning)
    return _parse_xml(text, url, lowered, warnings)
