"""Claimed hits → `DigestContent` → one multipart email (text/plain + text/html).

Pure: no clock, no network, no database; the only I/O is reading the packaged
templates. Everything that comes from feeds (titles, URLs, feed names,
snippets, even watchlist names from the config) is treated as hostile:

* the HTML template is rendered with autoescaping on (decided by a function
  that escapes every template except ``*.txt.j2``, so a renamed template can
  never silently lose escaping, cf. changedetection.io GHSA-pwgc-w4x9-gw67);
* snippet marks ``[[word]]`` become ``<mark>`` only *after* the snippet was
  escaped, so a mark can never carry markup;
* a link is emitted only for an absolute http(s) URL;
* header values lose every control character, so a CR/LF in a title can
  neither inject a header nor crash the digest.
"""

from __future__ import annotations

import email.policy
import email.utils
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import jinja2
from markupsafe import Markup, escape

from monitor.matching import MAX_SNIPPET_CHARS, MAX_SNIPPETS
from monitor.models import ClaimedDigest, DigestContent, StoredHit
from monitor.text import one_line

MAX_TITLE_CHARS = 300
MAX_PASSING_SENTENCE_CHARS = 160  # a passing mention's sentence, shortened to one line
UNSCORED_RELEVANCE = 0.5
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MARK = re.compile(r"\[\[(.+?)\]\]", re.DOTALL)
# C0 and C1 controls, DEL, and the Unicode line/paragraph separators some mail clients honour.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def build_digest(
    claimed: ClaimedDigest,
    *,
    watchlist_order: Sequence[str],
    tz: ZoneInfo,
    now: datetime,
    topics: Mapping[str, str] | None = None,
    hide_passing: Collection[str] = (),
) -> DigestContent:
    """Group the claimed hits by watchlist, in configuration order: in each, the main hits
    most relevant first (then newest), then the passing mentions in the same order.

    Watchlists no longer in the configuration (renamed or removed since the
    hit was found) follow in alphabetical order: their hits are still sent.
    Backfilled hits form their own groups, shown after the others. The passing
    mentions of the watchlists in `hide_passing` are left out of the message,
    though they belong to the digest (and so are marked sent) like the others.
    """
    rank = {name: position for position, name in enumerate(watchlist_order)}

    def group(hits: Sequence[StoredHit]) -> tuple[tuple[str, tuple[StoredHit, ...]], ...]:
        by_watchlist: dict[str, list[StoredHit]] = {}
        for hit in hits:
            if hit.in_passing and hit.watchlist in hide_passing:
                continue
            by_watchlist.setdefault(hit.watchlist, []).append(hit)
        names = sorted(by_watchlist, key=lambda name: (name not in rank, rank.get(name, 0), name))
        return tuple((name, tuple(sorted(by_watchlist[name], key=_main_first))) for name in names)

    fresh = [hit for hit in claimed.hits if not hit.backfilled]
    backfilled = [hit for hit in claimed.hits if hit.backfilled]
    return DigestContent(
        digest_key=claimed.key,
        generated_at=now.astimezone(tz),
        groups=group(fresh),
        backfilled=group(backfilled),
        hit_ids=tuple(hit.hit_id for hit in claimed.hits),
        topics=dict(topics or {}),
    )


def by_relevance(hit: StoredHit) -> tuple[float, float, int]:
    """Sort key: most relevant first, then newest. A hit found before relevance existed
    and not rescored counts as halfway."""
    moment = hit.published or hit.found_at
    relevance = UNSCORED_RELEVANCE if hit.relevance is None else hit.relevance
    return (-relevance, -moment.timestamp(), -hit.hit_id)


def _main_first(hit: StoredHit) -> tuple[bool, float, float, int]:
    return (hit.in_passing, *by_relevance(hit))


def render_message(
    content: DigestContent,
    *,
    sender: str,
    recipients: Sequence[str],
    subject: str,
    message_id: str,
    tz: ZoneInfo,
) -> EmailMessage:
    """The digest as an email ready for `notify.deliver`."""
    groups = [
        _group_view(name, hits, tz, content.topics.get(name)) for name, hits in content.groups
    ]
    backfilled = [_group_view(name, hits, tz, None) for name, hits in content.backfilled]
    fresh_count = sum(len(hits) for _, hits in content.groups)
    passing_count = sum(hit.in_passing for _, hits in content.groups for hit in hits)
    backfill_count = sum(len(hits) for _, hits in content.backfilled)
    date_line = _long_date(content.generated_at.astimezone(tz))
    values = {
        "groups": groups,
        "backfilled": backfilled,
        "fresh_count": fresh_count,
        "backfill_count": backfill_count,
        "date": date_line,
        "summary": _summary(fresh_count, backfill_count, len(content.groups), passing_count),
    }
    message = EmailMessage(policy=email.policy.SMTP)
    message["Subject"] = clean_header(f"{subject}: {values['summary']} — {date_line}")
    message["From"] = clean_header(sender)
    message["To"] = ", ".join(clean_header(recipient) for recipient in recipients)
    message["Date"] = email.utils.format_datetime(content.generated_at)
    message["Message-ID"] = clean_header(message_id)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation auto-replies
    message["X-Monitor-Digest"] = clean_header(content.digest_key)
    # Quoted-printable keeps the message 7-bit clean, so no server needs 8BITMIME.
    message.set_content(
        _ENVIRONMENT.get_template("digest.txt.j2").render(values), cte="quoted-printable"
    )
    message.add_alternative(
        _ENVIRONMENT.get_template("digest.html.j2").render(values),
        subtype="html",
        cte="quoted-printable",
    )
    return message


def clean_header(value: str) -> str:
    """A header value with control characters turned into spaces and whitespace collapsed."""
    return one_line(value)


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class _HitView:
    title: str
    url: str | None  # only http(s); None → shown without a link
    feed: str
    date: str
    matched: str
    text_snippets: tuple[str, ...]
    html_snippets: tuple[Markup, ...]


@dataclass(frozen=True)
class _PassingView:
    """A passing mention: one line."""

    title: str
    url: str | None
    feed: str
    text_sentence: str  # the sentence that mentions the topic, shortened; "" when none
    html_sentence: Markup


@dataclass(frozen=True)
class _GroupView:
    watchlist: str
    topic: str | None
    hits: tuple[_HitView, ...]  # the main hits, in full
    passing: tuple[_PassingView, ...]

    @property
    def count(self) -> int:
        return len(self.hits) + len(self.passing)


def _group_view(
    name: str, hits: Sequence[StoredHit], tz: ZoneInfo, topic: str | None
) -> _GroupView:
    return _GroupView(
        watchlist=_one_line(name),
        topic=_truncate(_one_line(topic), MAX_TITLE_CHARS) if topic else None,
        hits=tuple(_hit_view(hit, tz) for hit in hits if not hit.in_passing),
        passing=tuple(_passing_view(hit) for hit in hits if hit.in_passing),
    )


def _passing_view(hit: StoredHit) -> _PassingView:
    sentence = next((one for one in map(_one_line, hit.snippets) if one), "")
    sentence = _truncate_snippet(sentence, MAX_PASSING_SENTENCE_CHARS)
    return _PassingView(
        title=_truncate(_one_line(hit.title), MAX_TITLE_CHARS) or "(untitled)",
        url=_safe_link(hit.url),
        feed=_truncate(_one_line(hit.feed), MAX_TITLE_CHARS),
        text_sentence=_MARK.sub(r"*\1*", sentence),
        html_sentence=_marked_html(sentence),
    )


def _hit_view(hit: StoredHit, tz: ZoneInfo) -> _HitView:
    if hit.published is not None:
        date = _short_date(hit.published.astimezone(tz))
    else:
        date = f"seen {_short_date(hit.found_at.astimezone(tz))}"
    snippets = [_truncate_snippet(_one_line(snippet)) for snippet in hit.snippets]
    snippets = [snippet for snippet in snippets if snippet][:MAX_SNIPPETS]
    return _HitView(
        title=_truncate(_one_line(hit.title), MAX_TITLE_CHARS) or "(untitled)",
        url=_safe_link(hit.url),
        feed=_truncate(_one_line(hit.feed), MAX_TITLE_CHARS),
        date=date,
        matched=", ".join(_one_line(term) for term in hit.matched),
        text_snippets=tuple(_MARK.sub(r"*\1*", snippet) for snippet in snippets),
        html_snippets=tuple(_marked_html(snippet) for snippet in snippets),
    )


def _marked_html(snippet: str) -> Markup:
    # Escape first, then turn the (unescapable) [[ ]] delimiters into <mark>.
    escaped = str(escape(snippet))
    return Markup(_MARK.sub(r"<mark>\1</mark>", escaped))


def _safe_link(url: str | None) -> str | None:
    if not url:
        return None
    candidate = url.strip()
    if _CONTROL.search(candidate) or any(char.isspace() for char in candidate):
        return None
    try:
        parts = urlsplit(candidate)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    return candidate


def _one_line(text: str) -> str:
    """Feed text on one line: controls and line breaks become spaces, NFC-normalised."""
    return one_line(unicodedata.normalize("NFC", text))


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    # Never leave half a mark behind: an unclosed "[[" would show as literal brackets.
    if cut.rfind("[[") > cut.rfind("]]"):
        cut = cut[: cut.rfind("[[")]
    return cut.rstrip() + "…"


def _truncate_snippet(snippet: str, limit: int = MAX_SNIPPET_CHARS) -> str:
    """A stored snippet cut to `limit` characters of text (what the matcher writes, by
    default) and the two ellipses around it, the marks not counted. A mark past the cut
    is dropped whole, never left half open."""
    budget = limit + 2
    kept: list[str] = []
    # Split with the mark's group: even pieces are plain text, odd ones marked words.
    for index, piece in enumerate(_MARK.split(snippet)):
        if len(piece) > budget:
            if index % 2 == 0:
                kept.append(piece[: max(0, budget - 1)].rstrip() + "…")
            else:
                kept.append("…")
            break
        kept.append(f"[[{piece}]]" if index % 2 else piece)
        budget -= len(piece)
    return "".join(kept)


def _short_date(moment: datetime) -> str:
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year} {moment:%H:%M}"


def _long_date(moment: datetime) -> str:
    # Month names from a fixed table: strftime("%b") would follow the process locale.
    return f"{moment.day} {_MONTHS[moment.month - 1]} {moment.year}"


def _summary(fresh: int, backfilled: int, watchlists: int, passing: int = 0) -> str:
    parts = []
    if fresh or not backfilled:
        new = f"{fresh} new {_plural(fresh, 'hit')} in {watchlists} {_plural(watchlists, 'watchlist')}"
        if passing:
            new += f" ({passing} in passing)"
        parts.append(new)
    if backfilled:
        parts.append(f"{backfilled} found by backfill")
    return ", ".join(parts)


def _plural(count: int, word: str) -> str:
    return word if count == 1 else f"{word}s"


def _autoescape(template_name: str | None) -> bool:
    # Escaping is the default; only templates explicitly named as plain text opt out.
    return not (template_name or "").endswith(".txt.j2")


_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.PackageLoader("monitor", "templates"),
    autoescape=_autoescape,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
)
